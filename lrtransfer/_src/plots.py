"""The figures of a comparison: test accuracy, learning rates, validation curves.

Each function returns a standalone matplotlib ``Figure`` (no pyplot, the
global backend untouched); ``report.write_plots`` saves them. What each
shows is chosen so that methods that differ can be told apart:

* :func:`test_accuracy_figure` -- the number a user compares: every seed's
  test accuracy per method, with mean and standard deviation, methods
  sorted best first, the reference methods (:data:`REFERENCE_METHODS`)
  marked and the constant rate's mean drawn across as a line.
* :func:`learning_rate_figure` -- one panel per method, one line per
  parameter group (each depth level below the head, and the head), so that
  layer-wise rates, frozen layers (rate 0) and unfreezing are visible, not
  only the head's rate.
* :func:`validation_figure` -- one panel per method with the mean and the
  spread over seeds, and the constant rate's mean in every panel for
  reference, so that curves that would merge on one axis are apart.

Every method keeps one colour in all three figures (:func:`method_colours`,
distinct for up to 20 methods).

Example: the figures in ``docs/`` (``run-test-accuracy.png``,
``run-learning-rate.png``, ``run-val-curves.png``) are the three PNGs of::

    lrtransfer run --task digits_noise_3shot --epochs 30 --seeds 5
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from lrtransfer._src.experiment import MethodResult

# Baselines a strategy is judged against: a fine-tuning at a constant rate
# and training from scratch. Marked in the test-accuracy figure.
REFERENCE_METHODS = ("constant", "scratch")
# The method drawn as a reference line in every other panel.
REFERENCE_CURVE = "constant"
REFERENCE_GREY = "0.55"

# Distinct colours: tab10 (the 11th method would share the 1st one's), then
# the five dark tones of tab20b, then tab20's five lighter ones.
_PALETTE = (("tab10", range(10)), ("tab20b", range(0, 20, 4)),
            ("tab20", range(1, 20, 4)))
_LINESTYLES = ("-", "--", ":", "-.")
# Dash patterns of the depth levels below the head, from the input side.
_BODY_DASHES = (":", "--", "-.")


def method_colours(names: Sequence[str]) -> dict[str, tuple]:
  """``{name: (colour, linestyle)}``: a distinct colour for each of up to 20
  methods, then the colours again with another dash pattern."""
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel
  palette = [colormaps[map_name](i) for map_name, indices in _PALETTE
             for i in indices]
  return {name: (palette[i % len(palette)],
                 _LINESTYLES[(i // len(palette)) % len(_LINESTYLES)])
          for i, name in enumerate(names)}


def group_names(levels: int) -> list[str]:
  """Names of the ``levels`` parameter groups of ``group_lr``: the depth
  levels from the input side, then the head."""
  if levels == 1:
    return ["all layers"]
  return [f"layer {i + 1}{' (input side)' if i == 0 else ''}"
          for i in range(levels - 1)] + ["head"]


def _grid(count: int, extra: int = 0) -> tuple[int, int]:
  """(rows, columns) for ``count`` panels plus ``extra`` free cells."""
  cells = count + extra
  columns = 1 if cells == 1 else 2 if cells <= 4 else 3 if cells <= 12 else 4
  return -(-cells // columns), columns


def _kept(result: MethodResult, key: str) -> np.ndarray:
  """``history[key]`` of the runs that did not diverge ``[runs, epochs, ...]``."""
  return result.history[key][~result.diverged]


def _suptitle(fig: Figure, title: str, detail: str) -> None:
  # Wrapped to the figure's width: a figure of one or two panels is narrower
  # than the title.
  import textwrap  # pylint: disable=import-outside-toplevel
  text = f"{title}: {detail}" if title else detail
  width = max(30, int(fig.get_figwidth() * 12))
  fig.suptitle(textwrap.fill(text, width), fontsize=11)


def test_accuracy_figure(results: Mapping[str, MethodResult],
                         title: str = "") -> Figure:
  """Test accuracy per method: every seed, mean ± std, best method on top.

  Diverged runs are left out and counted in the method's label; a method
  whose runs all diverged is listed last, without points.
  """
  colours = method_colours(list(results))
  means = {}
  for name, result in results.items():
    kept = result.test_accuracy[~result.diverged]
    means[name] = float(kept.mean()) if len(kept) else -np.inf
  order = sorted(results, key=lambda n: means[n])  # best at the top (last)
  fig = Figure(figsize=(7.5, 0.42 * len(order) + 1.6), dpi=110)
  ax = fig.subplots()
  labels = []
  for row, name in enumerate(order):
    result = results[name]
    kept = result.test_accuracy[~result.diverged]
    colour = colours[name][0]
    reference = name in REFERENCE_METHODS
    if len(kept):
      jitter = np.linspace(-0.18, 0.18, len(kept)) if len(kept) > 1 else [0]
      ax.scatter(kept, row + np.asarray(jitter), s=14, color=colour,
                 alpha=0.55, linewidths=0, zorder=2, gid=f"seeds:{name}")
      ax.errorbar(kept.mean(), row, xerr=kept.std(), fmt="s" if reference
                  else "o", color="black" if reference else colour,
                  markersize=7, capsize=4, elinewidth=1.5, zorder=3)
    diverged = int(result.diverged.sum())
    label = name + (" (reference)" if reference else "")
    if diverged:
      label += f" ({diverged}/{len(result.diverged)} diverged)"
    labels.append(label)
  if REFERENCE_CURVE in results and np.isfinite(means[REFERENCE_CURVE]):
    ax.axvline(means[REFERENCE_CURVE], color=REFERENCE_GREY, linestyle="--",
               linewidth=1, zorder=1, label=f"{REFERENCE_CURVE} (mean)")
    ax.legend(loc="lower right", fontsize=8)
  ax.set_yticks(range(len(order)), labels)
  for tick, name in zip(ax.get_yticklabels(), order):
    if name in REFERENCE_METHODS:
      tick.set_fontweight("bold")
  ax.set_ylim(-0.6, len(order) - 0.4)
  ax.set_xlabel("test accuracy")
  ax.grid(axis="x", alpha=0.3)
  seeds = max(len(r.test_accuracy) for r in results.values())
  _suptitle(fig, title, f"test accuracy over {seeds} seeds "
            "(dots: seeds; marker and bar: mean ± std)")
  fig.tight_layout()
  return fig


def learning_rate_figure(results: Mapping[str, MethodResult],
                         title: str = "",
                         groups: Optional[Sequence[str]] = None) -> Figure:
  """The learning rate of each parameter group per epoch, one panel per method.

  The line is the mean over the runs that did not diverge; the band (where
  the runs differ) spans their minimum to maximum. A frozen group's rate is
  0. ``groups``: names of the ``group_lr`` levels (default
  :func:`group_names`).
  """
  names = list(results)
  levels = next(iter(results.values())).history["group_lr"].shape[-1]
  groups = list(groups) if groups is not None else group_names(levels)
  if len(groups) != levels:
    raise ValueError(f"groups names {len(groups)} groups, the history has "
                     f"{levels}: {groups}")
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel
  # Lower layers light, the head dark: one ramp, the same in every panel.
  ramp = colormaps["viridis"]
  group_colours = [ramp(0.85 - 0.75 * i / max(levels - 1, 1))
                   for i in range(levels)]
  rows, columns = _grid(len(names))
  fig = Figure(figsize=(3.3 * columns, 2.3 * rows + 0.8), dpi=110)
  axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
  top = 0.0
  for ax, name in zip(axes.flat, names):
    rates = _kept(results[name], "group_lr")  # [runs, epochs, levels]
    epochs = np.arange(1, results[name].history["group_lr"].shape[1] + 1)
    if not len(rates):
      ax.text(0.5, 0.5, "all runs diverged", transform=ax.transAxes,
              ha="center", va="center")
    for level in range(levels if len(rates) else 0):
      series = rates[:, :, level]
      head = level == levels - 1
      # Rates change between epochs: steps, not slopes. The head is drawn
      # last and solid; a body level that shares its rate shows as dashes
      # along it.
      ax.plot(epochs, series.mean(0), color=group_colours[level],
              linewidth=2.0 if head else 1.8, drawstyle="steps-post",
              linestyle="-" if head else _BODY_DASHES[level % 3],
              label=groups[level], zorder=3 if head else 4 + levels - level)
      if np.ptp(series, axis=0).max() > 0 and (
          head or not np.array_equal(series, rates[:, :, -1])):
        ax.fill_between(epochs, series.min(0), series.max(0),
                        color=group_colours[level], alpha=0.15, linewidth=0,
                        step="post")
      top = max(top, float(np.nanmax(series)))
    ax.set_title(name, fontsize=10)
    ax.grid(alpha=0.3)
  top = top if top > 0 else 1.0
  # Shared; a little below 0 so that a frozen group's line is not hidden
  # by the axis.
  axes.flat[0].set_ylim(-0.04 * top, 1.08 * top)
  for ax in axes.flat[len(names):]:
    ax.set_visible(False)
  for ax in axes[:, 0]:
    ax.set_ylabel("learning rate")
  for ax in axes[-1, :]:
    ax.set_xlabel("epoch")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  # Below the panels, in one row: over a panel it would hide its curves.
  fig.legend(handles, labels, loc="lower center", ncol=levels, fontsize=9,
             title="parameter group", frameon=True)
  seeds = max(len(r.test_accuracy) for r in results.values())
  _suptitle(fig, title, f"learning rate per parameter group (mean over "
            f"{seeds} seeds, band: min to max; 0: frozen)")
  legend_height = 0.75 / fig.get_figheight()  # inches -> figure fraction
  fig.tight_layout(rect=(0, legend_height, 1, 1))
  return fig


# Tick values of a logit axis, labelled as plain numbers.
_LOGIT_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def _logit_axis(ax, values: Sequence[np.ndarray]) -> None:
  """A logit y scale for accuracies on ``ax``: near 1 the curves that matter
  crowd together on a linear axis, while the logit scale spreads 0.9, 0.99,
  0.999 as evenly as 0.1, 0.5, 0.9."""
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values]
                          or [np.zeros(0)])
  inside = finite[(finite > 0) & (finite < 1)]
  low = float(inside.min()) if inside.size else 0.05
  high = float(inside.max()) if inside.size else 0.95
  # The bounds in logit units, widened a little; 0 and 1 are clipped.
  logit = lambda p: np.log(p / (1 - p))
  expit = lambda z: 1 / (1 + np.exp(-z))
  margin = 0.06 * (logit(high) - logit(low)) + 0.05
  bottom, top = logit(low) - margin, logit(high) + margin
  # At most about 8 labelled ticks, evenly spread in logit units.
  ticks, last = [], -np.inf
  for tick in _LOGIT_TICKS:
    if bottom <= logit(tick) <= top and (
        logit(tick) - last >= (top - bottom) / 8):
      ticks.append(tick)
      last = logit(tick)
  ax.set_yscale("logit", nonpositive="clip")
  ax.set_ylim(expit(bottom), expit(top))
  ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.yaxis.set_minor_locator(ticker.NullLocator())


def validation_figure(results: Mapping[str, MethodResult], title: str = "",
                      metric: str = "val_accuracy") -> Figure:
  """Validation ``metric`` per epoch, one panel per method.

  The line is the mean over the runs that did not diverge, the band their
  mean ± std; ``constant``'s mean is drawn in grey in the other panels.
  """
  names = list(results)
  colours = method_colours(names)
  rows, columns = _grid(len(names))
  fig = Figure(figsize=(3.3 * columns, 2.3 * rows + 0.8), dpi=110)
  axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
  reference = None
  if REFERENCE_CURVE in results and len(_kept(results[REFERENCE_CURVE],
                                              metric)):
    reference = _kept(results[REFERENCE_CURVE], metric).mean(0)
  for ax, name in zip(axes.flat, names):
    values = _kept(results[name], metric)  # [runs, epochs]
    epochs = np.arange(1, results[name].history[metric].shape[1] + 1)
    if reference is not None and name != REFERENCE_CURVE:
      ax.plot(epochs, reference, color=REFERENCE_GREY, linewidth=1.2,
              linestyle="--", label=f"{REFERENCE_CURVE} (mean)")
    colour, style = colours[name]
    if len(values):
      mean, std = values.mean(0), values.std(0)
      ax.fill_between(epochs, mean - std, mean + std, color=colour,
                      alpha=0.25, linewidth=0)
      ax.plot(epochs, mean, color=colour, linestyle=style, linewidth=1.8,
              label=name)
    else:
      ax.text(0.5, 0.5, "all runs diverged", transform=ax.transAxes,
              ha="center", va="center")
    ax.set_title(name, fontsize=10)
    ax.grid(alpha=0.3)
  if metric.endswith("accuracy"):
    _logit_axis(axes.flat[0], [_kept(r, metric) for r in results.values()])
  for ax in axes.flat[len(names):]:
    ax.set_visible(False)
  label = metric.removeprefix("val_").replace("_", " ")
  for ax in axes[:, 0]:
    ax.set_ylabel(f"validation {label}")
  for ax in axes[-1, :]:
    ax.set_xlabel("epoch")
  seeds = max(len(r.test_accuracy) for r in results.values())
  reference_note = (f"; grey: {REFERENCE_CURVE}" if reference is not None
                    else "")
  _suptitle(fig, title, f"validation {label} (mean over {seeds} seeds, "
            f"band: ± std{reference_note})")
  fig.tight_layout()
  return fig
