"""Imports go one way: no cycles between the project's modules (imports inside functions included), and the
dashboard's pages import neither torch nor the command line."""
import ast
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
    files = {module_name(p): p for p in project_files()}
    known = set(files)
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
            "            [importlib.import_module(a.name) for a in n.names if a.name.startswith('multimem')]\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
