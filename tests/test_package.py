"""The package's own shape: a folder per concept in layers, no import cycle, no private name
reached across modules, and a top level that only re-exports what a script uses."""

import ast
import os
import subprocess
import sys

import pytest

import vmaptune as vt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "vmaptune")
# The packages and top-level modules, bottom layer first: a module imports only from its own
# package or the layers below it. docs/design.md shows the same tree.
LAYERS = [
    ("errors", "validation"),
    ("space",),
    ("trials",),
    ("data",),
    ("objectives",),
    ("models",),
    ("lanes",),
    ("strategies",),
    ("samplers",),
    ("rundir",),
    ("search",),
    ("reporting",),
    ("tuner", "config", "cli", "__main__"),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, str]:
  """``{dotted module name: path}`` of every module of the package."""
  found = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return found


MODULES = _modules()


def _imports(path: str) -> list[tuple[str, str | None, int]]:
  """``(module imported, name taken from it or None, line)`` for every vmaptune
  import of a file, module level or inside functions; imports for type checking
  only (``if TYPE_CHECKING:``) run nothing, so they are left out."""
  found = []
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
      node.body = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(alias.name, None, node.lineno) for alias in node.names
                if alias.name.startswith("vmaptune")]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vmaptune"):
      for alias in node.names:
        child = f"{node.module}.{alias.name}"
        if child in MODULES:  # `from vmaptune import data`: the module itself.
          found.append((child, None, node.lineno))
        else:
          found.append((node.module, alias.name, node.lineno))
  return found


def test_no_private_name_is_imported_from_another_module():
  private = [f"{name}:{line} imports {imported}.{taken}"
             for name, path in MODULES.items()
             for imported, taken, line in _imports(path)
             if taken is not None and taken.startswith("_")]
  assert not private, private


def test_the_package_imports_have_no_cycle():
  graph = {name: {imported for imported, _, _ in _imports(path) if imported != name}
           for name, path in MODULES.items()}
  # The top level re-exports everything: nothing inside the package may import it.
  assert not [name for name, edges in graph.items() if "vmaptune" in edges], \
      "modules import the top-level package"
  state: dict[str, int] = {}  # 1: on the current path, 2: done.

  def visit(name: str, path: list[str]) -> None:
    state[name] = 1
    for child in sorted(graph.get(name, ())):
      if state.get(child) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path + [name, child]))
      if child not in state:
        visit(child, path + [name])
    state[name] = 2

  for name in sorted(graph):
    if name not in state:
      visit(name, [])


def test_the_top_level_is_what_a_script_uses():
  engine = {"population", "rounds", "engine", "chunks", "train", "events", "ranking",
            "Population", "rank_trials", "Settings"}
  assert not engine & set(vt.__all__)
  assert {"tune", "Space", "LogUniform", "Dataset", "Experiment", "load_experiment",
          "TuneResult", "Run", "load_run", "report", "VmaptuneError", "samplers",
          "strategies"} <= set(vt.__all__)
  assert all(hasattr(vt, name) for name in vt.__all__)


@pytest.mark.slow  # A subprocess.
def test_importing_vmaptune_starts_no_jax_backend_and_imports_no_optional_library():
  """Nor Flax NNX (0.5 to 1 s of every process): ``vt.models.nnx`` imports it on first use."""
  code = ("import sys, vmaptune\n"
          "from jax._src import xla_bridge\n"
          "print(xla_bridge.backends_are_initialized(), 'optuna' in sys.modules,"
          " 'matplotlib' in sys.modules, 'flax.nnx' in sys.modules)\n"
          "print(vmaptune.models.nnx.__name__, 'flax.nnx' in sys.modules)")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=ROOT, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["False", "False", "False", "False", "vmaptune.models.nnx",
                                 "True"]


def _layer(module: str) -> int:
  """The layer of ``vmaptune.<package or module>[...]``; -1 for the top-level package."""
  parts = module.split(".")
  return -1 if len(parts) == 1 else LAYER_OF[parts[1]]


def test_every_package_and_module_has_a_layer():
  top = {name.split(".")[1] for name in MODULES if "." in name}
  assert top == set(LAYER_OF), f"not in LAYERS: {top - set(LAYER_OF)}; gone: {set(LAYER_OF) - top}"


def test_imports_point_down_the_layers():
  """A module imports only from its own package or a layer below it."""
  upward = [f"{name} (layer {_layer(name)}) imports {imported} (layer {_layer(imported)})"
            for name, path in MODULES.items() if name != "vmaptune"
            for imported, _, _ in _imports(path)
            if imported != "vmaptune" and _layer(imported) > _layer(name)]
  assert not upward, upward


def test_the_design_page_shows_every_folder():
  """docs/design.md's tree has one line per package, so the page's map is the true one."""
  with open(os.path.join(ROOT, "docs", "design.md")) as f:
    page = f.read()
  folders = {name.split(".")[1] for name in MODULES
             if "." in name and os.path.basename(MODULES[name]) == "__init__.py"
             and name.count(".") == 1}
  missing = [folder for folder in sorted(folders) if f"{folder}/" not in page]
  assert not missing, f"folders missing from docs/design.md: {missing}"
