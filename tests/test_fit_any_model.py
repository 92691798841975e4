"""fit and fit_many on any NNX model: CNN with BatchNorm and Dropout, a
residual model, a transformer-like stack; user losses, any optimizer,
monitor/restore_best, and compile-once."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from _models import Residual, SmallCNN, Transformer
from lrtransfer._src.train import program as program_lib

N_TRAIN, N_VAL, CLASSES = 24, 12, 3


def _data(shape, seed=0, regression=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N_TRAIN + N_VAL, *shape)).astype(np.float32)
  if regression:
    y = x.reshape(len(x), -1)[:, :1].astype(np.float32) * 2.0
  else:
    # A learnable rule: the class is the sign pattern of a few inputs.
    flat = x.reshape(len(x), -1)
    y = (flat[:, 0] > 0).astype(np.int32) + (flat[:, 1] > 0.5)
  return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


MODELS = {
    "mlp": (lambda: lrtransfer.models.MLP(8, (8, 8), CLASSES,
                                          rngs=nnx.Rngs(0)), (8,)),
    "cnn": (lambda: SmallCNN(CLASSES, rngs=nnx.Rngs(0)), (8, 8, 1)),
    "residual": (lambda: Residual(8, CLASSES, rngs=nnx.Rngs(0)), (8,)),
    "transformer": (lambda: Transformer(4, CLASSES, rngs=nnx.Rngs(0)),
                    (3, 4)),
}


# On every model the recipes whose behaviour depends on the depth levels
# (strategies only scale the rate, the same on every model); the slow tier
# also runs every default recipe on the CNN (BatchNorm + Dropout), one
# compile each.
DEPTH_RECIPES = ("layerwise", "gradual_unfreeze", "head_first", "l2sp")


@pytest.mark.parametrize("name, every_recipe", [
    *((name, False) for name in sorted(MODELS)),
    pytest.param("cnn", True, marks=pytest.mark.slow)])
def test_default_recipes_fit_every_model_without_depth_fn(name, every_recipe):
  build, shape = MODELS[name]
  model = build()
  train, val = _data(shape)
  source = nnx.as_pure(nnx.state(model, nnx.Param))
  recipes = lrtransfer.recipes.default_recipes(0.05)
  assert set(DEPTH_RECIPES) <= set(recipes)
  for recipe in recipes.values():
    if not every_recipe and recipe.name not in DEPTH_RECIPES:
      continue
    result = lrtransfer.train.fit(model, recipe, train, val, epochs=2,
                                  batch_size=8, source_params=source)
    assert np.isfinite(result.history["val_loss"]).all(), recipe.name
    # One rate per depth level: the model's levels, found without depth_fn.
    levels = set(jax.tree.leaves(lrtransfer.layer_depths(model)))
    assert result.history["group_lr"].shape == (2, len(levels))


def test_batchnorm_trains_its_statistics_and_dropout_is_off_in_eval():
  model = SmallCNN(CLASSES, rngs=nnx.Rngs(0))
  train, val = _data((8, 8, 1))
  result = lrtransfer.train.fit(model, lrtransfer.recipes.Recipe("c", 0.05),
                                train, val, epochs=2, batch_size=8)
  assert not np.allclose(result.model.norm1.mean[...], 0.0)
  x = jnp.asarray(val[0])
  # Eval mode: deterministic (no dropout) and the running statistics.
  np.testing.assert_array_equal(result.model(x), result.model(x))
  loss = optax.softmax_cross_entropy_with_integer_labels(
      result.model(x), val[1]).mean()
  np.testing.assert_allclose(loss, result.history["val_loss"][-1], rtol=1e-5)


def test_regression_with_a_user_loss_metrics_and_adamw():
  model = lrtransfer.models.MLP(8, (16,), 1, rngs=nnx.Rngs(0))
  train, val = _data((8,), regression=True)
  mse = lambda m, x, y: jnp.mean((m(x) - y) ** 2)
  mae = lambda m, x, y: jnp.mean(jnp.abs(m(x) - y))
  recipe = lrtransfer.recipes.Recipe("adamw", 0.01, layerwise_factor=0.8,
                                     optimizer=lambda lr: optax.adamw(lr))
  result = lrtransfer.train.fit(model, recipe, train, val, epochs=15,
                                batch_size=8, loss_fn=mse,
                                metrics={"mae": mae}, monitor="val_mae")
  history = result.history
  assert set(history) == {"train_loss", "val_loss", "val_mae", "scale",
                          "group_lr"}
  assert history["val_loss"][-1] < 0.5 * history["val_loss"][0]
  with pytest.raises(ValueError, match="monitor='val_accuracy'"):
    lrtransfer.train.fit(model, recipe, train, val, epochs=1, loss_fn=mse,
                         monitor="val_accuracy")
  # test= is scored by accuracy: float regression targets are refused
  # (they scored 0.0 silently).
  with pytest.raises(ValueError, match=r"^test.y must be integer class "
                     "labels.*because test= is scored by classification "
                     "accuracy"):
    lrtransfer.train.fit_many([model], recipe, train, val, seeds=[0],
                              epochs=1, loss_fn=mse, test=val)


def test_restore_best_returns_the_best_monitored_evaluation():
  model = lrtransfer.models.MLP(8, (8,), CLASSES, rngs=nnx.Rngs(0))
  train, val = _data((8,))
  # A rate high enough that the validation accuracy goes up and down.
  recipe = lrtransfer.recipes.Recipe("c", 0.5)
  result = lrtransfer.train.fit(model, recipe, train, val, epochs=12,
                                batch_size=8, monitor="val_accuracy",
                                restore_best=True)
  accuracy = result.history["val_accuracy"]
  assert result.best_epoch == int(np.argmax(accuracy)) + 1  # mode auto: max
  x, y = jnp.asarray(val[0]), jnp.asarray(val[1])
  best = jnp.mean(jnp.argmax(result.best_model(x), -1) == y)
  np.testing.assert_allclose(best, accuracy.max())
  sweep = lrtransfer.train.fit_many(
      [model, model], recipe, train, val, seeds=[0, 1], epochs=12,
      batch_size=8, monitor="val_accuracy", restore_best=True, test=val)
  np.testing.assert_array_equal(
      sweep.best_epoch, np.argmax(sweep.history["val_accuracy"], 1) + 1)
  np.testing.assert_allclose(sweep.best_test_accuracy,
                             sweep.history["val_accuracy"].max(1))
  # The other state at the best evaluation comes back too (BatchNorm
  # statistics to rebuild the best model).
  assert (jax.tree.structure(sweep.best_rest)
          == jax.tree.structure(sweep.rest))


def test_strategies_react_to_the_monitored_value():
  model = lrtransfer.models.MLP(8, (8,), CLASSES, rngs=nnx.Rngs(0))
  train, val = _data((8,))
  recipe = lrtransfer.recipes.Recipe(
      "rop", 0.05, strategy=lambda spe, total: lrtransfer.reduce_on_plateau(
          factor=0.5, patience=0, cooldown=0))
  # A monitored value that never improves after the first evaluation: the
  # training loss of a model whose rate is ~0 cannot move.
  frozen = lrtransfer.recipes.Recipe("rop", 1e-9, strategy=recipe.strategy)
  result = lrtransfer.train.fit(model, frozen, train, val, epochs=4,
                                batch_size=8, monitor="train_loss")
  # Evaluation 1 sets the best; 2 and 3 do not improve: two halvings by the
  # end of epoch 4 (the scale after epoch e reacted to evaluations < e).
  np.testing.assert_allclose(result.history["scale"], [1, 1, 0.5, 0.25])


def test_a_second_fit_compiles_nothing():
  train, val = _data((8, 8, 1))
  recipe = lrtransfer.recipes.Recipe("lw", 0.05, layerwise_factor=0.8,
                                     unfreeze_every_epochs=1)
  first = lrtransfer.train.fit(SmallCNN(CLASSES, rngs=nnx.Rngs(0)), recipe,
                               train, val, epochs=2, batch_size=8)
  traces = dict(program_lib.TRACES)
  # Another model of the same structure, other data values and seed.
  other_train, other_val = _data((8, 8, 1), seed=1)
  second = lrtransfer.train.fit(SmallCNN(CLASSES, rngs=nnx.Rngs(5)), recipe,
                                other_train, other_val, epochs=2,
                                batch_size=8, seed=3)
  assert dict(program_lib.TRACES) == traces
  assert first.compile_seconds > 0 and second.compile_seconds == 0.0
  assert not np.allclose(first.history["val_loss"], second.history["val_loss"])
  models = [SmallCNN(CLASSES, rngs=nnx.Rngs(i)) for i in range(2)]
  lrtransfer.train.fit_many(models, recipe, train, val, seeds=[0, 1],
                            epochs=2, batch_size=8)
  traces = dict(program_lib.TRACES)
  again = lrtransfer.train.fit_many(models, recipe, other_train, other_val,
                                    seeds=[2, 3], learning_rates=[0.1, 0.2],
                                    epochs=2, batch_size=8)
  assert dict(program_lib.TRACES) == traces and again.compile_seconds == 0.0


def test_fit_many_best_rest_rebuilds_the_best_batchnorm_model():
  """fit_many returns the BatchNorm statistics of the best evaluation with
  its parameters, so the best model can be rebuilt (the final statistics
  with the best parameters would be another model); and a scalar JAX
  integer is a seed."""
  model = SmallCNN(CLASSES, rngs=nnx.Rngs(0))
  train, val = _data((8, 8, 1))
  recipe = lrtransfer.recipes.Recipe("c", 0.5)  # accuracy goes up and down
  sweep = lrtransfer.train.fit_many(
      [model, model], recipe, train, val, seeds=[jnp.int32(0), 1], epochs=6,
      batch_size=8, monitor="val_accuracy", restore_best=True, test=val)
  graph = nnx.split(model, nnx.Param, ...)[0]
  x, y = jnp.asarray(val[0]), jnp.asarray(val[1])
  for run in range(2):
    pick = lambda tree: jax.tree.map(lambda leaf: leaf[run], tree)
    best = nnx.merge(graph, pick(sweep.best_params), pick(sweep.best_rest))
    best.eval()
    logits = best(x)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y))
    np.testing.assert_allclose(accuracy, sweep.best_test_accuracy[run])
    # The loss logged at the best epoch, which the final statistics miss.
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    epoch = int(sweep.best_epoch[run])
    np.testing.assert_allclose(
        loss, sweep.history["val_loss"][run][epoch - 1], rtol=1e-5)
