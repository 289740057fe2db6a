"""Background runs started from the dashboard: the CLI as a subprocess, its log, and its state.

The app never trains in its own process (DESIGN.md): it starts `python -m multimem train --all ...`, writes the
job's output to <runs root>/<name>/job.log, and reads progress from the run's progress file (Run.progress).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from multimem.store.runs import STAGES, Run, RunError, check_name

LOG = "job.log"
INFO = "job.json"
SOURCES = ("twemoji", "csv", "wds", "coco")


def shipped_models() -> list[str]:
    """The shipped model configs (multimem.models.shipped_models without importing torch and open_clip)."""
    return sorted(p.stem for p in (Path(__file__).parent / "model" / "model_configs").glob("*.json"))


@dataclass
class JobRequest:
    """What the Runs page's form asks for; None means the preset's value."""

    name: str
    source: str = "twemoji"
    path: str | None = None
    limit: int | None = None
    fast: bool = True
    model: str | None = None
    candidate: float | None = None
    extra: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    augmentations: int | None = None
    heldout_size: int | None = None
    inject: float | None = None
    seed: int | None = None
    image_col: str | None = None  # CSV only; None: the CLI's defaults (filepath, title, no label)
    caption_col: str | None = None
    label_col: str | None = None

    def check(self, root: Path) -> None:
        check_name(self.name)
        if Run(root, self.name).exists() or (Path(root) / self.name / INFO).exists():
            raise RunError(f"a run named {self.name!r} already exists; pick another name")
        if self.source not in SOURCES:
            raise RunError(f"source must be one of {', '.join(SOURCES)}")
        if self.source != "twemoji" and not self.path:
            raise RunError(f"the {self.source} source needs a path (the file or folder to read)")


def csv_columns(text: str) -> dict[str, str]:
    """'image, caption[, label]' as typed in the Runs page's form, as JobRequest fields (empty: the defaults)."""
    parts = [p.strip() for p in (text or "").split(",")]
    if not any(parts):
        return {}
    if len(parts) not in (2, 3) or not all(parts):
        raise RunError(f"CSV columns: give 'image, caption' or 'image, caption, label', got {text!r}")
    return dict(zip(("image_col", "caption_col", "label_col"), parts))


def command(req: JobRequest, root: Path, python: str = sys.executable) -> list[str]:
    """argv of the job: the CLI with every option the user set (an argument list, never a shell string)."""
    argv = [python, "-m", "multimem", "train", "--all", "--name", req.name, "--runs-root", str(root),
            "--source", req.source]
    if req.fast:
        argv.append("--fast")
    options = {
        "--path": req.path, "--limit": req.limit, "--model": req.model, "--candidate": req.candidate,
        "--extra": req.extra, "--epochs": req.epochs, "--batch-size": req.batch_size,
        "--augmentations": req.augmentations, "--heldout-size": req.heldout_size, "--inject": req.inject,
        "--seed": req.seed, "--image-col": req.image_col, "--caption-col": req.caption_col,
        "--label-col": req.label_col,
    }
    for flag, value in options.items():
        if value is not None and value != "":
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def shell_command(argv: list[str]) -> str:
    """A job's argv as one line a shell runs as it is (quoted where needed, the python executable included)."""
    return shlex.join([str(a) for a in argv])


def validate(req: JobRequest, root: Path):
    """Everything that can be checked before the job starts, with the CLI's own code: the name, then the job's
    command line parsed by the CLI's parser and built into a config by cli.build_config (model name, sizes,
    inject fraction), then the data read by its source class (file, columns, shards) and split into the requested
    sizes (multimem.preflight.check_argv). Returns the data check; raises DataError (RunError) with the message
    the CLI would print. Imports torch (the CLI's config builder): call it when a job is about to start."""
    from multimem import preflight
    from multimem.store.review_mode import refuse_if_readonly

    refuse_if_readonly("start a run")
    req.check(Path(root))
    _, found = preflight.check_argv(command(req, Path(root))[3:])
    return found


def launch(root: Path, name: str, argv: list[str], request: dict) -> subprocess.Popen:
    """The one way a background job starts: detached from the app's session (its own process group, so that
    `cancel` reaches its workers), output to the run's job.log, what was asked in job.json."""
    from multimem.store.review_mode import refuse_if_readonly

    refuse_if_readonly("start a job")
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / LOG, "w", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "2"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, cwd=os.getcwd())
    log.close()
    (folder / INFO).write_text(json.dumps({"pid": proc.pid, "argv": argv, "request": request,
                                           "started": time.time()}), encoding="utf-8")
    return proc


def start(req: JobRequest, root: Path) -> subprocess.Popen:
    """Start a new run as a job. Only the name is checked here: call `validate` first (the Runs page does), or a
    problem with the data shows as a failed job."""
    from multimem.store.review_mode import refuse_if_readonly

    refuse_if_readonly("start a run")
    req.check(Path(root))
    return launch(Path(root), req.name, command(req, Path(root)), asdict(req))


def mitigation_command(root: Path | str, parent: str, strategy: str, options: dict, name: str | None = None,
                       python: str = sys.executable) -> list[str]:
    """argv of `multimem mitigate` for a background job (an argument list, never a shell string)."""
    argv = [python, "-m", "multimem", "mitigate", "--from", parent, "--strategy", strategy, "--runs-root", str(root)]
    if name:
        argv += ["--name", name]
    for key, value in options.items():
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        argv += ["--" + key.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def start_mitigation(root: Path | str, parent: str, strategy: str, options: dict, name: str | None = None):
    """Start `multimem mitigate` as a job; returns (run name, process). The mitigation is checked first (the same
    checks `multimem mitigate` makes), so that a bad value is an error in the app, not a failed job."""
    from multimem.errors import MitigationError
    from multimem.mitigation import base, derive

    root = Path(root)
    plan = derive.plan(root, parent, strategy, base.make_params(strategy, **options), name)
    if Run(root, plan.name).exists() or (root / plan.name / INFO).exists():
        raise MitigationError(f"a run named {plan.name!r} already exists; pick another name")
    argv = mitigation_command(root, parent, strategy, options, plan.name)
    return plan.name, launch(root, plan.name, argv, {"parent": parent, "strategy": strategy, **options})


def info(root: Path, name: str) -> dict:
    """The job's job.json (pid, argv, request, started), or {} when the run was not started as a job."""
    path = Path(root) / check_name(name) / INFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cancel(root: Path, name: str, proc: subprocess.Popen | None = None, force: bool = False) -> bool:
    """Stop a running job: SIGINT to its process group (the CLI then marks the run incomplete, and the same
    command resumes it), or SIGTERM with `force`. Only a job whose run is locked by a live writer is signalled
    (a pid from an old job.json may belong to another process by now). Returns whether a signal was sent."""
    from multimem.store.review_mode import refuse_if_readonly

    refuse_if_readonly("cancel a job")
    pid = proc.pid if proc is not None else info(root, name).get("pid")
    if not isinstance(pid, int) or (proc is not None and proc.poll() is not None):
        return False
    if proc is None and not Run(root, name).is_locked():
        return False
    try:
        os.killpg(pid, signal.SIGTERM if force else signal.SIGINT)  # start_new_session: the group id is the pid
    except (ProcessLookupError, PermissionError):
        return False
    return True


def eta(observations: list[tuple[float, int]], total: int) -> float | None:
    """Seconds left in a stage from its progress so far: `observations` are (time, done) pairs of the same stage,
    oldest first. None until two observations a second apart show progress."""
    if len(observations) < 2 or not total:
        return None
    (t0, d0), (t1, d1) = observations[0], observations[-1]
    if t1 - t0 < 1.0 or d1 <= d0:
        return None
    rate = (d1 - d0) / (t1 - t0)
    return max(0.0, (total - d1) / rate)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left in this stage"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left in this stage"
    return f"about {seconds / 3600:.1f} h left in this stage"


STATUS_ORDER = {"running": 0, "starting": 0, "failed": 1, "incomplete": 2, "complete": 3}


def log_tail(root: Path, name: str, lines: int = 30) -> str:
    """The last lines of a job's log (progress bars' carriage returns folded into lines)."""
    path = Path(root) / check_name(name) / LOG
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 64_000))
        text = fh.read().decode("utf-8", errors="replace")
    text = text.replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def state(root: Path, name: str, returncode: int | None = None) -> dict:
    """status (starting / running / failed / complete / incomplete), progress, error, stages done.

    `returncode` is the job's exit code when this app started it and it has ended: a job that died before it
    wrote a manifest (a bad option, an import error) is 'failed' with its log as the reason.
    """
    run = Run(root, name)
    out: dict = {"status": "starting", "progress": None, "error": None, "stages": {}}
    if run.exists():
        m = run.manifest()
        out.update(status=run.status(), progress=run.progress(), error=m.get("error"), stages=m.get("stages") or {})
    if returncode not in (None, 0) and out["status"] in ("starting", "running", "incomplete"):
        out["status"] = "failed"
        out["error"] = out["error"] or f"the job exited with code {returncode}; see its log"
    elif returncode == 0 and out["status"] == "starting":
        out["status"] = "incomplete"
    return out


def describe(state: dict) -> tuple[str | None, float, str]:
    """The stage a job is in, how far it is (0..1) and a line for its progress bar.

    Training (steps) and scoring (samples embedded) report in the run's progress file; the stages after them only mark
    themselves done, so for them the bar shows stages done out of all."""
    done = [s for s in STAGES if (state.get("stages") or {}).get(s) == "done"]
    current = next((s for s in STAGES if s not in done), None)
    progress = state.get("progress")
    if current is None:
        return None, 1.0, "finishing"
    if progress and progress.get("stage") == current and progress.get("total"):
        return current, progress_fraction(progress), f"{current}: {progress['done']:,}/{progress['total']:,} {progress.get('unit', 'steps')}"
    if state.get("status") == "starting" and not done:
        return current, 0.0, "starting (loading data and libraries)"
    return current, len(done) / len(STAGES), f"{current} (stage {len(done) + 1} of {len(STAGES)})"


def progress_fraction(progress: dict | None) -> float:
    if not progress or not progress.get("total"):
        return 0.0
    return max(0.0, min(1.0, float(progress.get("done", 0)) / float(progress["total"])))
