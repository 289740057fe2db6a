"""The interface every mitigation strategy implements, and the registry the CLI, the Runs page and sweeps read.

A strategy is one module: a parameters dataclass whose fields carry their own metadata (`setting(...)`: how the
text of a flag or form field is parsed, a label, help, choices), and a `Strategy` subclass registered with
`@register`. The CLI's flags, the Runs page's form, sweep axes and derived-run names are all generated from the
registry. No torch here (nor in the strategy modules' top level): the dashboard reads the metadata without
loading the models; the training work is imported inside `stages()`.

Strategies of a user's own are registered the same way from their own module, named in the environment variable
MULTIMEM_STRATEGIES (comma-separated module names) or in the `multimem.strategies` entry-point group of an
installed package; both are imported when the registry is first read.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from multimem.errors import DataError, MitigationError
from multimem import modalities

PLUGINS_ENV = "MULTIMEM_STRATEGIES"
KINDS = ("float", "int", "str", "captions", "modalities", "choice")


# ------------------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class Setting:
    """One parameter of a strategy as the CLI and the Runs page take it."""

    name: str
    kind: str  # float, int, str, captions (a whole number or 'all'), modalities (a subset or 'all'), choice
    label: str  # the form's label
    help: str  # what it does, without the default (added from the dataclass)
    choices: tuple[str, ...] = ()
    main: bool = False  # shown first in the form
    default: Any = None

    def text(self, value: Any) -> str:
        """A value as one would type it (parse() reads it back)."""
        if value is None:
            return "all" if self.kind == "captions" else ""
        if isinstance(value, tuple):
            return ",".join(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def parse(self, text: str, flag: str | None = None):
        """The value from its text (a flag or a form field); a bad value is a DataError naming the flag."""
        flag = flag or "--" + self.name.replace("_", "-")
        text = str(text).strip()
        try:
            if self.kind == "float":
                return float(text)
            if self.kind in ("int", "captions"):
                if self.kind == "captions" and text.lower() == "all":
                    return None
                if not text.lstrip("-").isdigit():
                    raise ValueError
                return int(text)
            if self.kind == "modalities":
                return modalities.parse(text, tuple(modalities.TABLE), flag)
            if self.kind == "choice" and text not in self.choices:
                raise ValueError
            return text
        except ValueError:
            what = {"float": "a number", "int": "a whole number", "captions": "a whole number or 'all'",
                    "choice": "one of " + ", ".join(self.choices)}.get(self.kind, "a value")
            raise DataError(f"{flag} must be {what}, got {text!r}") from None


def setting(default: Any, kind: str, label: str, help: str, choices: tuple[str, ...] = (), main: bool = False):
    """A dataclass field that carries its Setting (name and default are filled in from the field)."""
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    meta = {"setting": Setting("", kind, label, help, tuple(choices), main)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def settings_of(params_cls: type) -> list[Setting]:
    """The Settings of a parameters dataclass, in field order, with name and default (as the parameters resolve
    it when nothing is given) filled in."""
    defaults = params_cls()
    return [dataclasses.replace(f.metadata["setting"], name=f.name, default=getattr(defaults, f.name))
            for f in dataclasses.fields(params_cls) if "setting" in f.metadata]


# ------------------------------------------------------------------------------------------------ strategies

class Strategy:
    """One mitigation (METHOD.md 4). Subclasses set the class attributes and override what they change."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line: the form's caption and the CLI's group title
    Params: ClassVar[type]  # a dataclass of setting(...) fields with a check() method
    swept: ClassVar[str]  # the setting a sweep varies
    retrains: ClassVar[bool] = True  # f and g retrained from the parent's settings changed by child_config()
    needs_scores: ClassVar[bool] = False  # the parent must be complete (scored)
    fixed_replicas: ClassVar[bool] = False  # keeps the parent's replicas (--replicas cannot change them)

    def settings(self) -> list[Setting]:
        return settings_of(self.Params)

    def normalise(self, params):
        """Params in the form they are recorded (e.g. settings that play no part reset)."""
        return params

    def tail(self, params) -> str:
        """The derived run's name after PARENT. (e.g. noise-all-0.1)."""
        raise NotImplementedError

    def child_config(self, cfg, params):
        """The parent's RunConfig as this strategy trains it (unchanged when the change is in stages())."""
        return cfg

    def check_parent(self, manifest: dict, cfg, params) -> None:
        """Preconditions on the parent run beyond the parameters' own check (raise MitigationError)."""

    def stages(self, parent, params) -> dict:
        """Stage functions replacing the pipeline's (stage name → fn(run, cfg, data, tokenizer))."""
        return {}

    def series(self, params) -> str:
        """A sweep's series label for these parameters."""
        return self.name

    def cost_seconds(self, child_timings: dict, extra: dict) -> float:
        """Wall-clock seconds the mitigation spent (its own training; scoring and indexing left out)."""
        return (child_timings.get("train_f") or 0) + (child_timings.get("train_g") or 0)


REGISTRY: dict[str, Strategy] = {}
_loaded = False


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy known to the CLI, the Runs page and sweeps."""
    names = [s.name for s in settings_of(cls.Params)]
    if cls.swept not in names:
        raise ValueError(f"strategy {cls.name!r}: swept setting {cls.swept!r} is not one of its settings")
    REGISTRY[cls.name] = cls()
    return cls


def load_plugins() -> None:
    """Import the shipped strategies and the user's own (MULTIMEM_STRATEGIES, entry points), once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("multimem.mitigation")  # the shipped strategies register on import
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MitigationError(f"{PLUGINS_ENV}: cannot import strategy module {name!r}: {exc}") from None
    for ep in entry_points(group="multimem.strategies"):
        ep.load()


def strategies() -> dict[str, Strategy]:
    load_plugins()
    return REGISTRY


def get(name: str) -> Strategy:
    known = strategies()
    if name not in known:
        raise MitigationError(f"unknown strategy {name!r}: use one of {', '.join(known)}")
    return known[name]


@dataclass(frozen=True)
class Option:
    """A setting as one command-line flag: settings of the same name in several strategies share one flag."""

    setting: Setting
    strategies: tuple[str, ...]

    @property
    def kind(self) -> str:
        return self.setting.kind

    @property
    def help(self) -> str:
        return self.setting.help

    def cli_help(self) -> str:
        defaults = {REGISTRY[s].name: self.setting.default for s in self.strategies}
        shown = {self.setting.text(v) for v in defaults.values()}
        default = f" (default {shown.pop()})" if len(shown) == 1 and "" not in shown else ""
        text = f"{' and '.join(self.strategies)}: {self.setting.help}{default}"
        return text.replace("%", "%%")  # argparse formats help with %


def options() -> dict[str, Option]:
    """Every strategy setting as one flag, in registry order."""
    out: dict[str, Option] = {}
    for strategy in strategies().values():
        for s in strategy.settings():
            if s.name in out:
                if out[s.name].kind != s.kind:
                    raise ValueError(f"setting {s.name!r} has kind {s.kind} in {strategy.name} and "
                                     f"{out[s.name].kind} in {out[s.name].strategies[0]}")
                out[s.name] = Option(out[s.name].setting, out[s.name].strategies + (strategy.name,))
            else:
                out[s.name] = Option(s, (strategy.name,))
    return out


def parse_option(name: str, text: str):
    """A flag's value from its text; a bad value is a DataError naming the flag."""
    return options()[name].setting.parse(text)


# ------------------------------------------------------------------------------------------------ parameters

def make_params(strategy: str, **values: Any):
    """The strategy's parameters (documented defaults for what is not given), checked."""
    s = get(strategy)
    known = {f.name for f in dataclasses.fields(s.Params)}
    extra = sorted(k for k, v in values.items() if v is not None and k not in known)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise MitigationError(f"{flags} do(es) not apply to --strategy {strategy}")
    values = {k: v for k, v in values.items() if k in known and v is not None}
    params = s.Params(**values)
    params.check()
    return s.normalise(params)


def params_dict(strategy: str, params) -> dict:
    """The mitigation as recorded in a derived run's lineage (and compared when it resumes)."""
    d = {"strategy": strategy, **json.loads(json.dumps(dataclasses.asdict(params)))}
    if d.get("ids", 0) is None:  # a setting added later: left out when unused, so older runs' lineage still matches
        del d["ids"]
    return d


def child_name(parent: str, strategy: str, params) -> str:
    """A readable default name for the derived run, e.g. base.noise-all-0.1, base.remove-multimem-100."""
    name = f"{parent}.{get(strategy).tail(params)}"
    if len(name) > 100:
        raise MitigationError(f"the derived run's name {name!r} is too long; give one with --name")
    return name


def changed_settings(params, skip: tuple[str, ...] = ()) -> str:
    """`-name<value>` for each setting that differs from its default (name tails of the less-used settings)."""
    default = type(params)()
    parts = [f"{f.name.replace('_', '')}{getattr(params, f.name):g}" for f in dataclasses.fields(params)
             if f.name not in skip and getattr(params, f.name) != getattr(default, f.name)]
    return "".join("-" + p for p in parts)


def same_as_parent(cfg, strategy: str, params) -> bool:
    """True when the strategy with these values trains exactly as the parent did (nothing to derive)."""
    s = get(strategy)
    return s.retrains and s.child_config(cfg, params).to_dict() == cfg.to_dict()


# shared by the strategies that train K-fold reference models (removal's multimem-kfold ranking, regroup)
def folds_setting():
    return setting(4, "int", "K: reference models (folds)", "K reference models; each training sample is held out "
                   "of exactly one")


def fold_seed_setting():
    return setting(0, "int", "Fold seed", "seed of the fold assignment of the K reference models")


def check_folds(folds) -> None:
    if not isinstance(folds, int) or folds < 2:
        raise MitigationError(f"folds must be a whole number >= 2, got {folds}")
