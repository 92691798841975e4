"""Mistakes users make with their own data and options stop before training.

Unchecked, out-of-range labels run to the end with NaN losses (1-based) or
a silently wrong class (negative, wrapped by the gather), float or one-hot
labels crash deep inside optax, NaN inputs give NaN runs, an L2-SP source
of another width pulls nothing, an accuracy fed by hand is judged as a
loss, a 0-based epoch as the count drops the first evaluation, and resuming
with another ``restore_best`` fails with orbax's text. Each case here fails
with a message that names the problem.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lrtransfer
from lrtransfer import recipes, train
from lrtransfer._src import checkpoint
from lrtransfer.experiment import CompareConfig

RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 48).astype(np.int32)
Y[0], Y[1] = 0, 2  # every class present, the largest at row 1


class Net(nnx.Module):
  def __init__(self, width: int, rngs: nnx.Rngs):
    self.body = nnx.Linear(6, width, rngs=rngs)
    self.head = nnx.Linear(width, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.body(x)))


def _fit(train_split, val_split=(X, Y), **kwargs):
  return train.fit(Net(8, nnx.Rngs(0)), recipes.recommended_recipe(),
                   train_split, val_split, epochs=1, batch_size=16, **kwargs)


@pytest.mark.parametrize("labels, message", [
    (Y + 1, r"train.y holds label 3 \(row 1\) but the model has 3 outputs"),
    (Y - 1, r"train.y holds label -1 \(row 0\)"),
    (Y.astype(np.float32), r"integer class labels of shape \[n\].*float32"),
    (Y[:, None], r"\(a column \[n, 1\]: pass y\.ravel\(\)\)"),
    (np.eye(3, dtype=np.float32)[Y], r"one-hot rows: pass y.argmax\(-1\)"),
])
def test_fit_refuses_labels_the_default_loss_cannot_read(labels, message):
  with pytest.raises(ValueError, match=message):
    _fit((X, labels))


def test_fit_names_the_split_with_bad_labels():
  with pytest.raises(ValueError, match=r"^val.y holds label 3"):
    _fit((X, Y), (X, Y + 1))


def test_fit_refuses_nan_or_infinite_inputs():
  bad = X.copy()
  bad[5, 2], bad[7, 0] = np.nan, np.inf
  with pytest.raises(ValueError, match=r"train.x holds 2 NaN or infinite "
                     r"values, the first in row 5"):
    _fit((bad, Y))


def test_fit_many_checks_the_test_split_too():
  models = [Net(8, nnx.Rngs(s)) for s in (0, 1)]
  with pytest.raises(ValueError, match=r"^test.y holds label -1"):
    train.fit_many(models, recipes.recommended_recipe(), (X, Y), (X, Y),
                   seeds=[0, 1], epochs=1, test=(X, Y - 1))


def test_a_loss_fn_takes_float_targets_unchecked():
  def mse(model, x, y):
    return jnp.mean((model(x)[:, 0] - y) ** 2)
  targets = RNG.normal(size=48).astype(np.float32)
  result = _fit((X, targets), (X, targets), loss_fn=mse)
  assert np.isfinite(result.history["val_loss"]).all()


def test_evaluate_takes_pairs_like_fit_and_checks_labels():
  model = Net(8, nnx.Rngs(0))
  as_pair = train.evaluate(model, (X, Y))
  as_split = train.evaluate(model, lrtransfer.data.Split(X, Y))
  assert as_pair == pytest.approx(as_split)
  assert set(as_pair) == {"loss", "accuracy"}
  with pytest.raises(ValueError, match=r"split.y holds label 3"):
    train.evaluate(model, (X, Y + 1))
  with pytest.raises(ValueError, match=r"float32 \(48,\) \(whole numbers "
                     r"stored as floats: pass y\.astype\(np\.int32\)\); "
                     r"for other targets pass loss_fn=$"):
    train.evaluate(model, (X, Y.astype(np.float32)))


def test_resume_needs_a_checkpoint_folder():
  with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
    _fit((X, Y), resume=True)


def test_checkpoint_every_without_a_folder_warns_that_nothing_is_saved():
  with pytest.warns(UserWarning, match="without checkpoint_dir: nothing is "
                    "saved"):
    _fit((X, Y), checkpoint_every=1)


def test_fit_many_with_progress_chunks_does_not_warn():
  models = [Net(8, nnx.Rngs(0))]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    train.fit_many(models, recipes.recommended_recipe(), (X, Y), (X, Y),
                   seeds=[0], epochs=2, checkpoint_every=1,
                   on_chunk=lambda epochs: None)


def test_the_source_model_itself_is_refused_as_source_params():
  source = Net(8, nnx.Rngs(1))
  recipe = recipes.Recipe("l2sp", 0.03, l2sp_alpha=1e-3)
  with pytest.raises(ValueError, match=r"nnx.state\(source_model, "
                     r"flax.nnx.Param\), not the model itself \(Net\)"):
    train.fit(Net(8, nnx.Rngs(0)), recipe, (X, Y), (X, Y), epochs=1,
              source_params=source)


def test_resuming_with_another_restore_best_names_the_difference(tmp_path):
  _fit((X, Y), checkpoint_dir=tmp_path, checkpoint_every=1)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"restore_best: checkpoint has False, this run "
                     r"True"):
    _fit((X, Y), checkpoint_dir=tmp_path, checkpoint_every=1, resume=True,
         restore_best=True)


def test_l2sp_refuses_a_source_that_matches_no_leaf_in_shape():
  params = nnx.state(Net(8, nnx.Rngs(0)), nnx.Param)
  other_width = nnx.state(Net(16, nnx.Rngs(1)), nnx.Param)
  with pytest.raises(ValueError, match=r"does not match params in shape "
                     r"anywhere outside the head, e.g. at path \('body', "
                     r"'bias'\): source \(16,\) != params \(8,\)"):
    lrtransfer.l2sp(other_width, alpha=1.0).init(params)
  # The same width is pulled; the check does not fire.
  state = lrtransfer.l2sp(nnx.state(Net(8, nnx.Rngs(1)), nnx.Param),
                          alpha=1.0).init(params)
  assert np.shape(state.source["body"]["kernel"]) == (6, 8)


def test_a_resized_layer_beside_matching_ones_is_still_new():
  class Deep(nnx.Module):
    def __init__(self, width, rngs):
      self.a = nnx.Linear(6, 8, rngs=rngs)
      self.b = nnx.Linear(8, width, rngs=rngs)
      self.head = nnx.Linear(width, 3, rngs=rngs)

    def __call__(self, x):
      return self.head(self.b(self.a(x)))
  params = nnx.state(Deep(4, nnx.Rngs(0)), nnx.Param)
  source = nnx.state(Deep(5, nnx.Rngs(1)), nnx.Param)
  state = lrtransfer.l2sp(source, alpha=1.0).init(params)
  assert np.shape(state.source["a"]["kernel"]) == (6, 8)  # pulled
  assert np.shape(state.source["b"]["kernel"]) != (8, 4)  # resized: new


@pytest.mark.parametrize("name, mode", [
    ("val_accuracy", "max"), ("top5_acc", "max"), ("Val_Acc", "max"),
    ("val_loss", "min"), ("value", "min")])
def test_measurement_mode_auto_follows_the_name(name, mode):
  assert lrtransfer.measurement(count=1, **{name: 0.5}).mode == mode
  assert lrtransfer.no_measurement(name).mode == mode
  explicit = "min" if mode == "max" else "max"
  assert lrtransfer.measurement(count=1, mode=explicit,
                                **{name: 0.5}).mode == explicit


def test_reduce_on_plateau_fed_an_accuracy_by_hand_does_not_cut_its_rise():
  tx = lrtransfer.reduce_on_plateau(factor=0.5, patience=1)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  for count, accuracy in enumerate([0.5, 0.6, 0.7, 0.8, 0.9, 0.92], 1):
    _, state = tx.update(params, state, params, metric=lrtransfer.measurement(
        count=count, val_accuracy=accuracy))
  assert float(lrtransfer.current_scale(state)) == 1.0


def test_a_value_with_count_zero_warns_that_it_is_never_judged():
  with pytest.warns(UserWarning, match="count=0 is never judged: counts "
                    "start at 1"):
    lrtransfer.measurement(0.3, 0)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    lrtransfer.no_measurement("val_loss", "train_loss", monitor="val_loss")
    lrtransfer.measurement(0.3, 1)
    jax.jit(lambda v, c: lrtransfer.measurement(v, c).value)(0.3, 0)


def test_complex_values_are_refused():
  with pytest.raises(ValueError, match="must be a real number"):
    lrtransfer.measurement(1 + 2j, 1)


@pytest.mark.parametrize("recipes_arg, seeds, message", [
    ("dict", 2, r"seeds must be a non-empty sequence of ints.*range\(3\)"),
    ("dict", (0, 0), r"seeds repeat \(\[0, 0\]\)"),
    ("list", (0,), r"recipes must be a dict of name -> .*got list"),
])
def test_compare_names_argument_mistakes(recipes_arg, seeds, message):
  task = lrtransfer.data.get_task("digits_label_split")
  recipe = recipes.Recipe("constant", 0.03)
  chosen = {"constant": recipe} if recipes_arg == "dict" else [recipe]
  with pytest.raises(ValueError, match=message):
    lrtransfer.experiment.compare(task, chosen, CompareConfig(
        seeds=seeds, epochs=1, source_epochs=1))


@pytest.mark.parametrize("field", ["head_first_epochs",
                                   "unfreeze_every_epochs"])
def test_a_schedule_longer_than_the_run_warns(field):
  recipe = recipes.Recipe("late", 0.03, **{field: 3})
  with pytest.warns(UserWarning, match=f"{field}=3 >= epochs=2"):
    train.fit(Net(8, nnx.Rngs(0)), recipe, (X, Y), (X, Y), epochs=2)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    train.fit(Net(8, nnx.Rngs(0)), recipe, (X, Y), (X, Y), epochs=4)


def test_a_csv_with_class_names_says_to_map_them_to_ids(tmp_path):
  path = tmp_path / "named.csv"
  path.write_text("1.0,2.0,cat\n3.0,4.0,dog\n")
  with pytest.raises(lrtransfer.data.DataError,
                     match=r"could not convert string 'cat'.*integer class id "
                     r"in the last column \(map class names to 0, 1"):
    lrtransfer.data.load_split_file(path)


def test_logits_with_more_axes_take_labels_of_the_same_shape():
  # A per-position classifier: logits [n, 3, 5], labels [n, 3] (optax's
  # integer-label cross-entropy works elementwise).
  model = nnx.Linear(4, 5, rngs=nnx.Rngs(0))
  x = RNG.normal(size=(16, 3, 4)).astype(np.float32)
  y = RNG.integers(0, 5, (16, 3)).astype(np.int32)
  scores = train.evaluate(model, (x, y))
  assert np.isfinite(scores["loss"]) and 0.0 <= scores["accuracy"] <= 1.0
  result = train.fit(model, recipes.Recipe("c", 0.03), (x, y), (x, y),
                     epochs=1, batch_size=8)
  assert np.isfinite(result.history["val_loss"]).all()
  with pytest.raises(ValueError, match=r"holds label 5 \(row 2\).* 5 outputs"):
    bad = y.copy()
    bad[2, 1] = 5
    train.fit(model, recipes.Recipe("c", 0.03), (x, bad), (x, y), epochs=1)
  with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
    train.evaluate(model, (x, y[:, 0]))


def test_seeds_as_arrays_are_accepted_by_compare():
  assert CompareConfig(seeds=np.arange(3)).seeds == (0, 1, 2)
  assert CompareConfig(seeds=jnp.arange(2)).seeds == (0, 1)
  assert CompareConfig(seeds=range(2)).seeds == (0, 1)


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, r"epochs must be an int >= 1, got epochs=0"),
    ("batch_size", 2.0, r"batch_size must be an int >= 1"),
    ("source_epochs", True, r"source_epochs must be an int >= 1"),
    ("model", "resnet", r"model must be one of \('mlp', 'cnn'\)"),
])
def test_compare_config_names_the_bad_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    CompareConfig(**{field: value})


def test_compare_takes_only_a_config_object():
  task = lrtransfer.data.get_task("digits_label_split")
  with pytest.raises(ValueError, match=r"config must be a "
                     r"lrtransfer.experiment.CompareConfig.*got dict"):
    lrtransfer.experiment.compare(
        task, {"c": recipes.Recipe("c", 0.03)}, {"epochs": 1})


def test_checkpoints_written_before_the_monitor_keys_still_resume(tmp_path):
  from lrtransfer._src.run_checkpoint import RunCheckpointer
  old = {"model": "MLP", "epochs": 4, "seeds": [0]}
  state = {"w": np.ones(3, np.float32)}
  saver = RunCheckpointer(tmp_path, old)
  saver.save(2, state)
  saver.close()
  new = {**old, "monitor": "val_loss", "mode": "min", "restore_best": False}
  epoch, restored = RunCheckpointer(tmp_path, new).restore(state)
  assert epoch == 2 and np.asarray(restored["w"]).tolist() == [1.0] * 3
  with pytest.raises(checkpoint.CheckpointError, match="epochs"):
    RunCheckpointer(tmp_path, {**new, "epochs": 5}).restore(state)
  # Once recorded, the keys count.
  with pytest.raises(checkpoint.CheckpointError, match="restore_best"):
    other = tmp_path / "new"
    RunCheckpointer(other, new).save(1, state)
    RunCheckpointer(other, {**new, "restore_best": True}).restore(state)


# User metrics: one named "loss" would replace the validation loss the
# strategies read; "auto" would minimise a user's top-2 accuracy; a
# per-example metric would fail with a scan carry-type error naming nothing.
def _top2(model, x, y):
  top = jnp.argsort(model(x), -1)[:, -2:]
  return jnp.mean(jnp.any(top == y[:, None], -1))


def test_a_metric_named_loss_is_refused():
  with pytest.raises(ValueError, match="'val_loss', the validation loss"):
    _fit((X, Y), metrics={"loss": _top2})


def test_auto_mode_warns_when_it_minimises_a_user_metric():
  with pytest.warns(UserWarning, match="mode='auto' minimises "
                    "monitor='val_top2'.*mode='max'"):
    _fit((X, Y), metrics={"top2": _top2}, monitor="val_top2")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _fit((X, Y), metrics={"top2": _top2}, monitor="val_top2", mode="max")
    _fit((X, Y), metrics={"top2_acc": _top2}, monitor="val_top2_acc")


def test_a_metric_that_is_not_a_scalar_is_named():
  per_example = lambda model, x, y: jnp.argmax(model(x), -1) == y
  with pytest.raises(ValueError, match=r"metrics\['hits'\] returned shape "
                     r"\(48,\), not a scalar"):
    _fit((X, Y), metrics={"hits": per_example})


def test_a_batch_larger_than_the_data_warns():
  with pytest.warns(UserWarning, match=r"batch_size=64 > 48 training "
                    r"examples.*batch_size=48"):
    train.fit(Net(8, nnx.Rngs(0)), recipes.recommended_recipe(), (X, Y),
              (X, Y), epochs=1, batch_size=64)


# User mistakes that would otherwise surface as another library's message.
def test_a_strategy_that_is_not_a_factory_is_explained():
  with pytest.raises(ValueError, match=r"strategy must be a factory, called "
                     r"as strategy\(steps_per_epoch, total_steps\)"):
    recipes.Recipe("r", 0.1, strategy=lrtransfer.adjust)
  returns_text = recipes.Recipe("r", 0.1, strategy=lambda spe, t: "adjust")
  with pytest.raises(ValueError, match="it returned str"):
    train.fit(Net(8, nnx.Rngs(0)), returns_text, (X, Y), (X, Y), epochs=1)


@pytest.mark.parametrize("call, message", [
    (lambda: train.fit_many(Net(8, nnx.Rngs(0)), recipes.recommended_recipe(),
                            (X, Y), (X, Y), seeds=[0], epochs=1),
     "fit_many takes a list of models"),
    (lambda: train.fit(Net(8, nnx.Rngs(0)), recipes.recommended_recipe(),
                       (X, Y), (X, Y), epochs=1, seed="0"),
     "seed must be an int, got seed='0'"),
    (lambda: train.fit_many([Net(8, nnx.Rngs(0))],
                            recipes.recommended_recipe(), (X, Y), (X, Y),
                            seeds=[0.5], epochs=1),
     r"seeds\[0\] must be an int"),
    (lambda: lrtransfer.effective_learning_rate(
        lrtransfer.adjust().init({"w": jnp.ones(2)}), "0.1"),
     "base_learning_rate must be a number"),
])
def test_mistakes_are_named(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_a_bare_number_fed_under_jit_is_named_as_such():
  tx = lrtransfer.reduce_on_plateau()
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  with pytest.raises(TypeError, match=r"reduce_on_plateau.*got a bare "
                     r"number or array"):
    jax.jit(lambda s, m: tx.update(params, s, params, metric=m))(state, 0.5)
