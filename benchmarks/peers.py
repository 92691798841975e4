"""Every peer the benchmarks compare lrtransfer with, defined in one place.

**Tuning-free peers** (``quality.py``, ``robustness.py``, through
``methods.py``): the tools a user would pick instead of tuning a learning
rate. Each runs in lrtransfer's compiled fit loop
(``lrtransfer.train.fit_many``) with the same model, data, batch size,
epochs and per-epoch validation as lrtransfer's methods, through
``Recipe(optimizer=..., eval_params=...)``, which replaces the fit loop's
SGD-momentum by the peer's own optimizer. Settings are each peer's
documented defaults (optax 0.2.8, ``optax/contrib``; signatures read from
the installed source):

* ``dog``: ``optax.contrib.dog()`` -- ``learning_rate=1.0``,
  ``init_step=("heuristic", 1e-6)``, ``eps=1e-8`` (Ivgi, Hinder, Carmon,
  "DoG is SGD's Best Friend", 2023, https://arxiv.org/abs/2302.12022);
* ``dowg``: ``optax.contrib.dowg()`` -- ``learning_rate=1.0``, ``eps=1e-4``
  (Khaled, Mishchenko, Jin, "DoWG Unleashed", 2023,
  https://arxiv.org/abs/2305.16284);
* ``prodigy``: ``optax.contrib.prodigy()`` -- ``learning_rate=1.0``,
  ``betas=(0.9, 0.999)``, ``estim_lr0=1e-6`` (Mishchenko, Defazio,
  "Prodigy", 2023, https://arxiv.org/abs/2306.06101);
* ``schedule_free_sgd``: ``optax.contrib.schedule_free_sgd()`` --
  ``learning_rate=1.0``, ``b1=0.9``, ``weight_lr_power=2``; evaluated (val
  and test) at its averaged parameters,
  ``optax.contrib.schedule_free_eval_params`` (Defazio et al., "The Road
  Less Scheduled", 2024, https://arxiv.org/abs/2405.15682);
* ``mechanize_sgd``: ``optax.contrib.mechanize(optax.sgd(1.0,
  momentum=0.9))`` -- Mechanic's defaults (``weight_decay=1e-2``,
  ``s_init=1e-6``, ``num_betas=6``) on the fit loop's SGD-momentum with the
  base rate 1.0 its docstring prescribes ("base learning rate set to 1.0 ...
  Mechanic will learn the right scale factor"; Cutkosky, Defazio, Mehta,
  "Mechanic", 2023, https://arxiv.org/abs/2306.00144);
* ``optax_reduce_on_plateau``: SGD-momentum at the base rate, then
  ``optax.contrib.reduce_on_plateau(factor=0.5, patience=4,
  accumulation_size=steps_per_epoch)`` on the validation loss: the factor of
  lrtransfer's ``reduce_on_plateau`` recipe, and patience + 1 so that both
  reduce at the same (4th) bad evaluation (Optax acts at the ``patience``-th,
  lrtransfer and PyTorch at the ``patience + 1``-th); ``accumulation_size``
  makes it judge once per epoch (the adapter in ``optax_metric.py``);
* ``greedy_lr``: the GreedyLR rule of Hugging Face transformers, ported
  (``greedy_lr.py``; a port, not Hugging Face's code), its defaults, on
  SGD-momentum at the base rate.

The first five take no base rate (``base_rate=False``); the last two do.

**Speed peers** (``speed.py``): the same fine-tuning job written with each
peer's own tools. Every peer trains the digits MLP (64-256-128-10, ReLU)
from the *same* initial weights (the lrtransfer target built from the
source model), on the same data, batch 32, SGD momentum 0.9, validation
after every epoch and the peer's own reduce-on-plateau scheduler on the
validation loss at the same factor and patience:

* ``optax_scan``: a hand-written ``jax.jit``-ed ``lax.scan`` over epochs of
  ``lax.scan`` over steps with ``optax.contrib.reduce_on_plateau(factor,
  patience, accumulation_size=steps_per_epoch)`` (reacts once per epoch, see
  ``optax_metric.py``), the previous epoch's validation loss fed as ``value``
  to every step, the same shuffling as lrtransfer's fit loop (a permutation
  from ``fold_in(key, epoch)``; the last batch wraps around);
* ``pytorch``: an eager loop, ``torch.optim.SGD`` +
  ``torch.optim.lr_scheduler.ReduceLROnPlateau``, 2 threads
  (``torch.set_num_threads``), ``torch.randperm`` shuffling with the same
  wrap-around batching;
* ``keras``: Keras 3 ``model.fit`` with ``validation_data`` and
  ``keras.callbacks.ReduceLROnPlateau`` on ``KERAS_BACKEND=jax`` (set before
  Keras is imported unless the caller set it); Keras's own shuffling, whose
  last batch is a short one.

PyTorch and Keras are optional (the ``bench`` extra). Each speed peer returns
``(seconds, final validation accuracy)`` of one run, the setup (building the
model, compiling) excluded; ``warmup`` does the setup. Patience conventions
differ (reported, not corrected): lrtransfer and PyTorch reduce at the
``patience + 1``-th bad epoch in a row, Optax and Keras at the
``patience``-th.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import greedy_lr
import optax_metric
from lrtransfer.recipes import Recipe

# ----------------------------------------------------------------------------
# Tuning-free peers: each a Recipe for lrtransfer's fit loop.

MOMENTUM = 0.9
# lrtransfer's reduce_on_plateau recipe: factor 0.5, patience 3 (acts at the
# 4th bad evaluation); Optax acts at the patience-th.
PLATEAU_FACTOR, OPTAX_PLATEAU_PATIENCE = 0.5, 4


def _optimizer_recipe(name: str, lr: float, make: Callable[..., Any],
                      eval_params: Any = None) -> Recipe:
  kwargs = {"optimizer": make}
  if eval_params is not None:
    kwargs["eval_params"] = eval_params
  return Recipe(name, lr, **kwargs)


def _schedule_free_eval(opt_state, params):
  return optax.contrib.schedule_free_eval_params(opt_state, params)


def tuning_free_factories(
) -> list[tuple[str, Callable[[float], Recipe], bool, str]]:
  """``(name, base rate -> Recipe, takes a base rate, note)`` per peer."""
  return [
      ("optax_reduce_on_plateau",
       lambda lr: Recipe("optax_reduce_on_plateau", lr,
                         strategy=lambda spe, total: optax_metric.optax_plateau(
                             spe, factor=PLATEAU_FACTOR,
                             patience=OPTAX_PLATEAU_PATIENCE)),
       True, "optax.contrib.reduce_on_plateau(factor=0.5, patience=4, "
       "accumulation_size=steps_per_epoch) after SGD-momentum"),
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


TUNING_FREE_PEERS = tuple(name for name, *_ in tuning_free_factories())


# ----------------------------------------------------------------------------
# Speed peers: the fine-tuning job of speed.py in each peer's own tools.

SPEED_PEERS = ("optax_scan", "pytorch", "keras")
# The bench extra (INSTALL_HINT), not core dependencies: where they are
# missing, speed.py reports them as not run.
OPTIONAL_SPEED_PEERS = ("pytorch", "keras")
INSTALL_HINT = "pip install -e .[bench]"


class Job:
  """The data, initial weights and settings every peer runs with."""

  def __init__(self, train, val, init_weights: list[tuple[np.ndarray,
                                                         np.ndarray]], *,
               epochs: int, batch_size: int, learning_rate: float,
               factor: float, patience: int):
    self.train_x = np.asarray(train.x, np.float32)
    self.train_y = np.asarray(train.y, np.int32)
    self.val_x = np.asarray(val.x, np.float32)
    self.val_y = np.asarray(val.y, np.int32)
    # [(kernel [in, out], bias [out])] input side first, head last.
    self.init_weights = [(np.asarray(k, np.float32), np.asarray(b, np.float32))
                         for k, b in init_weights]
    self.epochs = epochs
    self.batch_size = batch_size
    self.learning_rate = learning_rate
    self.factor = factor
    self.patience = patience

  @property
  def num_train(self) -> int:
    return len(self.train_y)

  @property
  def steps_per_epoch(self) -> int:
    return max(1, math.ceil(self.num_train / self.batch_size))


# ----------------------------------------------------------------------------
# Hand-written Optax scan.

class OptaxScan:
  """The job as one hand-written jitted program (no lrtransfer code)."""

  name = "optax_scan"

  def __init__(self, job: Job):
    self.job = job
    self.compiled = None
    self.compile_seconds = math.nan

  def _program(self):
    job = self.job
    spe, batch, n = job.steps_per_epoch, job.batch_size, job.num_train
    tx = optax.chain(
        optax.sgd(job.learning_rate, momentum=0.9),
        optax.contrib.reduce_on_plateau(factor=job.factor,
                                        patience=job.patience,
                                        accumulation_size=spe))

    def apply(params, x):
      *hidden, head = params
      for kernel, bias in hidden:
        x = jax.nn.relu(x @ kernel + bias)
      return x @ head[0] + head[1]

    def loss_fn(params, x, y):
      return optax.softmax_cross_entropy_with_integer_labels(
          apply(params, x), y).mean()

    grad_fn = jax.value_and_grad(loss_fn)

    def run(params, key, train_x, train_y, val_x, val_y):
      def evaluate(params):
        logits = apply(params, val_x)
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits, val_y).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == val_y)

      def train_step(carry, idx):
        params, opt_state, value = carry
        loss, grads = grad_fn(params, train_x[idx], train_y[idx])
        updates, opt_state = tx.update(grads, opt_state, params, value=value)
        return (optax.apply_updates(params, updates), opt_state, value), loss

      def epoch(carry, e):
        params, opt_state, value = carry
        perm = jax.random.permutation(jax.random.fold_in(key, e), n)
        batches = perm[jnp.arange(spe * batch) % n].reshape(spe, batch)
        (params, opt_state, _), _ = jax.lax.scan(
            train_step, (params, opt_state, value), batches)
        val_loss, val_acc = evaluate(params)
        return (params, opt_state, val_loss), val_acc

      init_loss, _ = evaluate(params)
      (params, _, _), accs = jax.lax.scan(
          epoch, (params, tx.init(params), init_loss),
          jnp.arange(job.epochs, dtype=jnp.int32))
      return params, accs

    return run

  def _args(self, seed: int):
    job = self.job
    params = [(jnp.asarray(k), jnp.asarray(b)) for k, b in job.init_weights]
    return (params, jax.random.key(seed), jnp.asarray(job.train_x),
            jnp.asarray(job.train_y), jnp.asarray(job.val_x),
            jnp.asarray(job.val_y))

  def warmup(self) -> None:
    start = time.perf_counter()
    self.compiled = jax.jit(self._program()).lower(*self._args(0)).compile()
    self.compile_seconds = time.perf_counter() - start

  def run(self, seed: int) -> tuple[float, float]:
    args = self._args(seed)
    jax.block_until_ready(args)
    start = time.perf_counter()
    params, accs = self.compiled(*args)
    jax.block_until_ready((params, accs))
    seconds = time.perf_counter() - start
    return seconds, float(accs[-1])


# ----------------------------------------------------------------------------
# PyTorch.

class PyTorch:
  """The job in eager PyTorch (CPU, 2 threads)."""

  name = "pytorch"

  def __init__(self, job: Job, threads: int = 2):
    import torch  # ImportError: the caller reports the peer as missing.
    self.torch = torch
    self.job = job
    torch.set_num_threads(threads)
    self.compile_seconds = 0.0  # eager: nothing to compile
    self.version = torch.__version__

  def _model(self):
    torch, job = self.torch, self.job
    layers = []
    for i, (kernel, bias) in enumerate(job.init_weights):
      linear = torch.nn.Linear(*kernel.shape)
      with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias.copy()))
      layers.append(linear)
      if i < len(job.init_weights) - 1:
        layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)

  def warmup(self) -> None:
    # One short run, so first-call allocations are not timed.
    epochs, self.job.epochs = self.job.epochs, 1
    try:
      self.run(0)
    finally:
      self.job.epochs = epochs

  def run(self, seed: int) -> tuple[float, float]:
    torch, job = self.torch, self.job
    torch.manual_seed(seed)
    model = self._model()
    opt = torch.optim.SGD(model.parameters(), lr=job.learning_rate,
                          momentum=0.9)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=job.factor, patience=job.patience)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_x = torch.from_numpy(job.train_x)
    train_y = torch.from_numpy(job.train_y).long()
    val_x = torch.from_numpy(job.val_x)
    val_y = torch.from_numpy(job.val_y).long()
    spe, batch, n = job.steps_per_epoch, job.batch_size, job.num_train
    wrap = torch.arange(spe * batch) % n
    accuracy = math.nan
    start = time.perf_counter()
    for _ in range(job.epochs):
      model.train()
      batches = torch.randperm(n)[wrap].reshape(spe, batch)
      for idx in batches:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(train_x[idx]), train_y[idx])
        loss.backward()
        opt.step()
      model.eval()
      with torch.no_grad():
        logits = model(val_x)
        val_loss = loss_fn(logits, val_y).item()
        accuracy = (logits.argmax(-1) == val_y).float().mean().item()
      sched.step(val_loss)
    seconds = time.perf_counter() - start
    return seconds, accuracy


# ----------------------------------------------------------------------------
# Keras 3.

class Keras:
  """The job with Keras 3 ``model.fit`` (JAX backend unless set otherwise)."""

  name = "keras"

  def __init__(self, job: Job):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras  # ImportError: the caller reports the peer as missing.
    self.keras = keras
    self.job = job
    self.backend = keras.backend.backend()
    self.version = keras.__version__
    self.model = None
    self.compile_seconds = math.nan

  def _build(self):
    keras, job = self.keras, self.job
    layers = [keras.Input((job.train_x.shape[1],))]
    for i, (kernel, _) in enumerate(job.init_weights):
      last = i == len(job.init_weights) - 1
      layers.append(keras.layers.Dense(kernel.shape[1],
                                       activation=None if last else "relu"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(job.learning_rate, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    return model

  def _reset(self):
    """Initial weights, fresh optimizer slots, the base learning rate."""
    job, model = self.job, self.model
    model.set_weights([w for pair in job.init_weights for w in pair])
    for variable in model.optimizer.variables:
      variable.assign(np.zeros(variable.shape, variable.dtype))
    model.optimizer.learning_rate.assign(job.learning_rate)

  def _fit(self, epochs: int):
    keras, job = self.keras, self.job
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=job.factor, patience=job.patience,
        verbose=0)
    return self.model.fit(
        job.train_x, job.train_y, batch_size=job.batch_size, epochs=epochs,
        validation_data=(job.val_x, job.val_y), callbacks=[plateau],
        shuffle=True, verbose=0)

  def warmup(self) -> None:
    # Traces and compiles the train and validation steps (full and short
    # last batch) once; later runs reuse them on the same model.
    start = time.perf_counter()
    self.model = self._build()
    self._reset()
    self._fit(1)
    self.compile_seconds = time.perf_counter() - start

  def run(self, seed: int) -> tuple[float, float]:
    self.keras.utils.set_random_seed(seed)
    self._reset()
    start = time.perf_counter()
    history = self._fit(self.job.epochs)
    seconds = time.perf_counter() - start
    return seconds, float(history.history["val_accuracy"][-1])


def load_peer(name: str, job: Job) -> tuple[Optional[Any], Optional[str]]:
  """``(peer, None)``, or ``(None, why)`` when it is not installed."""
  cls = {"optax_scan": OptaxScan, "pytorch": PyTorch, "keras": Keras}[name]
  try:
    return cls(job), None
  except ImportError as error:
    return None, f"{error} (install the peers with `{INSTALL_HINT}`)"
