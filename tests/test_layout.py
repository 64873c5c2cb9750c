"""The code shows its architecture: three parts over a shared base, every import pointing one way, no circle.

    errors, paths, registry, runs     the base every part uses
    data/                             a run's data
    run/                              a run
    sweeps/  tools/                   sweeps and searches; the tools around finished runs (neither uses the other)
    app                               the entry point, which puts a run and a sweep's trial together

Imports inside functions count: a deferred import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_exp"
LAYERS = {"base": 0, "data": 1, "run": 2, "sweeps": 3, "tools": 3, "app": 4}
MAX_LINES = 300


def part(module: str) -> str:
    """'mnist_exp.run.trainer' -> 'run'; the base modules and the entry point by name."""
    name = module.split(".")[1] if "." in module else ""
    if name in ("data", "run", "sweeps", "tools"):
        return name
    return "app" if name in ("app", "__main__") else "base"


def module_name(path: Path) -> str:
    parts = ["mnist_exp", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The mnist_exp modules a file imports (``from mnist_exp.run import trainer`` counts as mnist_exp.run.trainer)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mnist_exp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_exp"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(path) for path in FILES}
GRAPH = {module_name(path): imports(path) - {module_name(path)} for path in FILES}


def test_every_import_points_down_or_within_its_part():
    wrong = [f"{source} imports {target}" for source, targets in GRAPH.items() for target in targets
             if LAYERS[part(target)] > LAYERS[part(source)]
             or (LAYERS[part(target)] == LAYERS[part(source)] and part(target) != part(source))]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    def visit(module, path):
        if module in path:
            return path[path.index(module):] + [module]
        for target in sorted(GRAPH.get(module, ())):
            if target.startswith(f"{module}."):
                continue  # a package importing its own modules (data/__init__.py) is no circle
            if circle := visit(target, path + [module]):
                return circle
        return None

    for module in sorted(GRAPH):
        assert visit(module, []) is None, " -> ".join(visit(module, []))


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(PACKAGE)) for path in FILES])
def test_a_module_is_one_readable_concern(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_graph_sees_the_imports_that_matter():
    """A check of the checker: known edges of each kind are found."""
    assert "mnist_exp.run.trainer" in GRAPH["mnist_exp.app"]
    assert "mnist_exp.runs" in GRAPH["mnist_exp.tools.compare"]
    assert "mnist_exp.tools.versus" in GRAPH["mnist_exp.tools.compare"]  # imported inside a function
    assert "mnist_exp.run.distributed" in GRAPH["mnist_exp.run.build"]  # from mnist_exp.run import distributed
