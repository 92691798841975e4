"""The peers a user would pick instead of tuning a learning rate.

Each runs in lrtransfer's compiled fit loop (``lrtransfer.train.fit_many``)
with the same model, data, batch size, epochs and per-epoch validation as
lrtransfer's methods, through ``Recipe(optimizer=..., eval_params=...)``,
which replaces the fit loop's SGD-momentum by the peer's own optimizer.
Settings are each peer's documented defaults (optax 0.2.8,
``optax/contrib``; signatures read from the installed source):

* ``dog``: ``optax.contrib.dog()`` -- ``learning_rate=1.0``,
  ``init_step=("heuristic", 1e-6)``, ``eps=1e-8`` (Ivgi et al. 2023);
* ``dowg``: ``optax.contrib.dowg()`` -- ``learning_rate=1.0``, ``eps=1e-4``
  (Khaled et al. 2023);
* ``prodigy``: ``optax.contrib.prodigy()`` -- ``learning_rate=1.0``,
  ``betas=(0.9, 0.999)``, ``estim_lr0=1e-6`` (Mishchenko & Defazio 2023);
* ``schedule_free_sgd``: ``optax.contrib.schedule_free_sgd()`` --
  ``learning_rate=1.0``, ``b1=0.9``, ``weight_lr_power=2``; evaluated (val
  and test) at its averaged parameters,
  ``optax.contrib.schedule_free_eval_params`` (Defazio et al. 2024);
* ``mechanize_sgd``: ``optax.contrib.mechanize(optax.sgd(1.0,
  momentum=0.9))`` -- Mechanic's defaults (``weight_decay=1e-2``,
  ``s_init=1e-6``, ``num_betas=6``) on the fit loop's SGD-momentum with the
  base rate 1.0 its docstring prescribes ("base learning rate set to 1.0 ...
  Mechanic will learn the right scale factor"; Cutkosky et al. 2023);
* ``optax_reduce_on_plateau``: SGD-momentum at the base rate, then
  ``optax.contrib.reduce_on_plateau(factor=0.5, patience=4,
  accumulation_size=steps_per_epoch)`` on the validation loss: the factor of
  lrtransfer's ``reduce_on_plateau`` recipe, and patience + 1 so that both
  reduce at the same (4th) bad evaluation (Optax acts at the ``patience``-th,
  lrtransfer and PyTorch at the ``patience + 1``-th); ``accumulation_size``
  makes it judge once per epoch (``optax_metric.py``);
* ``greedy_lr``: the GreedyLR rule of Hugging Face transformers, ported
  (``greedy_lr.py``; a port, not Hugging Face's code), its defaults, on
  SGD-momentum at the base rate.

The first five take no base rate (``base_rate=False``); the last two do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax

from lrtransfer.recipes import Recipe

import greedy_lr
import optax_metric

MOMENTUM = 0.9
# lrtransfer's reduce_on_plateau recipe: factor 0.5, patience 3 (acts at the
# 4th bad evaluation); Optax acts at the patience-th.
PLATEAU_FACTOR, OPTAX_PLATEAU_PATIENCE = 0.5, 4


def supports_optimizer() -> bool:
  """Whether this lrtransfer's Recipe can replace the base optimizer."""
  return "optimizer" in {f.name for f in dataclasses.fields(Recipe)}


def _optimizer_recipe(name: str, lr: float, make: Callable[..., Any],
                      eval_params: Any = None) -> Recipe:
  kwargs = {"optimizer": make}
  if eval_params is not None:
    kwargs["eval_params"] = eval_params
  return Recipe(name, lr, **kwargs)


def _schedule_free_eval(opt_state, params):
  return optax.contrib.schedule_free_eval_params(opt_state, params)


def peer_factories() -> list[tuple[str, Callable[[float], Recipe], bool, str]]:
  """``(name, base rate -> Recipe, takes a base rate, note)`` per peer."""
  out = [
      ("optax_reduce_on_plateau",
       lambda lr: Recipe("optax_reduce_on_plateau", lr,
                         strategy=lambda spe, total: optax_metric.optax_plateau(
                             spe, factor=PLATEAU_FACTOR,
                             patience=OPTAX_PLATEAU_PATIENCE)),
       True, "optax.contrib.reduce_on_plateau(factor=0.5, patience=4, "
       "accumulation_size=steps_per_epoch) after SGD-momentum"),
  ]
  if not supports_optimizer():
    return out
  out += [
      ("greedy_lr", lambda lr: _optimizer_recipe(
          "greedy_lr", lr, lambda rate: greedy_lr.greedy_lr_sgd(
              rate, momentum=MOMENTUM)),
       True, "port of transformers' GreedyLR (defaults) on SGD-momentum"),
      ("dog", lambda lr: _optimizer_recipe(
          "dog", lr, lambda rate: optax.contrib.dog()),
       False, "optax.contrib.dog() defaults"),
      ("dowg", lambda lr: _optimizer_recipe(
          "dowg", lr, lambda rate: optax.contrib.dowg()),
       False, "optax.contrib.dowg() defaults"),
      ("prodigy", lambda lr: _optimizer_recipe(
          "prodigy", lr, lambda rate: optax.contrib.prodigy()),
       False, "optax.contrib.prodigy() defaults"),
      ("schedule_free_sgd", lambda lr: _optimizer_recipe(
          "schedule_free_sgd", lr,
          lambda rate: optax.contrib.schedule_free_sgd(),
          eval_params=_schedule_free_eval),
       False, "optax.contrib.schedule_free_sgd() defaults, evaluated at "
       "schedule_free_eval_params"),
      ("mechanize_sgd", lambda lr: _optimizer_recipe(
          "mechanize_sgd", lr, lambda rate: optax.contrib.mechanize(
              optax.sgd(1.0, momentum=MOMENTUM))),
       False, "optax.contrib.mechanize(optax.sgd(1.0, momentum=0.9)) "
       "defaults"),
  ]
  return out


PEERS = ("optax_reduce_on_plateau", "greedy_lr", "dog", "dowg", "prodigy",
         "schedule_free_sgd", "mechanize_sgd")
