"""The Python examples of README.md and docs/guides run as written, and do what they say.

Strict on purpose: every runnable block (a ```python block starting with
``import``) must run, and every example named in ``EXAMPLES`` must be in
exactly one runnable block and give its one expected outcome. An edit that
drops or renames an example fails here instead of silently losing its check;
update ``EXAMPLES`` with the documents. Blocks that are not meant to run on
their own (fragments, several hosts) are ```text blocks or start with
something other than ``import``.
"""

import pathlib
import re

import jax
import numpy as np
import pytest
from flax import nnx

import lrtransfer

ROOT = pathlib.Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
README = (ROOT / "README.md").read_text()
# (document name, block) of every runnable block.
RUNNABLE = [(path.relative_to(ROOT).as_posix(), block)
            for path in DOCUMENTS
            for block in re.findall(r"```python\n(.*?)```", path.read_text(),
                                    flags=re.S)
            if block.startswith("import")]

# The README's length limit: it is the project's front page, the guides hold
# the rest.
README_MAX_LINES = 200
# Places the README keeps for blocks that are maintained with other parts of
# the project, and the two commands at its top.
README_MARKERS = ("<!-- commands -->", "<!-- own-loop -->",
                  "<!-- tuning-free -->")


def _scale(namespace):
  return float(lrtransfer.current_scale(namespace["state"]))


def _copied(model):
  """The layers ``transferred_mask`` marks copied, as "hidden/0", "head"."""
  mask = lrtransfer.models.transferred_mask(model)
  return {"/".join(str(getattr(k, "key", k)) for k in path[:-1])
          for path, copied in jax.tree_util.tree_leaves_with_path(mask)
          if copied}


# marker (a text only that example contains) -> (what it shows, check).
EXAMPLES = {
    "lrtransfer.adjust())": (
        "README quickstart: adjust in a jitted loop fits the regression",
        lambda ns: float(ns["loss"](ns["params"], ns["x"], ns["y"])) < 1e-4
        and np.isfinite(float(lrtransfer.effective_learning_rate(
            ns["state"], 0.05)))),
    "auto = lrtransfer.train.fit_auto(": (
        "README: the tuning-free population learns the digits task within "
        "three runs of compute and returns the chosen model",
        lambda ns: float(ns["auto"].test_accuracy[0]) > 0.5
        and ns["auto"].compute <= 3.0
        and ns["auto"].model().num_transferred_levels
        == ns["auto"].candidates[ns["auto"].chosen[0]].transfer_layers),
    "recipes.recommended_recipe(),": (
        "README: the recommended recipe learns the digits task",
        lambda ns: ns["result"].history["val_accuracy"][-1] > 0.5),
    "reduce_on_plateau(factor=0.5, patience=2)": (
        "a plateau strategy minimises a toy loss",
        lambda ns: float(ns["loss"](ns["params"])) < 1e-3),
    "lrtransfer.decay(0.99": (
        "0.99 per epoch, after 9 epochs",
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
    "class MyModel(nnx.Module)": (
        "README: a user's model in nnx.Optimizer, the head at twice the body's"
        " rate, read back as floats",
        lambda ns: (lambda r: set(r) == {"level 0", "level 1"}
                    and r["level 0"] == pytest.approx(0.5 * r["level 1"])
                    and 0 < r["level 1"] <= 0.1)(
                        lrtransfer.learning_rates(ns["optimizer"].opt_state,
                                                  0.1))),
    "all_but_head = ": (
        ("target_from_source copies the body but its last level by "
         "default, the whole body with transfer_layers= the levels below "
         "the head"),
        lambda ns: _copied(ns["default"]) == {"hidden/0"}
        and _copied(ns["all_but_head"]) == {"hidden/0", "hidden/1"}),
    "sweep.best_model(best)": (
        ("fit_many's runs come back as models: the run picked on validation, "
         "scored by evaluate with the user's metric as fit_many scored it"),
        lambda ns: ns["best"] == int(np.argmax(
            ns["sweep"].history["val_accuracy"][:, -1]))
        and isinstance(ns["model"], nnx.Module)
        and set(ns["scores"]) == {"loss", "top1"}
        and ns["scores"]["top1"] == pytest.approx(
            float(ns["sweep"].best_test_accuracy[ns["best"]]), abs=1e-6)),
    "CompareConfig(epochs=10": (
        "compare runs each recipe over the config's seeds",
        lambda ns: set(ns["results"]) == {"recommended", "scratch"}
        and all(r.test_accuracy.shape == (2,)
                and r.summary()["test_accuracy_mean"] > 0.5
                for r in ns["results"].values())),
    "def two_updates(tx)": (
        ("learning_rates reads the step's rate after the optimizer, and warns "
         "with the fix before a normalising one"),
        lambda ns: ns["rates"] == {"all": pytest.approx(0.005)}
        and len(ns["caught"]) == 1
        and "Chain the strategy after" in str(ns["caught"][0].message)),
    "class Classifier(nnx.Module)": (
        ("a transfer transformation refuses a name-sorted state without "
         "depths=, and takes the model's depths"),
        lambda ns: "depths=lrtransfer.layer_depths(model)" in ns["refusal"]
        and lrtransfer.learning_rates(ns["optimizer"], 0.1) == {
            "level 0": pytest.approx(0.05), "level 1": pytest.approx(0.1)}),
    "checkpoint.save_params(": (
        "a source saved and restored with orbax fine-tunes the digits task",
        lambda ns: ns["result"].history["val_accuracy"][-1] > 0.5),
}


_RAN = {}  # block -> its namespace: each example runs once per test run


def _run(where, block):
  if block not in _RAN:
    namespace = {}
    exec(compile(block, where, "exec"), namespace)  # pylint: disable=exec-used
    _RAN[block] = namespace
  return _RAN[block]


@pytest.mark.parametrize("index", range(len(RUNNABLE)),
                         ids=[f"{w}-{i}" for i, (w, _) in enumerate(RUNNABLE)])
def test_every_example_runs(index):
  _run(*RUNNABLE[index])


@pytest.mark.parametrize("marker", sorted(EXAMPLES))
def test_example_does_what_it_says(marker):
  holders = [(w, b) for w, b in RUNNABLE if marker in b]
  assert len(holders) == 1, (
      f"expected one runnable example containing {marker!r} "
      f"({EXAMPLES[marker][0]}), found {len(holders)}")
  assert EXAMPLES[marker][1](_run(*holders[0])), EXAMPLES[marker][0]


def test_readme_is_short_and_keeps_its_places():
  assert len(README.splitlines()) <= README_MAX_LINES
  for marker in README_MARKERS:
    assert marker in README, marker


def test_readme_links_point_to_files():
  for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
    if target.startswith("http"):
      continue
    assert (ROOT / target).exists(), target
