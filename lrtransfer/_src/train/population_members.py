"""The members of a ``fit_auto`` population: candidates and their models.

A member is a candidate base rate x a candidate copy depth (how many levels
of :func:`lrtransfer.layer_depths` are copied from the source; 0 trains from
scratch) x whether the source head is kept. Members of every depth are
models of ONE structure with different initial values, so a population is
one stack of parameters and one vmapped program.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import numpy as np
from flax import nnx

from lrtransfer._src.models import _flat, target_from_source
from lrtransfer._src.transfer.depths import layer_depths


class Candidate(NamedTuple):
  """One member's settings."""
  learning_rate: float  # base rate of the member's optimizer
  transfer_layers: int  # levels copied from the source (0: from scratch)
  keep_head: bool  # the source head is copied too
  strategy: str = "constant"  # the name of the member's recipe


def check_learning_rates(learning_rates: Any) -> tuple[float, ...]:
  """A non-empty sequence (or 1-D array) of distinct positive finite rates."""
  if isinstance(learning_rates, (np.ndarray, jax.Array)) and (
      learning_rates.ndim == 1):
    learning_rates = [float(rate) for rate in np.asarray(learning_rates)]
  if isinstance(learning_rates, (int, float)) or not isinstance(
      learning_rates, Sequence) or isinstance(learning_rates, str):
    raise ValueError(f"learning_rates must be a sequence of positive numbers, "
                     f"got {learning_rates!r}")
  rates = tuple(learning_rates)
  if not rates:
    raise ValueError("learning_rates is empty: give at least one candidate "
                     "base rate, e.g. learning_rates=(0.01, 0.1)")
  for rate in rates:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)
                                                ) or not (
        math.isfinite(rate) and rate > 0):
      raise ValueError(f"learning_rates holds {rate!r}: every candidate rate "
                       "must be a positive finite number")
  if len(set(rates)) != len(rates):
    raise ValueError(f"learning_rates {rates} repeats a rate: members would "
                     "be identical; give each once")
  return tuple(float(r) for r in rates)


def body_levels(model: nnx.Module, *, head=None, depth_fn=None) -> int:
  """The number of depth levels below the head (what can be copied)."""
  return max(jax.tree.leaves(layer_depths(model, depth_fn, head=head)),
             default=0)


# The named copy depths of the default candidate set (see default_depths).
DEPTH_CHOICES = ("scratch", "all_but_last", "all", "all_with_head")


def default_depths(levels: int, head_fits: bool,
                   choices: Sequence[str] = DEPTH_CHOICES
                   ) -> tuple[tuple[int, bool], ...]:
  """The candidate copy depths when none are given, ``(depth, keep_head)``.

  ``"scratch"``: 0; ``"all_but_last"``: ``levels - 1`` (at least 1), the
  single-run default of :func:`lrtransfer.models.default_transfer_layers`;
  ``"all"``: ``levels``, the whole body; ``"all_with_head"``: the whole
  body and the source head, only when the head has the target's output
  size. Duplicates are removed (a 1-level body: all_but_last == all).
  """
  named = {"scratch": (0, False),
           "all_but_last": (max(1, levels - 1), False),
           "all": (levels, False), "all_with_head": (levels, True)}
  unknown = [c for c in choices if c not in named]
  if unknown:
    raise ValueError(f"unknown depth choice {unknown[0]!r}; choose from "
                     f"{sorted(named)}")
  unique = []
  for choice in choices:
    option = named[choice]
    if choice == "all_with_head" and not head_fits:
      continue
    if option not in unique and 0 <= option[0] <= levels:
      unique.append(option)
  return tuple(unique)


def check_depths(transfer_layers: Any, levels: int
                 ) -> tuple[tuple[int, bool], ...]:
  """``transfer_layers`` as ``((depth, keep_head), ...)``: each item an int
  in ``[0, levels]`` or a ``(depth, keep_head)`` pair."""
  if isinstance(transfer_layers, (int, str)) or not isinstance(
      transfer_layers, Sequence) or not transfer_layers:
    raise ValueError(f"transfer_layers must be a non-empty sequence of copy "
                     f"depths, got {transfer_layers!r}")
  options = []
  for item in transfer_layers:
    depth, keep = (item if isinstance(item, tuple) and len(item) == 2
                   else (item, False))
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or (
        not 0 <= depth <= levels):
      raise ValueError(
          f"transfer_layers holds {item!r}: a copy depth must be an int in "
          f"[0, {levels}] (the model has {levels} levels below the head; 0 "
          "trains from scratch)")
    if not isinstance(keep, bool) or (keep and depth != levels):
      raise ValueError(
          f"transfer_layers holds {item!r}: keep_head must be a bool, and "
          f"keeping the head needs the whole body copied ({levels}, True)")
    if (int(depth), keep) in options:
      raise ValueError(f"transfer_layers repeats {item!r}: give each once")
    options.append((int(depth), keep))
  return tuple(options)


def head_fits(source: nnx.Module, target: nnx.Module, *, head=None,
              depth_fn=None) -> bool:
  """Whether the source has the target head's parameters, of equal shapes
  (then keeping the source head is a candidate)."""
  depths = _flat(layer_depths(target, depth_fn, head=head))
  top = max(depths.values(), default=0)
  source_params = _flat(nnx.split(source, nnx.Param, ...)[1])
  target_params = _flat(nnx.split(target, nnx.Param, ...)[1])
  return all(path in source_params and np.shape(source_params[path])
             == np.shape(leaf) for path, leaf in target_params.items()
             if depths.get(path) == top)


def member_model(source: nnx.Module, option: tuple[int, bool], seed: int, *,
                 num_outputs: Optional[int], target: Optional[nnx.Module],
                 head=None, depth_fn=None) -> nnx.Module:
  """The initial model of a member with copy depth ``option`` for ``seed``.

  Fresh layers come from ``nnx.Rngs(1000 + seed)``, the rule of
  :func:`lrtransfer.experiment.target_models` (away from the seeds a source
  is usually trained with), so a member starts exactly where the grid run
  of ``experiment.compare`` with that seed, rate and copy depth starts.
  With ``target=``, every seed starts from the target's own initial values.
  """
  depth, keep = option
  if target is not None:
    return target_from_source(source, target=target, transfer_layers=depth,
                              keep_head=keep, head=head, depth_fn=depth_fn)
  return target_from_source(source, num_outputs, transfer_layers=depth,
                            keep_head=keep, rngs=nnx.Rngs(1000 + int(seed)),
                            head=head, depth_fn=depth_fn)


def candidates(rates: tuple[float, ...],
               options: tuple[tuple[int, bool], ...],
               strategies: tuple[str, ...] = ("constant",)
               ) -> tuple[Candidate, ...]:
  """Every strategy x copy option x rate, in that order (members of one
  strategy and depth are neighbours in tables)."""
  return tuple(Candidate(rate, depth, keep, strategy)
               for strategy in strategies for depth, keep in options
               for rate in rates)
