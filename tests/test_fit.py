"""The compiled fit loop, recipes and sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lrtransfer
from _harness import adjust_reference, adjust_with


@pytest.fixture(scope="module")
def task():
  return lrtransfer.data.get_task("digits_label_split", shots_per_class=5)


@pytest.fixture(scope="module")
def source(task):
  return lrtransfer.experiment.pretrain_source(task, hidden=(32, 16), epochs=5)


def _target(source, task, seed=1):
  return lrtransfer.models.target_from_source(source, task.num_target_classes,
                                       rngs=nnx.Rngs(seed))


def test_history_has_one_row_per_epoch_and_learns(task, source):
  result = lrtransfer.train.fit(_target(source, task), lrtransfer.recipes.Recipe("c", 0.05),
                          task.target_train, task.target_val, epochs=12,
                          batch_size=8)
  history = result.history
  assert set(history) == set(lrtransfer.train.EpochLog._fields)
  for name in ("train_loss", "val_loss", "val_accuracy", "scale"):
    assert history[name].shape == (12,)
  assert history["group_lr"].shape == (12, 3)  # 2 hidden levels + head
  assert history["train_loss"][-1] < history["train_loss"][0]
  assert history["val_accuracy"][-1] > 1.5 / task.num_target_classes
  np.testing.assert_allclose(history["scale"], 1.0)
  scores = lrtransfer.train.evaluate(result.model, task.target_val)
  assert set(scores) == {"loss", "accuracy"}
  np.testing.assert_allclose(scores["loss"], history["val_loss"][-1],
                             rtol=1e-5)
  np.testing.assert_allclose(scores["accuracy"], history["val_accuracy"][-1])
  assert result.compile_seconds > 0 and result.seconds > 0


def test_strategy_reacts_once_per_epoch_to_the_validation_loss(task, source):
  kwargs = dict(patience=1, cooldown=0, raise_factor=1.0, lower_factor=0.5,
                improve_factor=0.9, min_scale=0.01, max_scale=1.0)
  recipe = lrtransfer.recipes.Recipe(
      "adjust", 0.05, strategy=lambda spe, total: adjust_with(**kwargs))
  result = lrtransfer.train.fit(_target(source, task), recipe, task.target_train,
                          task.target_val, epochs=15, batch_size=4)
  history = result.history
  # The scale logged after epoch e reacted to the evaluations of epochs
  # 0..e-1 (each fed to all 7 steps of the next epoch), exactly once each.
  assert task.target_train.x.shape[0] // 4 > 1
  expected = np.concatenate(
      [[1.0], adjust_reference(history["val_loss"][:-1],
                               history["train_loss"][:-1], **kwargs)])
  np.testing.assert_allclose(history["scale"], expected, rtol=1e-6)
  np.testing.assert_allclose(history["group_lr"][:, -1],
                             0.05 * history["scale"], rtol=1e-6)


def test_fit_does_not_modify_the_input_model(task, source):
  target = _target(source, task)
  before = jax.tree.map(np.array, nnx.state(target, nnx.Param))
  lrtransfer.train.fit(target, lrtransfer.recipes.Recipe("c", 0.1), task.target_train,
                 task.target_val, epochs=2)
  after = nnx.state(target, nnx.Param)
  jax.tree.map(np.testing.assert_array_equal, before, after)


def test_group_learning_rates_follow_layerwise_and_unfreezing(task, source):
  recipe = lrtransfer.recipes.Recipe("lw", 0.1, layerwise_factor=0.5,
                             unfreeze_every_epochs=2)
  result = lrtransfer.train.fit(_target(source, task), recipe, task.target_train,
                          task.target_val, epochs=6, batch_size=25)
  # 1 step per epoch; level k from the top opens after 2k epochs.
  open_levels = np.minimum(1 + np.arange(1, 7) // 2, 3)
  factors = np.array([0.25, 0.5, 1.0])
  expected = 0.1 * factors * (np.arange(3)[::-1] < open_levels[:, None])
  np.testing.assert_allclose(result.history["group_lr"], expected, rtol=1e-6)


def test_unfreezing_keeps_frozen_layers_identical(task, source):
  target = _target(source, task)
  recipe = lrtransfer.recipes.Recipe("hf", 0.1, head_first_epochs=3)
  result = lrtransfer.train.fit(target, recipe, task.target_train, task.target_val,
                          epochs=2)
  np.testing.assert_array_equal(result.model.hidden[0].kernel[...],
                                source.hidden[0].kernel[...])
  assert not np.array_equal(result.model.head.kernel[...],
                            target.head.kernel[...])


def test_l2sp_recipe_needs_source_params(task, source):
  with pytest.raises(ValueError, match="source_params"):
    lrtransfer.train.fit(_target(source, task),
                   lrtransfer.recipes.Recipe("l2sp", 0.05, l2sp_alpha=0.1),
                   task.target_train, task.target_val, epochs=1)


def test_fit_many_matches_separate_fits(task, source):
  recipe = lrtransfer.recipes.default_recipes(0.05)["dynamic"]
  seeds = [0, 1, 2]
  models = [_target(source, task, seed=10 + s) for s in seeds]
  sweep = lrtransfer.train.fit_many(models, recipe, task.target_train,
                              task.target_val, seeds=seeds,
                              learning_rates=[0.02, 0.05, 0.1], epochs=4,
                              test=task.target_test)
  assert sweep.history["val_loss"].shape == (3, 4)
  assert sweep.test_accuracy.shape == (3,)
  for i, (seed, lr) in enumerate(zip(seeds, [0.02, 0.05, 0.1])):
    single = lrtransfer.train.fit(
        models[i], lrtransfer.recipes.Recipe("d", lr, strategy=recipe.strategy),
        task.target_train, task.target_val, epochs=4, seed=seed)
    np.testing.assert_allclose(sweep.history["val_loss"][i],
                               single.history["val_loss"], rtol=2e-4)
    np.testing.assert_allclose(sweep.history["scale"][i],
                               single.history["scale"], rtol=2e-4)
    np.testing.assert_allclose(
        sweep.test_accuracy[i],
        lrtransfer.train.evaluate(single.model, task.target_test)["accuracy"],
        atol=0.01)


def test_build_optimizer_order_and_errors(task, source):
  params = nnx.state(_target(source, task), nnx.Param)
  recipe = lrtransfer.recipes.Recipe("all", 0.05, l2sp_alpha=0.01,
                             unfreeze_every_epochs=1, layerwise_factor=0.5,
                             strategy=lambda spe, total: lrtransfer.adjust())
  tx = lrtransfer.recipes.build_optimizer(
      recipe, steps_per_epoch=2, total_steps=10,
      source_params=nnx.state(source, nnx.Param))
  state = tx.init(params)
  kinds = [type(s).__name__ for s in state]
  assert kinds[0] == "L2SPState" and kinds[1] == "UnfreezeState"
  assert kinds[-2:] == ["LayerwiseScaleState", "AdjustState"]
  with pytest.raises(ValueError, match="choose one"):
    lrtransfer.recipes.Recipe("x", unfreeze_every_epochs=1, head_first_epochs=1)
  with pytest.raises(ValueError, match="learning_rate"):
    lrtransfer.recipes.Recipe("x", learning_rate=-1.0)
  with pytest.raises(ValueError, match="from_source"):
    lrtransfer.recipes.Recipe("x", l2sp_alpha=0.1, from_source=False)


def test_l2sp_pulls_only_the_transferred_layers(task, source):
  target = lrtransfer.models.target_from_source(source, task.num_target_classes,
                                         transfer_layers=1,
                                         rngs=nnx.Rngs(5))
  params = nnx.as_pure(nnx.state(target, nnx.Param))
  recipe = lrtransfer.recipes.Recipe("l2sp", 1.0, momentum=0.0, l2sp_alpha=0.5,
                             l2sp_beta=0.25)
  tx = lrtransfer.recipes.build_optimizer(
      recipe, steps_per_epoch=1, total_steps=1,
      source_params=nnx.as_pure(nnx.state(source, nnx.Param)),
      transferred=lrtransfer.models.transferred_mask(target))
  moved = jax.tree.map(lambda p: p + 1.0, params)  # w - w_source = 1 where
  zeros = jax.tree.map(jnp.zeros_like, params)     # the layer was copied
  updates, _ = tx.update(zeros, tx.init(moved), moved)
  np.testing.assert_allclose(updates["hidden"][0]["kernel"], -0.5, rtol=1e-6)
  # The second hidden layer was not copied (same shape as the source's):
  # plain decay toward zero, not a pull toward the unrelated source weights.
  np.testing.assert_allclose(updates["hidden"][1]["kernel"],
                             -0.25 * moved["hidden"][1]["kernel"], rtol=1e-6)
  np.testing.assert_allclose(updates["head"]["kernel"],
                             -0.25 * moved["head"]["kernel"], rtol=1e-6)


def test_recipe_takes_any_base_optimizer_and_eval_params(task, source):
  target = _target(source, task)
  adamw = lrtransfer.recipes.Recipe(
      "adamw", 1e-3, optimizer=lambda lr: optax.adamw(lr))
  result = lrtransfer.train.fit(target, adamw, task.target_train,
                                task.target_val, epochs=4, batch_size=8)
  assert result.history["train_loss"][-1] < result.history["train_loss"][0]
  free = lrtransfer.recipes.Recipe(
      "sf", 0.5, optimizer=optax.contrib.schedule_free_sgd,
      eval_params=optax.contrib.schedule_free_eval_params)
  result = lrtransfer.train.fit(target, free, task.target_train,
                                task.target_val, epochs=3, batch_size=8)
  # The returned model holds the evaluation (averaged) parameters: its
  # validation loss is the last one logged, computed at those parameters.
  loss = lrtransfer.train.evaluate(result.model, task.target_val)["loss"]
  np.testing.assert_allclose(loss, result.history["val_loss"][-1], rtol=1e-5)
  trained = jax.tree.leaves(result.carry.params)
  returned = jax.tree.leaves(nnx.state(result.model, nnx.Param))
  assert any(not np.allclose(a, b) for a, b in zip(trained, returned))
  with pytest.raises(ValueError, match="optimizer"):
    lrtransfer.recipes.Recipe("x", optimizer=optax.sgd(0.1))
