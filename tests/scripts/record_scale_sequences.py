"""Records the scale sequences of every strategy on fixed metric sequences.

usage: python tests/scripts/record_scale_sequences.py [OUT.json]

Each configuration in ``CONFIGS`` (every public strategy with its defaults,
with the settings ``lrtransfer.recipes.default_recipes`` uses, and with
non-default finer settings) runs inside one jitted ``lax.scan`` over every
metric sequence in ``sequences()``, fed three ways (``FEEDS``): the
validation loss judged with the training loss alongside, the validation
accuracy judged in max mode, and one bare value. The scale after each step
is written as the hex of its float32 bits, so
``tests/test_scale_sequences.py`` can assert bit-identical sequences: a
change of signature or of internal layout must not move a single scale.

The default output is ``tests/data/scale_sequences.json``.
"""

from __future__ import annotations

import json
import pathlib
import sys
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrtransfer
from lrtransfer import AdjustRule, DynamicRule

WARMUP = 2  # steps before the first evaluation (count 0, never judged)
STEPS = 48  # steps after the first evaluation
TOTAL = WARMUP + STEPS
EVALS = 16  # evaluations of a regular sequence, STEPS // EVALS steps each
OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / (
    "scale_sequences.json")

# Each configuration: a factory of the transformation, built with the
# public API. The ids name the configuration, never an argument spelling.
CONFIGS: dict[str, Callable[[], optax.GradientTransformationExtraArgs]] = {
    "decay-recipe": lambda: lrtransfer.decay(0.99, every_steps=3,
                                             staircase=True),
    "decay-warmup-floor": lambda: lrtransfer.decay(
        0.8, every_steps=2, warmup_steps=2, warmup_init=0.1, min_scale=0.3),
    "reduce_on_plateau-defaults": lambda: lrtransfer.reduce_on_plateau(),
    "reduce_on_plateau-recipe": lambda: lrtransfer.reduce_on_plateau(
        factor=0.5, patience=3, min_scale=0.1),
    "reduce_on_plateau-abs-eps": lambda: lrtransfer.reduce_on_plateau(
        factor=0.3, patience=1, cooldown=2, threshold=0.01,
        threshold_mode="abs", min_scale=0.01, eps=0.05),
    "bold_driver-defaults": lambda: lrtransfer.bold_driver(),
    "bold_driver-bounds": lambda: lrtransfer.bold_driver(
        increase=1.2, decrease=0.7, min_scale=0.5, max_scale=2.0),
    "adjust-defaults": lambda: lrtransfer.adjust(),
    "adjust-brake-on-any-rise": lambda: lrtransfer.adjust(
        rule=AdjustRule(brake_while_improving=True)),
    "adjust-quick-lowering": lambda: lrtransfer.adjust(
        patience=1, cooldown=0, rule=AdjustRule(improve_factor=0.9)),
    "adjust-reduce": lambda: lrtransfer.adjust(
        raise_factor=1.0, lower_factor=0.5, patience=1, cooldown=0,
        rule=AdjustRule(rise_factor=1.0)),
    "adjust-overfit-lowers": lambda: lrtransfer.adjust(
        patience=1, cooldown=0, lower_factor=0.5),
    "adjust-finer": lambda: lrtransfer.adjust(
        patience=1, cooldown=0, raise_factor=2.0, rule=AdjustRule(
            remember_brake=True, brake_patience=1, slow_patience=2,
            max_raises=1, train_threshold=0.05, train_rise=0.1,
            fitted_ratio=0.2, slow_progress=0.3, rise_factor=0.7)),
    "adjust-abs-target-eps": lambda: lrtransfer.adjust(
        raise_factor=1.0, lower_factor=0.5, patience=1, min_scale=0.1,
        max_scale=4.0, rule=AdjustRule(
            threshold=0.01, threshold_mode="abs", target=0.5, eps=1e-3,
            improve_factor=1.1, init_scale=0.5, train_monitor=None)),
    "dynamic-recipe": lambda: lrtransfer.dynamic(TOTAL, every_steps=3),
    "dynamic-quick": lambda: lrtransfer.dynamic(TOTAL, every_steps=2,
                                                rate=0.9, patience=1),
    "dynamic-gains-reduce": lambda: lrtransfer.dynamic(
        TOTAL, every_steps=3, rate=0.9, raise_factor=1.0, lower_factor=0.7,
        patience=1, cooldown=0, rule=DynamicRule(
            progress_gain=2.0, stall_gain=2.0, improving_gain=0.5)),
    "dynamic-finer": lambda: lrtransfer.dynamic(
        TOTAL, every_steps=3, patience=1, lower_factor=0.5, min_scale=0.1,
        max_scale=3.0, rule=DynamicRule(
            remember_brake=False, brake_patience=0, slow_patience=2,
            improve_factor=0.95, max_raises=1)),
}


def _eval_steps(intervals):
  """Counts per step: WARMUP zeros, then evaluation k on its interval."""
  assert sum(intervals) == STEPS, intervals
  counts = [0] * WARMUP
  for k, n in enumerate(intervals, start=1):
    counts += [k] * n
  return np.asarray(counts, np.int32)


def sequences() -> dict[str, dict[str, np.ndarray]]:
  """Per sequence, per step: val_loss, val_accuracy, train_loss, count.

  Each is one kind of the hostile sequences of the property tests:
  improving, plateau, over-fitting (training improves while validation
  worsens), diverging, NaN, negative values, slow progress, noise, a spike
  that recovers, and irregular evaluation intervals with counts that jump
  and go back.
  """
  k = np.arange(EVALS, dtype=np.float64)
  rng = np.random.default_rng(20)
  per_eval = {
      "improving": (0.85 ** k, 1.2 * 0.8 ** k),
      "plateau": (np.minimum(1.0, np.maximum(0.7, 1.0 - 0.15 * k)),
                  np.maximum(0.95, 1.2 - 0.1 * k)),
      "overfitting": (np.where(k < 4, 1.0 - 0.1 * k, 0.6 + 0.08 * (k - 4)),
                      0.7 ** k),
      "diverging": (np.where(k < 3, 1.0 - 0.1 * k, 0.8 * 1.5 ** (k - 2)),
                    np.where(k < 14, np.where(k < 3, 1.0 - 0.1 * k,
                                              0.8 * 1.6 ** (k - 2)), np.inf)),
      "nan": (np.where(np.isin(k, [0, 3, 4, 8]), np.nan, 0.9 ** k),
              np.where(np.isin(k, [6, 11]), np.nan, 0.85 ** k)),
      "negative": (-2.0 - np.where(k < 6, 0.2 * k, 1.0 - 0.15 * (k - 6)),
                   -2.5 - 0.3 * np.minimum(k, 8)),
      "slow_progress": (1.0 - 0.02 * k, 1.0 * 0.98 ** k),
      "noisy": (np.exp(-k / 8) + rng.normal(0, 0.05, EVALS),
                np.exp(-k / 6) + rng.normal(0, 0.03, EVALS)),
      "spike": (np.where(np.isin(k, [3, 4]), 1.5, 0.9 ** k),
                np.where(k == 3, 3.0, np.where(k == 4, 2.0, 0.8 ** k))),
  }
  out = {}
  regular = _eval_steps([STEPS // EVALS] * EVALS)
  for name, (val, train) in per_eval.items():
    out[name] = _per_step(val, train, regular)
  # Irregular: intervals of 1 to 6 steps, counts that jump (1, 2, 4, 7, ...)
  # and a stale count fed again after a newer one (ignored).
  intervals = [1, 4, 2, 1, 6, 3, 1, 5, 2, 4, 1, 3, 6, 2, 4, 3]
  steps = _eval_steps(intervals)
  jumps = np.asarray([0, 1, 2, 4, 7, 8, 9, 12, 13, 14, 20, 21, 22, 23, 30,
                      31, 40], np.int32)
  counts = jumps[steps]
  counts[WARMUP + 8] = 4  # a stale evaluation between evaluations 5 and 6
  val = np.where(k < 5, 1.0 - 0.1 * k, 0.6 + 0.001 * (k % 2))
  train = np.where(k < 7, 1.0 - 0.05 * k, 0.7)
  irregular = _per_step(val, train, steps)
  irregular["count"] = counts
  out["irregular"] = irregular
  return out


def _per_step(val, train, steps):
  index = np.maximum(steps - 1, 0)
  val = np.asarray(val, np.float32)[index]
  train = np.asarray(train, np.float32)[index]
  # An accuracy that moves against the loss, NaN where the loss is.
  accuracy = np.where(np.isnan(val), np.nan,
                      1.0 / (1.0 + np.abs(val))).astype(np.float32)
  return {"val_loss": val, "val_accuracy": accuracy, "train_loss": train,
          "count": steps.astype(np.int32)}


def _measure(feed, values, count):
  """The measurement of one step, as the feed passes it."""
  if feed == "loss":
    return lrtransfer.measurement(count=count, monitor="val_loss", **values)
  if feed == "accuracy":
    return lrtransfer.measurement(count=count, monitor="val_accuracy",
                                  mode="max", **values)
  return lrtransfer.measurement(values["val_loss"], count)


FEEDS = ("loss", "accuracy", "value")


def run(make, feed: str, seqs: dict[str, dict[str, np.ndarray]]
        ) -> dict[str, np.ndarray]:
  """Scales after each step, float32, one array per sequence."""
  tx = make()
  params = {"w": jnp.ones((2,), jnp.float32)}
  names = sorted(seqs)
  stacked = {key: jnp.asarray(np.stack([seqs[n][key] for n in names]))
             for key in ("val_loss", "val_accuracy", "train_loss", "count")}

  def one(val_loss, val_accuracy, train_loss, count):
    def body(state, step):
      vl, va, tl, c = step
      values = {"val_loss": vl, "val_accuracy": va, "train_loss": tl}
      grads = jax.tree.map(jnp.ones_like, params)
      _, state = tx.update(grads, state, params,
                           metric=_measure(feed, values, c))
      return state, lrtransfer.current_scale(state)
    _, scales = jax.lax.scan(body, tx.init(params),
                             (val_loss, val_accuracy, train_loss, count))
    return scales

  with warnings.catch_warnings():
    # The bare-value feed lacks train_loss: adjust warns that it cannot
    # raise or brake, which is what that feed records.
    warnings.simplefilter("ignore", UserWarning)
    scales = jax.jit(jax.vmap(one))(stacked["val_loss"],
                                    stacked["val_accuracy"],
                                    stacked["train_loss"], stacked["count"])
  scales = np.asarray(scales, np.float32)
  return {n: scales[i] for i, n in enumerate(names)}


def to_hex(scales: np.ndarray) -> str:
  """The float32 bits of each scale, as 8 hex digits, space-separated."""
  return " ".join(f"{b:08x}" for b in np.asarray(scales, np.float32).view(
      np.uint32))


def record() -> dict:
  seqs = sequences()
  out = {}
  for config, make in CONFIGS.items():
    out[config] = {feed: {name: to_hex(s) for name, s in
                          run(make, feed, seqs).items()} for feed in FEEDS}
  return out


def main(argv: list[str]) -> None:
  path = pathlib.Path(argv[1]) if len(argv) > 1 else OUT
  path.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main(sys.argv)
