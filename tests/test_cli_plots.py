"""The figures of `lrtransfer run`: what each panel and line shows.

Built from hand-made results (no training), so each figure's content can be
checked: the methods' order, their colours, the parameter groups' rates.
"""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pytest

from lrtransfer._src import plots, report
from lrtransfer._src.experiment import MethodResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS, SEEDS, LEVELS = 12, 3, 3
METHODS = ("recommended", "scratch", "constant", "decay", "reduce_on_plateau",
           "adjust", "dynamic", "layerwise", "gradual_unfreeze", "head_first",
           "l2sp")


def _result(name: str, accuracy: float, group_lr: np.ndarray,
            diverged: bool = False) -> MethodResult:
  rng = np.random.default_rng(len(name))
  curve = 1 - 0.5 * np.exp(-np.arange(1, EPOCHS + 1) / 3)
  val = np.clip(curve * accuracy / curve[-1]
                + rng.normal(0, 0.01, (SEEDS, EPOCHS)), 0.01, 0.99)
  loss = np.ones((SEEDS, EPOCHS), np.float32)
  if diverged:
    loss[:] = np.nan
  return MethodResult(
      name=name,
      test_accuracy=accuracy + rng.normal(0, 0.01, SEEDS),
      history={"train_loss": loss, "val_loss": loss.copy(),
               "val_accuracy": val.astype(np.float32),
               "scale": np.ones((SEEDS, EPOCHS), np.float32),
               "group_lr": np.broadcast_to(group_lr, (SEEDS, EPOCHS, LEVELS)
                                           ).astype(np.float32)},
      seconds=1.0, compile_seconds=1.0)


def _rates(*per_level) -> np.ndarray:
  """``[epochs, levels]`` from one value or one ``[epochs]`` array a level."""
  return np.stack([np.broadcast_to(np.asarray(v, np.float32), (EPOCHS,))
                   for v in per_level], -1)


CONSTANT = _rates(0.03, 0.03, 0.03)
# Gradual unfreezing: the head from the start, layer 2 from epoch 3,
# layer 1 from epoch 5.
UNFREEZE = _rates(np.where(np.arange(EPOCHS) >= 4, 0.03, 0.0),
                  np.where(np.arange(EPOCHS) >= 2, 0.03, 0.0), 0.03)
LAYERWISE = _rates(0.0243, 0.027, 0.03)


@pytest.fixture(scope="module")
def results():
  accuracy = dict(zip(METHODS, np.linspace(0.80, 0.95, len(METHODS))))
  rates = {"layerwise": LAYERWISE, "gradual_unfreeze": UNFREEZE}
  return {name: _result(name, accuracy[name], rates.get(name, CONSTANT))
          for name in METHODS}


def _visible_axes(fig):
  return [ax for ax in fig.axes if ax.get_visible()]


def test_every_method_has_its_own_colour():
  for count in (11, 20):
    names = [f"m{i}" for i in range(count)]
    colours = [matplotlib.colors.to_hex(c)
               for c, _ in plots.method_colours(names).values()]
    assert len(set(colours)) == count
  # Beyond 20 the colours repeat with another dash pattern: still distinct.
  styles = set(plots.method_colours([f"m{i}" for i in range(25)]).values())
  assert len(styles) == 25


def test_test_accuracy_is_sorted_with_every_seed_and_the_references(results):
  fig = plots.test_accuracy_figure(results, "task")
  (ax,) = fig.axes[:1]
  labels = [t.get_text() for t in ax.get_yticklabels()]
  means = {n: r.test_accuracy.mean() for n, r in results.items()}
  # Best on top: the y ticks run from the worst (bottom) to the best.
  expected = sorted(results, key=means.get)
  assert [label.split(" (")[0] for label in labels] == expected
  assert "constant (reference)" in labels and "scratch (reference)" in labels
  bold = {t.get_text() for t in ax.get_yticklabels()
          if t.get_fontweight() == "bold"}
  assert bold == {"constant (reference)", "scratch (reference)"}
  # One point per seed and method, in the method's colour.
  scatters = [c for c in ax.collections
              if (c.get_gid() or "").startswith("seeds:")]
  assert [c.get_gid() for c in scatters] == [f"seeds:{n}" for n in expected]
  assert [len(s.get_offsets()) for s in scatters] == [SEEDS] * len(results)
  colours = {matplotlib.colors.to_hex(s.get_facecolor()[0]) for s in scatters}
  assert len(colours) == len(results)
  assert ax.get_xlabel() == "test accuracy"
  # The constant rate's mean, drawn across.
  (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "constant (mean)"]
  assert line.get_xdata()[0] == pytest.approx(means["constant"])


def test_a_diverged_method_is_counted_not_drawn(results):
  broken = dict(results)
  broken["decay"] = _result("decay", 0.9, CONSTANT, diverged=True)
  fig = plots.test_accuracy_figure(broken)
  labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
  assert labels[0] == "decay (3/3 diverged)"  # listed last (bottom)
  panels = plots.validation_figure(broken).axes
  (decay,) = [ax for ax in panels if ax.get_title() == "decay"]
  assert [t.get_text() for t in decay.texts] == ["all runs diverged"]


def test_learning_rate_shows_every_group_per_method(results):
  fig = plots.learning_rate_figure(results, "task")
  panels = _visible_axes(fig)
  assert [ax.get_title() for ax in panels] == list(METHODS)
  for ax in panels:
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()}
    assert list(lines) == ["layer 1 (input side)", "layer 2", "head"]
  by_name = {ax.get_title(): ax for ax in panels}
  layerwise = {ln.get_label(): ln.get_ydata()
               for ln in by_name["layerwise"].get_lines()}
  assert layerwise["layer 1 (input side)"][0] == pytest.approx(0.0243)
  assert layerwise["head"][0] == pytest.approx(0.03)
  unfreeze = {ln.get_label(): ln.get_ydata()
              for ln in by_name["gradual_unfreeze"].get_lines()}
  assert unfreeze["layer 2"].tolist()[:3] == [0.0, 0.0, pytest.approx(0.03)]
  assert unfreeze["layer 1 (input side)"][3] == 0.0
  # Clean labels: what is drawn, once.
  assert {ax.get_ylabel() for ax in panels} <= {"learning rate", ""}
  assert {ax.get_xlabel() for ax in panels} <= {"epoch", ""}
  assert "mean over seeds" not in "".join(ax.get_ylabel() for ax in panels)
  # A frozen group (rate 0) stays in view.
  assert panels[0].get_ylim()[0] < 0 < 0.03 < panels[0].get_ylim()[1]


def test_group_names_follow_the_depth_levels():
  assert plots.group_names(1) == ["all layers"]
  assert plots.group_names(4) == ["layer 1 (input side)", "layer 2",
                                  "layer 3", "head"]
  with pytest.raises(ValueError, match="groups names 2 groups, the history "
                     "has 3"):
    plots.learning_rate_figure(
        {"m": _result("m", 0.9, CONSTANT)}, groups=["body", "head"])


def test_validation_curves_in_panels_with_spread_and_reference(results):
  fig = plots.validation_figure(results, "task")
  panels = _visible_axes(fig)
  assert [ax.get_title() for ax in panels] == list(METHODS)
  colours = []
  for ax in panels:
    name = ax.get_title()
    own = [ln for ln in ax.get_lines() if ln.get_label() == name]
    assert len(own) == 1 and len(own[0].get_xdata()) == EPOCHS
    colours.append(matplotlib.colors.to_hex(own[0].get_color()))
    assert len(ax.collections) == 1  # the ± std band
    reference = [ln for ln in ax.get_lines()
                 if ln.get_label() == "constant (mean)"]
    assert len(reference) == (0 if name == "constant" else 1)
  assert len(set(colours)) == len(METHODS)
  assert panels[0].get_yscale() == "logit"
  assert panels[0].get_ylabel() == "validation accuracy"


def test_write_plots_writes_the_three_pngs(results, tmp_path):
  paths = report.write_plots(results, tmp_path, title="task")
  assert [p.name for p in paths] == ["test_accuracy.png", "learning_rate.png",
                                     "val_accuracy.png"]
  for path in paths:
    assert path.read_bytes()[:8] == PNG_MAGIC
  assert not list(tmp_path.glob(".*"))  # no temporary files left
