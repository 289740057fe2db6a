"""Imports go one way: no cycles between the project's modules (imports inside functions included), no import up
the layering of the package (README, Layout), and the dashboard's pages import neither torch nor the command line."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_files() -> list[Path]:
    return sorted(REPO.glob("multimem/**/*.py")) + [REPO / "app.py"] + sorted(REPO.glob("pages/*.py"))


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at any depth of its code (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    from multimem.compat import MOVED

    files = {module_name(p): p for p in project_files()}
    known = set(files) | set(MOVED)  # an import of an old path is seen as such
    g = {}
    for name, path in files.items():
        deps = imports_of(path, known) - {name}
        # a package's __init__ that its own modules import is not a cycle through the package
        g[name] = {d for d in deps if not name.startswith(d + ".")}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    return out


# the layers, lowest first: a module may import its own layer and the ones below
LAYERS = {
    "multimem.errors": 0, "multimem.config": 0, "multimem.modalities": 0,
    "multimem.metric": 1, "multimem.summary": 1, "multimem.store": 1,
    "multimem.data": 2, "multimem.model": 2,
    "multimem.engine": 3,
    "multimem.pipeline": 4,
    "multimem.mitigation": 5,
    "multimem.jobs": 6, "multimem.preflight": 6, "multimem.interop": 6, "multimem.cli": 6, "multimem.__main__": 6,
}
# the dashboard reads runs and starts jobs; it trains and scores nothing itself
APP_MAY_IMPORT = ("multimem.errors", "multimem.config", "multimem.modalities", "multimem.summary", "multimem.store",
                  "multimem.jobs", "multimem.mitigation", "multimem.data.splits", "multimem.data.images",
                  "multimem.app")
APP_LAZY = {"multimem.app.cache": ("multimem.engine.index", "multimem.engine.pair_score")}  # cached loaders


def is_shim(name: str) -> bool:
    """An old module path kept for one release (multimem.compat), or its re-export modules."""
    from multimem.compat import MOVED

    return name in MOVED or name == "multimem.compat" or name.startswith("multimem.compat.")


def layer_of(name: str) -> int | None:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def is_app(name: str) -> bool:
    return name in ("app",) or name.startswith(("pages.", "multimem.app"))


def test_no_import_goes_up_the_layers():
    g = graph()
    wrong = []
    for name, deps in g.items():
        if is_shim(name):
            continue
        for dep in deps:
            if name == "multimem" and dep == "multimem.compat":
                continue  # the package installs the old paths
            if is_shim(dep):
                wrong.append(f"{name} imports {dep}, an old path: import its new home")
            elif is_app(name):
                if not (dep == "multimem" or dep.startswith(APP_MAY_IMPORT) or dep in APP_LAZY.get(name, ())):
                    wrong.append(f"{name} (dashboard) imports {dep}")
            elif is_app(dep):
                wrong.append(f"{name} imports the dashboard's {dep}")
            elif layer_of(name) is not None and layer_of(dep) is not None and layer_of(dep) > layer_of(name):
                wrong.append(f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})")
    assert wrong == []


def test_every_module_has_a_layer():
    assert [n for n in graph() if n.startswith("multimem") and not is_app(n) and not is_shim(n)
            and n != "multimem" and layer_of(n) is None] == []


def test_old_module_paths_are_their_new_modules():
    import multimem.runs
    import multimem.sources.base
    from multimem.compat import MOVED
    from multimem.data.sources import base
    from multimem.store import runs

    assert multimem.runs is runs and multimem.sources.base is base and runs.__spec__.name == "multimem.store.runs"
    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old


def loads_torch(code: str) -> bool:
    """Whether running `code` in a fresh interpreter (in the repository) imports torch."""
    code += "print('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_the_run_store_and_the_strategy_metadata_load_without_torch():
    code = ("import sys, importlib\n"
            "for m in ['multimem.store.runs', 'multimem.store.layout', 'multimem.store.lists', 'multimem.summary', "
            "'multimem.modalities', 'multimem.mitigation.base', 'multimem.jobs']:\n"
            "    importlib.import_module(m)\n"
            "from multimem.mitigation import base\n"
            "base.strategies(); base.options()\n")
    assert not loads_torch(code)


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_pages_never_import_the_command_line():
    g = graph()
    for page in [m for m in g if m.startswith("pages.")] + ["app"]:
        assert not {d for d in g[page] if d.startswith("multimem.cli")}, page


def test_pages_load_without_torch():
    """Importing every page's modules (as a page view does, top-level imports) loads no torch."""
    code = ("import sys, ast, importlib, pathlib\n"
            "for p in sorted(pathlib.Path('pages').glob('*.py')) + [pathlib.Path('app.py')]:\n"
            "    for n in ast.parse(p.read_text()).body:\n"
            "        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith('multimem'):\n"
            "            importlib.import_module(n.module)\n"
            "        elif isinstance(n, ast.Import):\n"
            "            [importlib.import_module(a.name) for a in n.names if a.name.startswith('multimem')]\n")
    assert not loads_torch(code)
