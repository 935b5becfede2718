"""The import graph points one way: no cycle among npae's modules (imports inside functions
counted), no module using another's private names, and the tests and the benchmark use npae's
public API only."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "npae"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path) -> set[str]:
    """The npae modules ``name`` imports anywhere in its code (submodules named in a from-import
    count as the submodule)."""
    tree, out = ast.parse(path.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "npae")
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, path.name == "__init__.py", node)
            if target.split(".")[0] != "npae":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
    out.discard(name)
    return {m for m in out if m in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every loop a depth-first walk meets, but a package importing its own submodules (how
    packages work, not a cycle)."""
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return [c for c in cycles if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(c, c[1:]))]


def test_the_cycle_finder_finds_cycles():
    # the two cycles the code had before: graph -> layers.core -> layers.base -> graph, io <-> models
    graph = {"npae.graph": {"npae.layers.core"}, "npae.layers.core": {"npae.layers.base"},
             "npae.layers.base": {"npae.graph"}, "npae.io": {"npae.models"}, "npae.models": {"npae.io"},
             "npae": {"npae.models"}, "npae.fast": {"npae.fast.path"}}
    assert {frozenset(c) for c in find_cycles(graph)} == {
        frozenset({"npae.graph", "npae.layers.core", "npae.layers.base"}), frozenset({"npae.io", "npae.models"})}


def test_no_import_cycles():
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert "npae.fast.warm" in graph["npae.models.trainer"] and "npae.functional.conv" in graph["npae.layers.conv"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_reference_side_never_imports_the_fast_path():
    for name, path in MODULES.items():
        if name.startswith(("npae.layers", "npae.functional")) or name in ("npae.reference", "npae.graph",
                                                                          "npae.losses", "npae.optimizers"):
            bad = [m for m in imports_of(name, path) if m.startswith("npae.fast")]
            assert not bad, f"{name} imports {bad}"
            assert "numba" not in path.read_text(), f"{name} mentions numba"


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public, underscored only to avoid clashes


def private_uses(path: Path) -> list[str]:
    """Private names (one leading underscore) a file takes from another npae module: imported by
    name, or read as an attribute that the file itself does not define (a subclass reading its
    base class's protected members through ``self`` is how inheritance works: allowed)."""
    tree = ast.parse(path.read_text())
    own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    targets = [t for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
               for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
    targets += [e for t in targets if isinstance(t, ast.Tuple) for e in t.elts]
    own |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
    own |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    own |= {n.target.id for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == "npae"):
            if node.module == "__future__":
                continue
            bad += [f"imports {a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            through_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") or (
                isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "super")
            if node.attr not in own and not through_self and node.attr not in NAMEDTUPLE_API:
                bad.append(f"reads .{node.attr} (line {node.lineno})")
    return bad


def test_no_module_reaches_into_anothers_private_names():
    problems = {name: private_uses(path) for name, path in MODULES.items()}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, problems


def test_the_tests_benchmarks_and_examples_use_public_names():
    files = [p for d in ("tests", "benchmarks", "examples") for p in (REPO / d).rglob("*.py")]
    assert files
    problems = {}
    for path in files:
        bad = private_uses(path)
        if bad:
            problems[str(path.relative_to(REPO))] = bad
    assert not problems, problems


def test_one_version_in_one_place():
    import importlib.metadata
    import re

    import npae

    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    project = pyproject.split("\n[project]\n", 1)[1].split("\n[", 1)[0]  # the [project] table
    assert not re.search(r"^version\s*=", project, re.M) and 'dynamic = ["version"]' in project
    assert 'version = { attr = "npae.__version__" }' in pyproject
    assert importlib.metadata.version("npae") == npae.__version__
    assert f"## {npae.__version__} " in (REPO / "CHANGELOG.md").read_text()
    assert (REPO / "LICENSE").read_text().startswith("MIT License") and (PACKAGE / "py.typed").exists()
