"""The README's Python examples run as written, and do what they say.

Strict on purpose: every runnable block (a ```python block starting with
``import``) must run, and every example named in ``EXAMPLES`` must be in
exactly one runnable block and give its one expected outcome. An edit that
drops or renames an example fails here instead of silently losing its check;
update ``EXAMPLES`` with the README.
"""

import pathlib
import re

import numpy as np
import pytest

import lrtransfer

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
RUNNABLE = [b for b in BLOCKS if b.startswith("import")]


def _scale(namespace):
  return float(lrtransfer.current_scale(namespace["state"]))


# marker (a text only that example contains) -> (what it shows, check).
EXAMPLES = {
    "reduce_on_plateau(factor=0.5, patience=2)": (
        "a plateau strategy minimises a toy loss",
        lambda ns: float(ns["loss"](ns["params"])) < 1e-3),
    "lrtransfer.decay(0.99": (
        "the founding article's 0.99 per epoch, after 9 epochs",
        lambda ns: _scale(ns) == pytest.approx(0.99 ** 9)),
    "accuracies = [": (
        "adjust lowers on improvement, raises on a plateau",
        lambda ns: _scale(ns) == pytest.approx(0.9 * 0.9 * 1.5 * 0.9)),
    "lrtransfer.dynamic(": (
        "dynamic keeps a finite scale",
        lambda ns: np.isfinite(_scale(ns))),
    "class Net(nnx.Module)": (
        "a user's NNX model (BatchNorm, Dropout) fine-tunes from its source",
        lambda ns: ns["result"].best_epoch >= 1 and ns["result"].history[
            "val_accuracy"].max() > 0.5),
    "lrtransfer.train.fit(": (
        "fine-tuning the digits task learns it",
        lambda ns: ns["result"].history["val_accuracy"][-1] > 0.5),
}


_RAN = {}  # block -> its namespace: each example runs once per session


def _run(block):
  if block not in _RAN:
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
    _RAN[block] = namespace
  return _RAN[block]


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_every_readme_example_runs(index):
  _run(RUNNABLE[index])


@pytest.mark.parametrize("marker", sorted(EXAMPLES))
def test_readme_example_does_what_it_says(marker):
  holders = [b for b in RUNNABLE if marker in b]
  assert len(holders) == 1, (
      f"README: expected one runnable example containing {marker!r} "
      f"({EXAMPLES[marker][0]}), found {len(holders)}")
  assert EXAMPLES[marker][1](_run(holders[0])), EXAMPLES[marker][0]
