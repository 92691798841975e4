"""``fit_many``: several fits of one structure as one vmapped program."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from flax import nnx

from lrtransfer._src.recipes import Recipe
from lrtransfer._src.train.checks import check_options
from lrtransfer._src.train.program import LossFn
from lrtransfer._src.train.runner import merge_model
from lrtransfer._src.train.runs import run_fits


@dataclasses.dataclass
class SweepResult:
  """The outcome of :func:`fit_many`: a leading run axis on everything.

  ``model(i)`` and ``best_model(i)`` give run ``i``'s trained model as an
  ``nnx.Module`` (parameters and other state), as :func:`fit` returns it.

  Attributes:
    params: trained (evaluation) parameters, each leaf ``[runs, ...]``.
    history: per-epoch arrays ``[runs, epochs, ...]``.
    test_accuracy: ``[runs]`` accuracy on the test split (if given).
    seconds, compile_seconds: wall times (compile: this call's, 0.0 when
      every program came from the cache).
    best_params: with ``restore_best``, the parameters of each run's best
      monitored evaluation, ``[runs, ...]``; else None.
    best_epoch: ``[runs]`` 1-based epoch of each run's best evaluation.
    best_test_accuracy: ``[runs]`` test accuracy of ``best_params`` (with
      ``restore_best`` and a test split).
    rest: the other state (BatchNorm statistics, ...), ``[runs, ...]``.
    best_rest: with ``restore_best``, the other state at each run's best
      evaluation (what ``best_params`` was evaluated with); else None.
    graphdef: the models' structure in eval mode (``nnx.GraphDef``), what
      ``model(i)`` merges run ``i``'s arrays into.
    depths: ``((path, depth), ...)``, the depth level of every parameter
      (the returned models remember them, see
      :func:`lrtransfer.layer_depths`).
  """
  params: Any
  history: dict[str, np.ndarray]
  test_accuracy: Optional[np.ndarray]
  seconds: float
  compile_seconds: float
  best_params: Any = None
  best_epoch: Optional[np.ndarray] = None
  best_test_accuracy: Optional[np.ndarray] = None
  rest: Any = None
  best_rest: Any = None
  graphdef: Any = dataclasses.field(default=None, repr=False)
  depths: Optional[tuple] = dataclasses.field(default=None, repr=False)

  @property
  def num_runs(self) -> int:
    """The number of runs (the length of the leading axis)."""
    return int(jax.tree.leaves(self.params)[0].shape[0])

  def model(self, i: int) -> nnx.Module:
    """Run ``i``'s trained model (evaluation parameters and other state).

    Args:
      i: the run, ``0 <= i < num_runs`` (negative counts from the end).

    Returns:
      A new ``nnx.Module`` in eval mode, as :func:`fit` returns its model.

    Raises:
      IndexError: ``i`` is not a run.
    """
    return self._merge(self.params, self.rest, i)

  def best_model(self, i: int) -> nnx.Module:
    """Run ``i``'s model at its best monitored evaluation (``best_epoch[i]``).

    Args:
      i: the run, ``0 <= i < num_runs`` (negative counts from the end).

    Returns:
      A new ``nnx.Module`` in eval mode, as :func:`fit`'s ``best_model``.

    Raises:
      ValueError: ``fit_many`` ran without ``restore_best=True``.
      IndexError: ``i`` is not a run.
    """
    if self.best_params is None:
      raise ValueError("best_model needs fit_many(..., restore_best=True), "
                       "which keeps each run's best parameters")
    return self._merge(self.best_params, self.best_rest, i)

  def _merge(self, params: Any, rest: Any, i: int) -> nnx.Module:
    if self.graphdef is None:
      raise ValueError("this SweepResult holds no graphdef: build it with "
                       "fit_many, or merge params and rest yourself")
    runs = self.num_runs
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not (
        -runs <= i < runs):
      raise IndexError(f"run {i!r} out of range: this sweep has {runs} runs "
                       f"(0 to {runs - 1})")
    pick = lambda tree: jax.tree.map(lambda leaf: leaf[int(i)], tree)
    return merge_model(self.graphdef, pick(params), pick(rest), self.depths)


def fit_many(models: Sequence[nnx.Module], recipe: Recipe, train: Any,
             val: Any, *, seeds: Sequence[int],
             learning_rates: Optional[Sequence[float]] = None,
             epochs: int = 50, batch_size: int = 32,
             source_params: Any = None, test: Any = None,
             loss_fn: Optional[LossFn] = None,
             metrics: Optional[dict[str, LossFn]] = None,
             monitor: str = "val_loss", mode: str = "auto",
             restore_best: bool = False, checkpoint_dir: Any = None,
             checkpoint_every: Optional[int] = None, resume: bool = False,
             devices: Optional[Sequence[jax.Device]] = None,
             on_chunk: Optional[Callable[[int], None]] = None
             ) -> SweepResult:
  """Runs several fits of one structure as a single ``jax.vmap``-ed program.

  Run ``i`` trains ``models[i]`` with data order ``seeds[i]`` and base rate
  ``learning_rates[i]`` (default: the recipe's). All models must share a
  structure (e.g. the same target built with different initialisation
  seeds). Every option works as in :func:`fit`, which runs the same code
  for one model:
  ``results[i] = fit(models[i], recipe, seed=seeds[i],
  learning_rate=learning_rates[i])`` up to float reassociation, computed as
  ``jax.vmap`` over ``i``. The compiled program is cached as :func:`fit`'s.

  Args:
    models: one model per run, all of one structure.
    recipe: optimizer recipe (:func:`lrtransfer.recipes.default_recipes`).
    train, val: training and validation data, as :func:`fit` takes them.
    seeds: one data-order seed per run.
    learning_rates: one base rate per run; default: the recipe's for all.
    epochs: number of epochs, as in :func:`fit`.
    batch_size: minibatch size, as in :func:`fit`.
    source_params: the source parameters, for L2-SP recipes.
    test: a test split with integer labels, scored by accuracy for every
      run (``test_accuracy``, ``best_test_accuracy``).
    loss_fn: ``loss_fn(model, x, y) -> scalar``, as in :func:`fit`.
    metrics: ``{name: fn(model, x, y) -> scalar}``, as in :func:`fit`.
    monitor: the logged value the strategies react to, as in :func:`fit`.
    mode: ``"min"``, ``"max"`` or ``"auto"``, as in :func:`fit`.
    restore_best: keep each run's best parameters (``best_model(i)``).
    checkpoint_dir: folder for run checkpoints (orbax); None: none.
    checkpoint_every: epochs between checkpoints, as in :func:`fit`.
    resume: continue from the latest checkpoint in ``checkpoint_dir``.
    devices: run data-parallel over these devices, each run's batch split
      across them; default: one device.
    on_chunk: ``on_chunk(epochs)`` after each compiled call (every
      ``checkpoint_every`` epochs, or once), e.g. to move a progress bar.

  Returns:
    A :class:`SweepResult` with a leading run axis; ``result.model(i)`` is
    run ``i``'s trained model, ``result.best_model(i)`` (with
    ``restore_best``) its best one.

  Raises:
    ValueError: as :func:`fit`; also ``models`` not a list, or ``seeds`` or
      ``learning_rates`` not one per model.

  Example::

    sweep = lrtransfer.train.fit_many(targets, recipe, train, val,
                                      seeds=[0, 1, 2], test=test)
    print(sweep.test_accuracy, sweep.model(0))

  References:
    ``jax.vmap``, https://docs.jax.dev/en/latest/_autosummary/jax.vmap.html
  """
  if isinstance(models, nnx.Module) or not isinstance(models,
                                                     (list, tuple)):
    raise ValueError(
        f"fit_many takes a list of models (one per run), got "
        f"{type(models).__name__}; for one model pass [model] or use fit")
  runs = len(models)
  if runs == 0 or len(seeds) != runs:
    raise ValueError(f"need one seed per model, got {len(seeds)} seeds for "
                     f"{runs} models")
  if learning_rates is not None and len(learning_rates) != runs:
    raise ValueError(f"need one learning rate per model, got "
                     f"{len(learning_rates)} for {runs} models")
  check_options(checkpoint_dir, checkpoint_every, resume, source_params,
                reports_chunks=on_chunk is not None)
  outcome = run_fits(
      list(models), recipe, train, val, seeds=list(seeds),
      learning_rates=None if learning_rates is None else list(learning_rates),
      batched=True, epochs=epochs, batch_size=batch_size,
      source_params=source_params, test=test, loss_fn=loss_fn,
      metrics=metrics, monitor=monitor, mode=mode, restore_best=restore_best,
      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
      resume=resume, devices=devices, on_chunk=on_chunk,
      seed_names=[f"seeds[{i}]" for i in range(runs)],
      rate_names=[f"learning_rates[{i}]" for i in range(runs)])
  carry = outcome.carry
  return SweepResult(
      outcome.params, outcome.history, outcome.test_accuracy,
      outcome.seconds, outcome.compile_seconds,
      carry.best_params if restore_best else None,
      np.asarray(carry.best_epoch), outcome.best_test_accuracy,
      outcome.rest, carry.best_rest if restore_best else None,
      graphdef=outcome.program.eval_graph, depths=outcome.program.depths)
