"""The package's shape: every module imports, and no module imports one that imports it back."""

import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dapose_jax"


def module_names():
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = set(module_names())


def imported_modules(name):
  """The package modules that module ``name`` imports anywhere in its body (functions included)."""
  path = PACKAGE.parent.joinpath(*name.split("."))
  path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names}
  return {m for m in found if m in MODULES and m != name}


def test_the_import_graph_of_the_package_has_no_cycle():
  graph = {name: imported_modules(name) for name in MODULES}
  assert graph["dapose_jax.train"] >= {"dapose_jax.methods", "dapose_jax.evaluators"}  # the graph is read
  state, path = {}, []

  def visit(name):
    state[name] = "open"
    path.append(name)
    for dependency in sorted(graph[name]):
      if state.get(dependency) == "open":
        cycle = path[path.index(dependency):] + [dependency]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if dependency not in state:
        visit(dependency)
    path.pop()
    state[name] = "done"

  for name in sorted(graph):
    if name not in state:
      visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
  assert importlib.import_module(name).__name__ == name
