"""Mitigation strategies behind one registry: the CLI's flags, the Runs page's form, sweep axes and derived-run
names come from it, and a strategy of a user's own (one module, one registration) runs through `multimem
mitigate` and the Runs page form without editing the project."""
from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest
from app_helpers import TIMEOUT
from test_app import runs_page

from multimem import cli
from multimem.mitigation import base
from multimem.store.runs import Run

PLUGIN = textwrap.dedent('''
    """A user's own mitigation: f and g retrained with a scaled learning rate."""
    import dataclasses
    from dataclasses import dataclass

    from multimem.errors import MitigationError
    from multimem.mitigation.base import Strategy, register, setting


    @dataclass
    class LowerLrParams:
        scale: float = setting(0.5, "float", "Learning-rate scale", "the parent's learning rate times this",
                               main=True)

        def check(self):
            if not 0 < self.scale <= 1:
                raise MitigationError(f"scale must be in (0, 1], got {self.scale}")


    @register
    class LowerLr(Strategy):
        name = "lower-lr"
        summary = "retrain f and g with a lower learning rate"
        Params = LowerLrParams
        swept = "scale"

        def tail(self, params):
            return f"lr-{params.scale:g}"

        def child_config(self, cfg, params):
            return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * params.scale))
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The strategy module written where Python finds it, named in MULTIMEM_STRATEGIES (also for job processes)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "lower_lr_strategy.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{__import__('os').environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv(base.PLUGINS_ENV, "lower_lr_strategy")
    monkeypatch.setattr(base, "_loaded", False)
    yield "lower-lr"
    base.REGISTRY.pop("lower-lr", None)
    sys.modules.pop("lower_lr_strategy", None)


def mitigate_help(capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main(["mitigate", "--help"])
    return capsys.readouterr().out


def test_shipped_strategies_and_their_flags_come_from_the_registry(capsys):
    names = list(base.strategies())
    assert names == ["noise", "captions", "removal", "regroup", "reseed"]
    options = base.options()
    assert options["folds"].strategies == ("removal", "regroup")  # one flag for a setting two strategies share
    assert options["train_seed"].strategies == ("reseed",)
    text = mitigate_help(capsys)
    for name in options:
        assert f"--{name.replace('_', '-')} VALUE" in text
    assert "retrain f and g as the parent with another seed: the training-noise control (--strategy reseed)" in text
    assert base.child_name("demo", "reseed", base.make_params("reseed", train_seed=7)) == "demo.reseed-7"
    assert base.child_name("demo", "regroup", base.make_params("regroup", hot_jitter=0.4)) == \
        "demo.regroup-k10-top0.05-hotjitter0.4"
    with pytest.raises(base.MitigationError, match="unknown strategy 'nope'"):
        base.make_params("nope")
    with pytest.raises(base.MitigationError, match="--std do"):
        base.make_params("reseed", std=0.1)


def test_reseed_is_the_training_noise_control(app_runs, tmp_path):
    """reseed retrains f and g exactly as the parent but for the seed; the same seed is nothing to derive."""
    from multimem.mitigation import derive
    from multimem.pipeline.config import RunConfig

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "demo", root / "demo", ignore=shutil.ignore_patterns(".lock"))
    parent = RunConfig.from_dict(Run(root, "demo").manifest()["config"])
    p = derive.plan(root, "demo", "reseed", base.make_params("reseed", train_seed=5))
    assert p.name == "demo.reseed-5" and p.config.train.seed == 5
    assert p.config.to_dict() == {**parent.to_dict(), "train": {**parent.to_dict()["train"], "seed": 5}}
    with pytest.raises(base.MitigationError, match="already trains that way"):
        derive.plan(root, "demo", "reseed", base.make_params("reseed", train_seed=parent.train.seed))


def test_a_strategy_of_ones_own_runs_through_the_cli_and_the_runs_page(plugin, app_runs, tmp_path, monkeypatch,
                                                                       capsys):
    from multimem.app import cache

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "demo", root / "demo", ignore=shutil.ignore_patterns(".lock"))
    assert plugin in base.strategies()
    assert "--scale VALUE" in mitigate_help(capsys)

    # the command line
    assert cli.main(["mitigate", "--from", "demo", "--strategy", plugin, "--scale", "0.25",
                     "--runs-root", str(root)]) == 0
    m = Run(root, "demo.lr-0.25").manifest()
    parent = Run(root, "demo").manifest()
    assert m["status"] == "complete"
    assert m["lineage"] == {"parent": "demo", "mitigation": {"strategy": "lower-lr", "scale": 0.25}}
    assert m["config"]["train"]["lr"] == pytest.approx(parent["config"]["train"]["lr"] * 0.25)
    assert m["comparison"]["parent"] == "demo"
    assert cli.main(["mitigate", "--from", "demo", "--strategy", plugin, "--scale", "2",
                     "--runs-root", str(root)]) == 2
    assert "scale must be in (0, 1], got 2.0" in capsys.readouterr().err

    # the Runs page: the form lists it with its setting, and Start runs it as a job
    at = runs_page(root, monkeypatch, mit_open=True)
    strategy = at.radio(key="mit_strategy")
    assert plugin in strategy.options
    assert "lower learning rate" in strategy.proto.captions[strategy.options.index(plugin)]
    strategy.set_value(plugin).run(timeout=TIMEOUT)
    assert at.text_input(key="mit_lower-lr_scale").value == "0.5"
    at.button(key="mit_start").click().run(timeout=TIMEOUT)
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "Started demo.lr-0.5, a lower-lr mitigation of demo" in at.success[0].value
    argv = json.loads((root / "demo.lr-0.5" / "job.json").read_text())["argv"]
    assert argv[argv.index("--strategy") + 1] == "lower-lr" and "--scale" not in argv  # the default: no flag
    proc = cache.jobs()["demo.lr-0.5"]
    assert proc.wait(timeout=600) == 0, (root / "demo.lr-0.5" / "job.log").read_text()[-3000:]
    child = Run(root, "demo.lr-0.5").manifest()
    assert child["status"] == "complete" and child["lineage"]["mitigation"] == {"strategy": "lower-lr", "scale": 0.5}
