"""Results as models, ``evaluate`` scoring as ``fit`` validates, and ``fit``
and ``fit_many`` taking the same options (one implementation)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lrtransfer
from _models import SmallCNN

CLASSES = 3


def _data(shape, n_train=24, n_val=12, regression=False, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n_train + n_val, *shape)).astype(np.float32)
  flat = x.reshape(len(x), -1)
  if regression:
    y = (2.0 * flat[:, :1] - flat[:, 1:2]).astype(np.float32)
  else:
    y = (flat[:, 0] > 0).astype(np.int32) + (flat[:, 1] > 0.5)
  return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def _leaves(model):
  state = nnx.state(model)
  return [np.asarray(jax.random.key_data(leaf))
          if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
          else np.asarray(leaf) for leaf in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def cnn_sweep():
  """Two BatchNorm + Dropout CNNs in one fit_many, and the same two runs
  through fit."""
  train, val = _data((8, 8, 1))
  recipe = lrtransfer.recipes.Recipe("c", 0.3)  # accuracy goes up and down
  models = [SmallCNN(CLASSES, rngs=nnx.Rngs(s)) for s in (0, 1)]
  options = dict(epochs=5, batch_size=8, monitor="val_accuracy",
                 restore_best=True, test=val)
  sweep = lrtransfer.train.fit_many(models, recipe, train, val, seeds=[3, 4],
                                    learning_rates=[0.3, 0.1], **options)
  singles = [lrtransfer.train.fit(m, recipe, train, val, seed=s,
                                  learning_rate=lr, **options)
             for m, s, lr in zip(models, (3, 4), (0.3, 0.1))]
  return sweep, singles, val


def test_fit_many_offers_each_runs_model_as_fit_returns_it(cnn_sweep):
  sweep, singles, val = cnn_sweep
  assert sweep.num_runs == 2
  for i, single in enumerate(singles):
    model = sweep.model(i)
    assert isinstance(model, SmallCNN)
    # Parameters and the other state (BatchNorm statistics, RNG counts).
    for got, want in zip(_leaves(model), _leaves(single.model)):
      np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # In eval mode, scoring as fit validated it in its last epoch.
    scores = lrtransfer.train.evaluate(model, val)
    np.testing.assert_allclose(scores["loss"],
                               sweep.history["val_loss"][i, -1], rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"], sweep.test_accuracy[i])
  # Negative runs count from the end, as in a list.
  for got, want in zip(_leaves(sweep.model(-1)), _leaves(sweep.model(1))):
    np.testing.assert_array_equal(got, want)


def test_best_model_is_the_best_monitored_evaluation(cnn_sweep):
  sweep, singles, val = cnn_sweep
  for i, single in enumerate(singles):
    epoch = int(sweep.best_epoch[i])
    assert epoch == single.best_epoch >= 1
    best = sweep.best_model(i)
    scores = lrtransfer.train.evaluate(best, val)
    # Its BatchNorm statistics are those of the best epoch, not the last.
    np.testing.assert_allclose(
        scores["loss"], sweep.history["val_loss"][i, epoch - 1], rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"],
                               sweep.best_test_accuracy[i])
    np.testing.assert_allclose(single.best_test_accuracy,
                               sweep.best_test_accuracy[i], atol=1e-6)


def test_returned_models_keep_the_depth_levels_of_the_input():
  train, val = _data((8, 8, 1))
  model = SmallCNN(CLASSES, rngs=nnx.Rngs(0))
  sweep = lrtransfer.train.fit_many([model], lrtransfer.recipes.Recipe(
      "c", 0.05), train, val, seeds=[0], epochs=1, batch_size=8)
  assert (lrtransfer.layer_depths(sweep.model(0))
          == lrtransfer.layer_depths(model))


def test_model_index_and_missing_best_are_refused():
  train, val = _data((4,))
  model = nnx.Linear(4, CLASSES, rngs=nnx.Rngs(0))
  sweep = lrtransfer.train.fit_many([model, model], lrtransfer.recipes.Recipe(
      "c", 0.05), train, val, seeds=[0, 1], epochs=1, batch_size=8)
  with pytest.raises(IndexError, match=r"run 2 out of range: this sweep has "
                     r"2 runs \(0 to 1\)"):
    sweep.model(2)
  with pytest.raises(IndexError, match="run 0.5"):
    sweep.model(0.5)
  with pytest.raises(ValueError, match=r"restore_best=True"):
    sweep.best_model(0)


def test_evaluate_scores_a_regression_with_its_own_loss_and_metrics():
  train, val = _data((4,), regression=True)
  mse = lambda m, x, y: jnp.mean((m(x) - y) ** 2)
  mae = lambda m, x, y: jnp.mean(jnp.abs(m(x) - y))
  model = lrtransfer.models.MLP(4, (8,), 1, rngs=nnx.Rngs(0))
  result = lrtransfer.train.fit(model, lrtransfer.recipes.Recipe("c", 0.05),
                                train, val, epochs=3, batch_size=8,
                                loss_fn=mse, metrics={"mae": mae})
  scores = lrtransfer.train.evaluate(result.model, val, loss_fn=mse,
                                     metrics={"mae": mae})
  assert set(scores) == {"loss", "mae"}
  assert all(isinstance(v, float) for v in scores.values())
  np.testing.assert_allclose(scores["loss"], result.history["val_loss"][-1],
                             rtol=1e-5)
  np.testing.assert_allclose(scores["mae"], result.history["val_mae"][-1],
                             rtol=1e-5)
  # A loss_fn alone: the loss only (accuracy means nothing here).
  assert set(lrtransfer.train.evaluate(result.model, val, loss_fn=mse)) == {
      "loss"}
  # Without loss_fn, float targets are refused with the fix.
  with pytest.raises(ValueError, match=r"split.y must be integer class "
                     r"labels.*; for other targets pass loss_fn="):
    lrtransfer.train.evaluate(result.model, val)


def test_evaluate_defaults_are_cross_entropy_and_accuracy():
  train, val = _data((4,))
  model = nnx.Linear(4, CLASSES, rngs=nnx.Rngs(0))
  x, y = val
  logits = np.asarray(model(jnp.asarray(x)), np.float64)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  scores = lrtransfer.train.evaluate(model, val)
  np.testing.assert_allclose(
      scores["loss"], -log_softmax[np.arange(len(y)), y].mean(), rtol=1e-5)
  assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == y))
  # A user metric with the default loss adds to the loss, replacing
  # accuracy, as in fit.
  top2 = lambda m, x, y: jnp.mean(
      (jnp.argsort(m(x), -1)[:, -2:] == y[:, None]).any(-1))
  scores = lrtransfer.train.evaluate(model, val, metrics={"top2": top2})
  assert set(scores) == {"loss", "top2"} and 0.0 <= scores["top2"] <= 1.0
  with pytest.raises(ValueError, match="metrics name 'loss'"):
    lrtransfer.train.evaluate(model, val, metrics={"loss": top2})
  with pytest.raises(ValueError, match=r"metrics\['rows'\] returned shape "
                     r"\(12,\), not a scalar"):
    lrtransfer.train.evaluate(model, val,
                              metrics={"rows": lambda m, x, y: m(x)[:, 0]})
  with pytest.raises(ValueError, match="loss_fn must be a function"):
    lrtransfer.train.evaluate(model, val, loss_fn=3)


def test_fit_takes_test_on_chunk_and_learning_rate_as_fit_many():
  train, val = _data((4,))
  model = nnx.Linear(4, CLASSES, rngs=nnx.Rngs(0))
  recipe = lrtransfer.recipes.Recipe("c", 0.05)
  chunks = []
  result = lrtransfer.train.fit(model, recipe, train, val, epochs=5,
                                batch_size=8, test=val, learning_rate=0.2,
                                checkpoint_every=2, on_chunk=chunks.append)
  assert chunks == [2, 2, 1]
  np.testing.assert_allclose(result.test_accuracy,
                             lrtransfer.train.evaluate(result.model,
                                                       val)["accuracy"])
  # learning_rate= is the recipe's base rate, replaced.
  same = lrtransfer.train.fit(model, dataclasses.replace(
      recipe, learning_rate=0.2), train, val, epochs=5, batch_size=8)
  np.testing.assert_array_equal(result.history["val_loss"],
                                same.history["val_loss"])
  np.testing.assert_allclose(result.history["group_lr"], 0.2)
  assert result.best_test_accuracy is None
  sweep = lrtransfer.train.fit_many([model], recipe, train, val, seeds=[0],
                                    learning_rates=[0.2], epochs=5,
                                    batch_size=8, test=val)
  np.testing.assert_allclose(sweep.history["val_loss"][0],
                             result.history["val_loss"], rtol=2e-5)
  np.testing.assert_allclose(sweep.test_accuracy[0], result.test_accuracy)


@pytest.mark.parametrize("rate", [0.0, -0.1, float("nan"), "0.1", True])
def test_bad_learning_rates_are_refused_by_name(rate):
  train, val = _data((4,))
  model = nnx.Linear(4, CLASSES, rngs=nnx.Rngs(0))
  recipe = lrtransfer.recipes.Recipe("c", 0.05)
  with pytest.raises(ValueError, match=r"learning_rate must be a finite "
                     r"number > 0"):
    lrtransfer.train.fit(model, recipe, train, val, epochs=1, batch_size=8,
                         learning_rate=rate)
  with pytest.raises(ValueError, match=r"learning_rates\[1\] must be a "
                     r"finite number > 0"):
    lrtransfer.train.fit_many([model, model], recipe, train, val,
                              seeds=[0, 1], learning_rates=[0.1, rate],
                              epochs=1, batch_size=8)


def test_chain_parts_name_every_state_of_the_built_chain():
  from lrtransfer._src import recipes as recipes_lib
  params = {"hidden": {"kernel": jnp.ones((4, 4))},
            "head": {"kernel": jnp.ones((4, 3))}}
  every_part = lrtransfer.recipes.Recipe(
      "all", 0.05, l2sp_alpha=1e-3, unfreeze_every_epochs=1,
      layerwise_factor=0.9, strategy=lambda spe, total: lrtransfer.adjust())
  state_types = {"l2sp": "L2SPState", "gradual_unfreeze": "UnfreezeState",
                 "head_first": "UnfreezeState",
                 "layerwise_scale": "LayerwiseScaleState"}
  for recipe in [*lrtransfer.recipes.default_recipes().values(), every_part]:
    parts = recipes_lib.chain_parts(recipe)
    state = recipes_lib.build_optimizer(
        recipe, steps_per_epoch=2, total_steps=10, source_params=params).init(
            params)
    assert len(state) == len(parts), recipe.name
    index = recipes_lib.base_optimizer_index(recipe)
    assert parts[index] == "optimizer"
    # SGD-momentum's state: (TraceState, EmptyState).
    assert type(state[index][0]).__name__ == "TraceState", recipe.name
    for part, part_state in zip(parts, state):
      if part in state_types:
        assert type(part_state).__name__ == state_types[part], recipe.name
  assert recipes_lib.chain_parts(every_part) == (
      "l2sp", "gradual_unfreeze", "optimizer", "layerwise_scale", "strategy")
