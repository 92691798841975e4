"""A clear error when a harness module's optional dependencies are missing.

``import lrtransfer`` (the Optax layer) needs only jax, optax, flax and
numpy. The harness (embedded tasks, checkpoints, the fit loop, the command
line) also needs the packages of the ``train`` extra; without them a user
would meet a bare ``ModuleNotFoundError: No module named 'sklearn'`` that
does not say which install fixes it.
"""

from __future__ import annotations

import importlib.util

# The command that installs the harness's dependencies.
TRAIN_EXTRA_INSTALL = 'pip install "lrtransfer[train]"'


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
    return False


def require_train_extra(user: str, *modules: str) -> None:
  """Raises ImportError naming the install command if a module is missing.

  Args:
    user: what needs the modules, e.g. ``"lrtransfer.data"``.
    *modules: top-level import names, e.g. ``"sklearn"``.

  Raises:
    ImportError: if any of ``modules`` cannot be imported.
  """
  missing = [module for module in modules if not _importable(module)]
  if missing:
    raise ImportError(
        f"{user} needs {', '.join(missing)}, which come with the harness's "
        f"optional dependencies: {TRAIN_EXTRA_INSTALL}")
