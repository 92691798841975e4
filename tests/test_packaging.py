"""The package's layering, dependencies and metadata.

``import lrtransfer`` is the Optax layer: it must not load the harness's
optional dependencies (the ``train`` extra), and each module that needs them
names the install command when they are missing. The checks that read
``sys.modules`` run in a fresh interpreter, since this test process has
imported the whole harness already.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import hypothesis
import pytest

import lrtransfer

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The `train` extra's packages, by import name; none loads with the Optax layer.
HARNESS_MODULES = ("sklearn", "scipy", "orbax", "matplotlib", "tqdm")
INSTALL_HINT = 'pip install "lrtransfer[train]"'


# One fresh interpreter goes through the stages a user goes through and
# prints the modules loaded after each (an interpreter start costs seconds).
_STAGES = """
import json
import sys
import warnings

def snapshot():
  return sorted({m.split(".")[0] for m in sys.modules}
                | {m for m in sys.modules if m.startswith("lrtransfer.")})

loaded = {}
import lrtransfer
loaded["import"] = snapshot()

import jax.numpy as jnp
import optax
warnings.simplefilter("ignore")  # the one-number measurement warns; fine here
params = {"w": jnp.ones(3)}
for strategy in (lrtransfer.adjust(), lrtransfer.l2sp(params)):
  tx = optax.chain(optax.sgd(0.1, momentum=0.9), strategy)
  state = tx.init(params)
  tx.update(params, state, params, metric=lrtransfer.measurement(1.0, 1))
  lrtransfer.strategy_states(state)
loaded["chain"] = snapshot()

fit = lrtransfer.train.fit
loaded["train"] = snapshot()

from lrtransfer import recipes
loaded["recipes_is_module"] = recipes is sys.modules["lrtransfer.recipes"]
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def loaded() -> dict:
  """Stage -> modules in ``sys.modules`` (top-level names, lrtransfer's own)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  proc = subprocess.run([sys.executable, "-c", _STAGES], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  return {stage: set(names) if isinstance(names, list) else names
          for stage, names in json.loads(proc.stdout.splitlines()[-1]).items()}


def test_import_loads_only_the_optax_layer(loaded):
  assert {"jax", "optax", "numpy"} <= loaded["import"]
  assert not loaded["import"] & {*HARNESS_MODULES, "chex"}
  assert not {f"lrtransfer.{name}" for name in lrtransfer._SUBMODULES
             } & loaded["import"]


def test_a_strategy_in_a_chain_loads_no_harness_module(loaded):
  assert not loaded["chain"] & set(HARNESS_MODULES)
  assert "lrtransfer.train" not in loaded["chain"]


def test_harness_submodules_load_on_first_use(loaded):
  assert "lrtransfer.train" in loaded["train"]
  assert loaded["recipes_is_module"]
  assert {"train", "data", "models"} <= set(dir(lrtransfer))


def test_fit_loop_does_not_load_the_embedded_tasks(loaded):
  # lrtransfer.train needs orbax (run checkpoints), not scikit-learn or scipy.
  assert not loaded["train"] & {"sklearn", "scipy"}
  assert "lrtransfer._src.data.tasks" not in loaded["train"]


def test_unknown_attribute_is_an_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
    lrtransfer.nosuch
  assert not hasattr(lrtransfer, "nosuch")


@pytest.mark.parametrize("blocked, module", [
    ("orbax", "train"),
    ("orbax", "checkpoint"),
    ("sklearn", "data"),
    ("scipy", "experiment"),
])
def test_missing_train_extra_names_the_install_command(monkeypatch, blocked,
                                                       module):
  # sys.modules[name] = None makes `import name` fail as if not installed;
  # the public module is imported afresh (monkeypatch restores both).
  monkeypatch.delattr(lrtransfer, module, raising=False)
  monkeypatch.delitem(sys.modules, f"lrtransfer.{module}", raising=False)
  monkeypatch.setitem(sys.modules, blocked, None)
  with pytest.raises(ImportError, match=re.escape(INSTALL_HINT)) as error:
    importlib.import_module(f"lrtransfer.{module}")
  assert f"lrtransfer.{module} needs {blocked}" in str(error.value)


def test_embedded_tasks_without_the_train_extra_name_the_install_command(
    monkeypatch):
  from lrtransfer._src import data as data_lib
  monkeypatch.setitem(sys.modules, "sklearn", None)
  monkeypatch.delitem(vars(data_lib), "TASKS", raising=False)
  with pytest.raises(ImportError, match=re.escape(INSTALL_HINT)):
    data_lib.TASKS


def _normalized(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _distributions(import_name: str,
                   providers: dict[str, list[str]]) -> set[str]:
  """The installed distributions that provide ``import_name``."""
  return {_normalized(name) for name in providers.get(import_name, [])}


def _requirement_names(requirements: list[str]) -> set[str]:
  return {_normalized(re.match(r"[A-Za-z0-9_.-]+", r)[0])
          for r in requirements if not r.startswith("lrtransfer")}


def _third_party_imports() -> set[str]:
  """Top-level names of every non-stdlib module the packages import (the
  library and its stdlib-only command-line entry point)."""
  names = set()
  paths = [*(ROOT / "lrtransfer").rglob("*.py"),
           *(ROOT / "lrtransfer_cli").rglob("*.py")]
  for path in paths:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names.update(alias.name.split(".")[0] for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names.add(node.module.split(".")[0])
  return names - set(sys.stdlib_module_names) - {"lrtransfer",
                                                 "lrtransfer_cli"}


def test_every_import_is_a_declared_dependency():
  project = PYPROJECT["project"]
  extras = project["optional-dependencies"]
  core = _requirement_names(project["dependencies"])
  declared = core | _requirement_names(extras["train"] + extras["mnist"])
  imported = _third_party_imports()
  providers = importlib.metadata.packages_distributions()
  undeclared = [name for name in imported
                if not _distributions(name, providers) & declared]
  assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"
  assert core == {"jax", "optax", "flax", "numpy"}
  assert "chex" not in imported
  assert "chex" in _requirement_names(extras["test"])
  assert any(r.startswith("lrtransfer[") and "train" in r
             for r in extras["test"])


def test_metadata_version_license_and_type_marker():
  project = PYPROJECT["project"]
  assert "version" in project["dynamic"] and "version" not in project
  assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
      "attr": "lrtransfer.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", lrtransfer.__version__)
  license_text = (ROOT / "LICENSE").read_text()
  assert project["license"] == "Apache-2.0"
  assert "Apache License" in license_text
  assert "END OF TERMS AND CONDITIONS" in license_text
  assert (ROOT / "lrtransfer" / "py.typed").is_file()
  package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
  assert "py.typed" in package_data["lrtransfer"]


def test_property_tests_follow_the_hypothesis_profile():
  # conftest.py loads "ci" (a fixed sequence of examples) or "dev" (new
  # examples each run); a test's own settings must not pin the seed.
  import test_property_strategies
  import test_safe_raises
  assert hypothesis.settings.get_profile("ci").derandomize
  assert not hypothesis.settings.get_profile("dev").derandomize
  for module in (test_property_strategies, test_safe_raises):
    assert module.SETTINGS.derandomize == hypothesis.settings.default.derandomize
