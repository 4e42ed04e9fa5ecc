"""The package's shape: a tree by role whose imports point down the layers, with no cycle; every module imports;
config files load without the heavy libraries."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dapose_jax"


def module_names():
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = set(module_names())
# The layers, lowest first: a module imports only from its own layer or lower ones. The registry of method names
# (the ``dapose_jax.methods`` package itself) is ground-floor data that the config's variant parser reads; the
# methods are its modules.
LAYERS = (("ground floor", ("dapose_jax.errors", "dapose_jax.parallel", "dapose_jax.config", "dapose_jax.methods")),
          ("files", ("dapose_jax.interop", "dapose_jax.storage")),
          ("parts", ("dapose_jax.pose", "dapose_jax.augment", "dapose_jax.data", "dapose_jax.models",
                     "dapose_jax.plots", "dapose_jax.auxiliary")),
          ("training", ("dapose_jax.methods.", "dapose_jax.evaluators")),
          ("run", ("dapose_jax.run", "dapose_jax.accelerators")),
          ("commands", ("dapose_jax.commands", "dapose_jax.main", "dapose_jax.__main__", "dapose_jax")))
TOP_LEVEL = {"__init__", "__main__", "main", "errors", "parallel"}
REPO = PACKAGE.parent


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
  assert graph["dapose_jax.run.loop"] >= {"dapose_jax.methods", "dapose_jax.evaluators"}  # the graph is read
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


def layer(module):
  """The index in LAYERS of the longest prefix that names ``module`` (a prefix ending in "." names submodules
  only)."""
  matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
             if module == prefix or module.startswith(prefix if prefix.endswith(".") else prefix + ".")]
  return max(matches)[1]


def test_imports_point_down_the_layers():
  assert layer("dapose_jax.methods.regda") == 3 and layer("dapose_jax.methods") == 0  # the table is read
  upward = [f"{name} ({LAYERS[layer(name)][0]}) imports {dependency} ({LAYERS[layer(dependency)][0]})"
            for name in sorted(MODULES) for dependency in sorted(imported_modules(name))
            if layer(dependency) > layer(name)]
  assert not upward, "\n".join(upward)


def test_the_package_top_level_holds_only_its_entry_points_and_the_ground_floor():
  assert {path.stem for path in PACKAGE.glob("*.py")} == TOP_LEVEL
  assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()} == {
      "augment", "auxiliary", "commands", "config", "data", "evaluators", "interop", "methods", "models", "plots",
      "pose", "run", "storage"}


def test_config_files_load_without_jax_or_the_data_libraries():
  heavy = ("jax", "flax", "numpy", "grain", "cv2", "orbax", "tensorflow", "tensorflow_datasets", "optax")
  script = ("import runpy, sys\n"
            "for file in sys.argv[1:]:\n"
            "  runpy.run_path(file)['get_config']('')\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))")
  files = sorted(str(path) for path in (REPO / "configs").glob("*.py"))
  done = subprocess.run([sys.executable, "-c", script, *files], cwd=REPO, capture_output=True, text=True, check=True)
  assert done.stdout.strip() == "[]", done.stdout
