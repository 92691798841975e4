"""The README's Python examples run as written, and say what they print."""

import pathlib
import re

import numpy as np
import pytest

import lrtransfer

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
RUNNABLE = [b for b in BLOCKS if b.startswith("import")]


def _run(block):
  namespace = {}
  exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def test_readme_has_the_examples():
  assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_readme_example_runs(index):
  namespace = _run(RUNNABLE[index])
  block = RUNNABLE[index]
  if "lrtransfer.decay(0.99" in block:
    assert float(lrtransfer.current_scale(namespace["state"])) == (
        pytest.approx(0.99 ** 9))
  if "accuracies = [" in block:
    assert float(lrtransfer.current_scale(namespace["state"])) == (
        pytest.approx(0.9 * 0.9 * 1.5 * 0.9))
  if "lrtransfer.train.fit(" in block:
    assert namespace["result"].history["val_accuracy"][-1] > 0.5
  if "reduce_on_plateau(factor=0.5, patience=2)" in block:
    assert float(namespace["loss"](namespace["params"])) < 1e-3
  if "lrtransfer.dynamic(" in block:
    assert np.isfinite(float(lrtransfer.current_scale(namespace["state"])))
