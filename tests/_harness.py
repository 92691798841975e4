"""Shared helpers for the strategy tests: drivers and NumPy references.

The references are written independently of the library, in float32 NumPy
arithmetic (the library keeps metric bookkeeping in float32), one evaluation
or one step at a time, straight from the formulas in the docstrings.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrtransfer

f32 = np.float32


def _defaults(strategy, rule_class):
  """The library's defaults of a strategy: its signature's and its rule's,
  so that every default is defined once, in the library."""
  params = inspect.signature(strategy).parameters
  out = {name: p.default for name, p in params.items()
         if p.default is not inspect.Parameter.empty and name != "rule"}
  out.update({f.name: f.default for f in dataclasses.fields(rule_class)})
  return out


def split_settings(rule_class, settings):
  """Flat settings -> (the strategy's arguments, ``rule=`` for the rest)."""
  fields = {f.name for f in dataclasses.fields(rule_class)}
  args = {k: v for k, v in settings.items() if k not in fields}
  rule = rule_class(**{k: v for k, v in settings.items() if k in fields})
  return {**args, "rule": rule}


def adjust_with(**settings):
  """``lrtransfer.adjust`` from flat settings (rule fields included)."""
  return lrtransfer.adjust(**split_settings(lrtransfer.AdjustRule, settings))


def dynamic_with(total_steps, every_steps=1, **settings):
  """``lrtransfer.dynamic`` from flat settings (rule fields included)."""
  return lrtransfer.dynamic(total_steps, every_steps,
                            **split_settings(lrtransfer.DynamicRule,
                                             settings))


def per_step_measurements(values, steps_per_eval):
  """Feeds evaluation k (1-based) on every step of its interval.

  Returns (values, counts) per step: steps 0..steps_per_eval-1 see the
  first evaluation, and so on, as in a loop that evaluates, then trains an
  epoch passing that evaluation's measurement on each step.
  """
  step_values = np.repeat(np.asarray(values, np.float32), steps_per_eval)
  step_counts = np.repeat(np.arange(1, len(values) + 1, dtype=np.int32),
                          steps_per_eval)
  return step_values, step_counts


def scales_over_steps(tx, step_values, step_counts, params=None,
                      step_train=None):
  """Runs ``tx`` inside one ``lax.scan``; returns the scale after each step.

  With ``step_train``, each measurement also carries ``train_loss``.
  """
  params = {"w": jnp.ones((3,), jnp.float32)} if params is None else params
  if step_train is None:
    train_kwargs = lambda train: {}
    step_train = np.zeros(len(step_values), np.float32)
  else:
    train_kwargs = lambda train: {"train_loss": train}

  def body(state, inputs):
    value, count, train = inputs
    grads = jax.tree.map(jnp.ones_like, params)
    metric = lrtransfer.measurement(value, count, **train_kwargs(train))
    _, state = tx.update(grads, state, params, metric=metric)
    return state, lrtransfer.current_scale(state)

  _, scales = jax.jit(lambda s: jax.lax.scan(
      body, s, (jnp.asarray(step_values), jnp.asarray(step_counts),
                jnp.asarray(step_train, jnp.float32))))(tx.init(params))
  return np.asarray(scales)


class _Judge:
  """The evaluation rules of ``lrtransfer._src.plateau``, in float32."""

  def __init__(self, mode, patience, cooldown, threshold, threshold_mode,
               target):
    self.sign = f32(1.0 if mode == "min" else -1.0)
    self.patience, self.cooldown = patience, cooldown
    self.threshold, self.threshold_mode = f32(threshold), threshold_mode
    self.target = None if target is None else self.sign * f32(target)
    self.best, self.num_bad, self.cooldown_left = f32(np.inf), 0, 0

  def __call__(self, value):
    """Judges one evaluation; returns (good, plateau)."""
    v = self.sign * f32(value)
    margin = (self.threshold * abs(self.best)
              if self.threshold_mode == "rel" else self.threshold)
    improved = bool(np.isfinite(v)) and (
        self.best == np.inf or v < self.best - margin)
    good = improved and (self.target is None or v <= self.target)
    if improved:
      self.best = v
    self.num_bad = 0 if good else self.num_bad + 1
    if self.cooldown_left > 0:
      self.cooldown_left -= 1
      self.num_bad = 0
    plateau = self.num_bad > self.patience
    if plateau:
      self.cooldown_left = self.cooldown
      self.num_bad = 0
    self.last = v
    return good, plateau


class _Guard:
  """The guarded plateau action of ``lrtransfer._src.raising``, in float32."""

  def __init__(self, patience, raise_factor, lower_factor, max_raises,
               train_threshold, train_rise, fitted_ratio, rise_factor,
               slow_progress, remember_brake, brake_patience, slow_patience,
               brake_while_improving):
    self.patience, self.max_raises = patience, max_raises
    self.remember_brake = remember_brake
    self.brake_while_improving = brake_while_improving
    self.slow_progress = f32(slow_progress)
    self.train_last = f32(np.nan)
    self.rise_factor = f32(rise_factor)
    self.raise_factor = f32(raise_factor)
    self.lower_factor = f32(lower_factor)
    self.train_threshold = f32(train_threshold)
    self.train_rise, self.fitted_ratio = f32(train_rise), f32(fitted_ratio)
    self.train_best, self.train_num_bad = f32(np.inf), 0
    self.train_first = None
    self.brake_level = f32(np.nan)
    self.high_run, self.brake_patience = 0, brake_patience
    self.slow_run, self.slow_patience = 0, slow_patience
    self.raises, self.raise_value = 0, None

  def __call__(self, v, train, good, plateau):
    """One evaluation; returns (plateau factor, undo, raised, braked)."""
    fails_to_fit = rising = slow = False
    if train is not None:
      train = f32(train)
      best_before = self.train_best
      if self.train_first is None and np.isfinite(train):
        self.train_first = train
      improved = bool(np.isfinite(train)) and (
          self.train_best == np.inf
          or train < self.train_best - self.train_threshold * abs(
              self.train_best))
      if improved:
        self.train_best = train
      self.train_num_bad = 0 if improved else self.train_num_bad + 1
      fails_to_fit = (
          bool(np.isfinite(train)) and self.train_num_bad > self.patience
          and train <= self.train_best + self.train_rise * abs(
              self.train_best)
          and train > self.fitted_ratio * self.train_first)
      level = self.brake_level
      high = bool(np.isfinite(best_before)) and not (
          train <= best_before + self.train_rise * abs(best_before))
      self.high_run = self.high_run + 1 if high else 0
      waited = self.high_run > self.brake_patience and (
          self.brake_patience == 0 or not train < self.train_last)
      rising = bool(np.isfinite(best_before)) and (
          not np.isfinite(train)
          or (high and waited
              and train > self.fitted_ratio * self.train_first
              and (train > self.train_first
                   or not train <= level + self.train_rise * abs(level))))
      if (rising and not self.brake_while_improving and good
          and np.isfinite(train) and not train > self.train_first):
        rising = False  # noise below the start while validation improves
      if rising:
        self.brake_level = train if np.isfinite(train) else f32(np.nan)
      elif improved:
        self.brake_level = f32(np.nan)
      progress = self.train_last - train
      slow = bool(0 < progress < self.slow_progress * abs(self.train_last)
                  and train > self.fitted_ratio * self.train_first)
      self.slow_run = self.slow_run + 1 if slow else 0
      self.train_last = train
    undo = self.raise_value is not None and not v < self.raise_value
    raised = (plateau and fails_to_fit and self.raise_factor > 1
              and self.raises < self.max_raises and not undo
              and bool(np.isfinite(v)))
    grow = (good and self.slow_run >= self.slow_patience
            and self.raise_factor > 1 and not undo
            and bool(np.isfinite(v)))
    factor = self.raise_factor if grow else f32(1.0)
    if plateau:
      factor = self.raise_factor if raised else self.lower_factor
    if rising:
      factor = f32(factor * self.rise_factor)
    self.raises = 0 if good else self.raises + int(raised)
    raised = raised or grow
    self.raise_value = v if raised else None
    braked = rising and self.remember_brake and self.rise_factor < 1
    return factor, undo, raised, braked


ADJUST_DEFAULTS = _defaults(lrtransfer.adjust, lrtransfer.AdjustRule)
DYNAMIC_DEFAULTS = _defaults(lrtransfer.dynamic, lrtransfer.DynamicRule)


def _guard(s):
  return _Guard(s["patience"], s["raise_factor"], s["lower_factor"],
                s["max_raises"], s["train_threshold"], s["train_rise"],
                s["fitted_ratio"], s["rise_factor"], s["slow_progress"],
                s["remember_brake"], s["brake_patience"], s["slow_patience"],
                s["brake_while_improving"])


def _clip(x, low, high):
  return f32(min(max(f32(x), f32(low)), f32(high)))


def adjust_reference(values, train=None, **settings):
  """Scale after each evaluation, per the docstring of ``adjust``.

  ``train``: the training value of each evaluation, or None (not passed).
  ``settings``: flat, as :func:`adjust_with` takes them; ``mode`` "min"
  unless given.
  """
  s = {**ADJUST_DEFAULTS, "mode": "min", **settings}
  (mode, patience, cooldown, threshold, threshold_mode, target,
   init_scale, min_scale, max_scale, improve_factor) = (
       s["mode"], s["patience"], s["cooldown"], s["threshold"],
       s["threshold_mode"], s["target"], s["init_scale"], s["min_scale"],
       s["max_scale"], s["improve_factor"])
  judge = _Judge(mode, patience, cooldown, threshold, threshold_mode, target)
  guard = _guard(s)
  scale, pre_raise, ceiling = f32(init_scale), f32(init_scale), f32(np.inf)
  out = []
  for k, value in enumerate(values):
    good, plateau = judge(value)
    action, undo, raised, braked = guard(judge.last, None if train is None
                                         else train[k], good, plateau)
    improve = f32(improve_factor) if good else f32(1.0)
    new = _clip(scale * (improve * action), min_scale, max_scale)
    if undo:
      new = min(new, pre_raise)
    if raised:
      pre_raise = _clip(scale * improve, min_scale, max_scale)
      new = min(new, max(ceiling, pre_raise))
    if braked:
      ceiling = min(ceiling, new)
    if not abs(new - scale) > s["eps"]:
      new = scale
    scale = new
    out.append(scale)
  return np.asarray(out, np.float32)


def dynamic_reference(step_values, step_counts, step_train=None, *,
                      total_steps, **settings):
  """Scale after each step, per the docstring formula of ``dynamic``."""
  s = {**DYNAMIC_DEFAULTS, "mode": "min", **settings}
  (every_steps, rate, progress_gain, stall_gain, improving_gain, mode,
   patience, cooldown, threshold, threshold_mode, target, improve_factor,
   min_scale, max_scale) = (
       s["every_steps"], s["rate"], s["progress_gain"], s["stall_gain"],
       s["improving_gain"], s["mode"], s["patience"], s["cooldown"],
       s["threshold"], s["threshold_mode"], s["target"],
       s["improve_factor"], s["min_scale"], s["max_scale"])
  judge = _Judge(mode, patience, cooldown, threshold, threshold_mode, target)
  guard = _guard(s)
  scale = pre_raise = float(s["init_scale"])
  last_count, ceiling, eps = 0, math.inf, s["eps"]
  lambda0 = -math.log(rate) / every_steps
  out = []
  for t, (value, count) in enumerate(zip(step_values, step_counts)):
    improve, action, undo, raised, braked = 1.0, 1.0, False, False, False
    if count > last_count:
      last_count = count
      good, plateau = judge(value)
      action, undo, raised, braked = guard(
          judge.last, None if step_train is None else step_train[t], good,
          plateau)
      improve = improve_factor if good else 1.0
    progress = min(t / total_steps, 1.0)
    log_decay = (lambda0 * (1 + progress_gain * progress)
                 * (stall_gain if judge.num_bad > 0 else improving_gain))
    decay = math.exp(-log_decay)
    new = min(max(scale * improve * action * decay, min_scale), max_scale)
    pre_raise = pre_raise * decay
    if undo:
      new = min(new, pre_raise)
    if raised:
      pre_raise = min(max(scale * improve * decay, min_scale), max_scale)
      new = min(new, max(ceiling, pre_raise))
    if braked:
      ceiling = min(ceiling, new)
    if not abs(new - scale) > eps:
      new = scale
    scale = new
    out.append(scale)
  return np.asarray(out)


def decay_reference(num_steps, *, rate, every_steps, staircase=False,
                    warmup_steps=0, warmup_init=0.0, min_scale=0.0):
  """Scale applied at each step, per the docstring of ``decay``."""
  out = []
  for t in range(num_steps):
    if t < warmup_steps:
      out.append(warmup_init + (1 - warmup_init) * t / warmup_steps)
      continue
    k = t - warmup_steps
    if staircase:
      k = (k // every_steps) * every_steps
    out.append(max(min_scale, rate ** (k / every_steps)))
  return np.asarray(out)


def tiny_mlp(sizes, num_classes, rngs, activation="tanh"):
  """The package's MLP with ``sizes = (in_features, *hidden)``."""
  return lrtransfer.models.MLP(sizes[0], tuple(sizes[1:]), num_classes, activation,
                        rngs=rngs)


def strategy_factories(total_steps=40):
  """Every public strategy, configured to move within ``total_steps``."""
  period = max(1, total_steps // 20)
  return {
      "decay": lambda: lrtransfer.decay(0.8, every_steps=period,
                                        warmup_steps=2),
      "schedule_scale": lambda: lrtransfer.schedule_scale(
          optax.cosine_decay_schedule(1.0, total_steps)),
      "adjust": lambda: adjust_with(patience=1, cooldown=0,
                                    improve_factor=0.9),
      "reduce_on_plateau": lambda: lrtransfer.reduce_on_plateau(
          factor=0.5, patience=1),
      "bold_driver": lambda: lrtransfer.bold_driver(),
      "dynamic": lambda: lrtransfer.dynamic(total_steps, every_steps=period,
                                            rate=0.9, patience=1),
  }
