"""Scoring a model: the one rule ``fit``'s validation and ``evaluate`` share.

``fit(loss_fn=..., metrics=...)`` logs ``val_loss`` and ``val_<name>`` after
each epoch; :func:`evaluate` gives the same values, named ``loss`` and
``<name>``, for any model and split, so a model is scored the way it was
trained (a regression by its own loss, not by accuracy).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lrtransfer._src.train import checks

# loss_fn(model, x, y) -> scalar; a metric has the same signature.
LossFn = Callable[[nnx.Module, jax.Array, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         labels).mean()


def classification_loss(model: nnx.Module, x: jax.Array,
                        y: jax.Array) -> jax.Array:
  """The default ``loss_fn``: mean cross-entropy of ``model(x)``."""
  return cross_entropy(model(x), y)


def accuracy(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
  """The default metric: ``mean_i [argmax model(x_i) == y_i]``."""
  return jnp.mean(jnp.argmax(model(x), -1) == y).astype(jnp.float32)


def metric_table(metrics: Optional[dict[str, LossFn]]) -> Optional[tuple]:
  """``metrics`` as a hashable ``((name, fn), ...)``, checked.

  Raises:
    ValueError: not a dict of name -> function, or a name that would clash
      with the loss's (``"loss"``) or be empty.
  """
  if metrics is None:
    return None
  if not isinstance(metrics, dict) or not all(
      isinstance(k, str) and callable(v) for k, v in metrics.items()):
    raise ValueError("metrics must be a dict of name -> fn(model, x, y), "
                     f"got {metrics!r}")
  clashes = [k for k in metrics if not k or k == "loss"]
  if clashes:
    raise ValueError(
        f"metrics name {clashes[0]!r} would be logged as "
        f"'val_{clashes[0]}'" + (", the validation loss itself (loss_fn's)"
                                 if clashes[0] == "loss" else "")
        + "; give the metric another name")
  return tuple(metrics.items())


def check_loss_fn(loss_fn: Any) -> None:
  if loss_fn is not None and not callable(loss_fn):
    raise ValueError(f"loss_fn must be a function (model, x, y) -> loss, "
                     f"got {loss_fn!r}")


def metric_fns(loss_fn: Optional[LossFn], metrics: Optional[tuple]
               ) -> tuple:
  """The metrics scored: ``metrics``; by default accuracy with the default
  loss and none with a ``loss_fn`` (accuracy means nothing for most other
  losses)."""
  if metrics is not None:
    return metrics
  return (("accuracy", accuracy),) if loss_fn is None else ()


def scores(model: nnx.Module, x: jax.Array, y: jax.Array,
           loss_fn: Optional[LossFn], metrics: Optional[tuple]
           ) -> dict[str, jax.Array]:
  """``{"loss": ..., "<metric>": ...}`` of ``model`` (already in eval mode)
  on ``(x, y)``, each a float32 scalar; traceable.

  Raises:
    ValueError: the loss or a metric does not return a scalar (at trace
      time, naming it).
  """
  if loss_fn is None and metrics is None:
    logits = model(x)  # one forward pass for both
    return {"loss": cross_entropy(logits, y),
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == y).astype(
                jnp.float32)}
  values = {"loss": (classification_loss if loss_fn is None else loss_fn)(
      model, x, y)}
  for name, fn in metric_fns(loss_fn, metrics):
    values[name] = fn(model, x, y)
  for key, value in values.items():
    if jnp.shape(value) != ():
      what = "loss_fn" if key == "loss" else f"metrics[{key!r}]"
      raise ValueError(
          f"{what} returned shape {jnp.shape(value)}, not a scalar: "
          "average it over the batch (e.g. jnp.mean)")
  return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def evaluate(model: nnx.Module, split: Any, *,
             loss_fn: Optional[LossFn] = None,
             metrics: Optional[dict[str, LossFn]] = None
             ) -> dict[str, float]:
  """Scores ``model`` on ``split`` in eval mode, as :func:`fit` validates.

  The values are those ``fit`` logs after an epoch as ``val_loss`` and
  ``val_<name>`` with the same ``loss_fn`` and ``metrics``, named without
  the ``val_`` prefix. By default (classification, integer labels):

  * ``loss = mean_i -log softmax(model(x_i))[y_i]``
  * ``accuracy = mean_i [argmax model(x_i) == y_i]``

  With a ``loss_fn`` (e.g. a regression's mean squared error) the targets
  may be floats and only ``loss`` and the given ``metrics`` are computed.
  The model is not changed (a copy is switched to eval mode: Dropout off,
  BatchNorm's running statistics).

  Args:
    model: any ``nnx.Module``.
    split: a :class:`lrtransfer.data.Split` or an ``(x, y)`` pair of arrays,
      as :func:`fit` takes.
    loss_fn: ``loss_fn(model, x, y) -> scalar``; default: softmax
      cross-entropy of integer labels in ``[0, classes)``.
    metrics: ``{name: fn(model, x, y) -> scalar}``; default
      ``{"accuracy": ...}`` with the default loss, none with a ``loss_fn``.

  Returns:
    ``{"loss": float, <name>: float, ...}``, e.g. ``{"loss": 0.41,
    "accuracy": 0.9}`` by default.

  Raises:
    ValueError: NaN or infinite inputs; with the default loss, labels that
      are not integers in ``[0, outputs)``; a loss or metric that is not a
      function or does not return a scalar; a metric named ``"loss"``.

  Example::

    result = lrtransfer.train.fit(model, recipe, train, val, loss_fn=mse)
    lrtransfer.train.evaluate(result.model, test, loss_fn=mse)["loss"]
  """
  check_loss_fn(loss_fn)
  table = metric_table(metrics)
  split = checks.as_split(split, "split")
  checks.check_finite_inputs(split, "split")
  model = nnx.clone(model)
  model.eval()
  x, y = jnp.asarray(split.x), jnp.asarray(split.y)
  if loss_fn is None:
    shape = checks.output_shape(model, split.x)
    checks.check_class_labels(split.y, "split", shape)
  return {name: float(value)
          for name, value in scores(model, x, y, loss_fn, table).items()}
