"""The plot of a ``fit_auto`` population: every member's validation curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrtransfer._src.report import _atomic_write


def write_member_plot(result, path: Path, title: str = "",
                      seed_index: int = 0) -> Path:
  """Validation curves of one seed's members, the chosen one in bold.

  The monitored value is drawn (``val_accuracy`` when logged, as the
  command's other plots); a member stopped by successive halving ends at
  its rung. Colour: the base rate; line style: the copy depth.
  """
  from matplotlib.figure import Figure

  name = "val_accuracy" if "val_accuracy" in result.history else (
      result.monitor)
  curves = result.history[name][seed_index]  # [members, epochs]
  rates = sorted({c.learning_rate for c in result.candidates})
  depths = sorted({(c.transfer_layers, c.keep_head)
                   for c in result.candidates})
  styles = ("-", "--", ":", "-.")
  # The copy depth is also the marker's shape: a member stopped after one
  # epoch is a lone marker, where a line style cannot show.
  markers = ("o", "s", "^", "D")
  fig = Figure(figsize=(7, 4.2), dpi=110)
  ax = fig.subplots()
  epochs = np.arange(1, curves.shape[1] + 1)
  for k, candidate in enumerate(result.candidates):
    depth = depths.index((candidate.transfer_layers, candidate.keep_head))
    chosen = k == result.chosen[seed_index]
    label = (f"lr {candidate.learning_rate:g}, copy "
             f"{candidate.transfer_layers}"
             + ("+head" if candidate.keep_head else "")
             + (" (chosen)" if chosen else ""))
    ax.plot(epochs, curves[k], label=label,
            color=f"C{rates.index(candidate.learning_rate) % 10}",
            linestyle=styles[depth % len(styles)],
            linewidth=2.5 if chosen else 1.0, alpha=1.0 if chosen else 0.7,
            marker=markers[depth % len(markers)], markersize=3.5)
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"{name.replace('_', ' ')} (seed {result.seeds[seed_index]})")
  ax.set_title(f"{title}: {len(result.candidates)} members, "
               f"{result.compute:.2g} runs of compute".lstrip(": "))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, ncol=2, title="colour: rate; line and marker: "
            "copied levels", title_fontsize=7)
  fig.tight_layout()
  _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
  return path
