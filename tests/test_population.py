"""fit_auto: members, selection by validation, successive halving, PBT's
exploit/explore, strategies as members, the grid runs reproduced, any
model, checkpoints and resume, devices, memory and argument checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn.datasets import load_digits

import lrtransfer
from _models import SmallCNN
from lrtransfer._src import sizes
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.run_checkpoint import RunCheckpointer
from lrtransfer._src.train import population_engine as engine
from lrtransfer._src.train import population_members as members_lib
from lrtransfer._src.train import population_rules as rules
from lrtransfer._src.train.checks import as_split
from lrtransfer._src.train.runner import build_program, split_model

RATES = (0.01, 0.1)


@pytest.fixture(scope="module")
def digits():
  x, y = load_digits(return_X_y=True)
  x = (x / 16).astype(np.float32)
  y = (y % 5).astype(np.int32)  # a 5-class target
  return (x[:120], y[:120]), (x[120:240], y[120:240]), (x[240:360],
                                                       y[240:360])


@pytest.fixture(scope="module")
def source():
  # Another seed than the members' fresh layers: copies must differ.
  return lrtransfer.models.MLP(64, (16, 8), 10, rngs=nnx.Rngs(42))


@pytest.fixture(scope="module")
def full(digits, source):
  train, val, test = digits
  return lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=RATES,
      schedule="full", epochs=6, batch_size=32, seeds=[0, 1], test=test,
      monitor="val_loss")


def test_members_cover_every_rate_and_depth_scratch_included(full):
  got = {(c.learning_rate, c.transfer_layers, c.keep_head)
         for c in full.candidates}
  # A 2-level body: scratch, all but the last, all (the 10-class source
  # head does not fit the 5-class target, so it is no candidate).
  assert got == {(r, d, False) for r in RATES for d in (0, 1, 2)}
  assert len(full.members) == 2 * 6
  assert full.history["val_loss"].shape == (2, 6, 6)
  assert np.isfinite(full.history["val_loss"]).all()
  assert full.member_epochs == 6 * 6 and full.compute == 6.0


def test_the_source_head_is_a_candidate_when_the_label_sets_match(source):
  same = members_lib.member_model(source, (0, False), 0, num_outputs=10,
                                  target=None)
  other = members_lib.member_model(source, (0, False), 0, num_outputs=5,
                                   target=None)
  assert members_lib.head_fits(source, same)
  assert not members_lib.head_fits(source, other)
  assert members_lib.default_depths(2, True) == (
      (0, False), (1, False), (2, False), (2, True))
  assert members_lib.default_depths(1, False) == ((0, False), (1, False))
  assert members_lib.default_depths(3, True, ("scratch", "all")) == (
      (0, False), (3, False))
  with pytest.raises(ValueError, match="unknown depth choice 'half'"):
    members_lib.default_depths(3, True, ("half",))


def test_the_chosen_member_is_the_best_by_validation(full, digits, source):
  for s in range(2):
    rows = [r for r in full.members if r.seed == full.seeds[s]]
    best_curve = np.nanmin(full.history["val_loss"][s], axis=1)
    np.testing.assert_allclose([r.best_value for r in rows], best_curve,
                               rtol=1e-6)
    assert full.chosen[s] == int(np.argmin(best_curve))
    assert [r.chosen for r in rows].count(True) == 1
    assert full.best_value[s] == pytest.approx(best_curve.min(), rel=1e-6)
  # Test labels never take part: scrambled ones change nothing chosen.
  train, val, test = digits
  scrambled = (test[0], np.roll(test[1], 7))
  again = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=RATES,
      schedule="full", epochs=6, batch_size=32, seeds=[0, 1],
      test=scrambled, monitor="val_loss")
  np.testing.assert_array_equal(again.chosen, full.chosen)
  assert not np.allclose(again.test_accuracy, full.test_accuracy)


def test_the_returned_model_evaluates_to_the_reported_value(full, digits):
  _, val, test = digits
  for s in range(2):
    model = full.model(s)
    loss = lrtransfer.train.evaluate(model, val)["loss"]
    assert loss == pytest.approx(full.best_value[s], rel=1e-4)
    accuracy = lrtransfer.train.evaluate(model, test)["accuracy"]
    assert accuracy == pytest.approx(full.test_accuracy[s], abs=1e-6)
    chosen = full.candidates[full.chosen[s]]
    assert model.num_transferred_levels == chosen.transfer_layers
  with pytest.raises(IndexError, match="seed_index=2"):
    full.model(2)


def _check_halving(result, monitor, higher_is_better):
  """Survivors are the best by best-so-far validation at every rung; no
  training after a stop; the chosen member is the best of all."""
  history = result.history[monitor]
  best = np.nanmax if higher_is_better else np.nanmin
  assert result.decisions, "the population must halve"
  for decision in result.decisions:
    s = result.seeds.index(decision.seed)
    running = sorted(decision.kept + decision.stopped)
    so_far = best(history[s, running, :decision.epoch], axis=1)
    order = np.argsort(-so_far if higher_is_better else so_far,
                       kind="stable")
    ranked = [running[i] for i in order]
    assert sorted(decision.kept) == sorted(ranked[:len(decision.kept)])
    for member in decision.stopped:  # no training after a stop
      assert np.isnan(history[s, member, decision.epoch:]).all()
      row = result.members[s * len(result.candidates) + member]
      assert row.stopped_epoch == decision.epoch
  for s in range(len(result.seeds)):
    overall = best(history[s], axis=1)
    assert result.best_value[s] == pytest.approx(best(overall), rel=1e-6)
    assert np.isfinite(history[s, result.chosen[s]]).all()


def test_halving_spends_at_most_three_runs_and_keeps_the_best(digits,
                                                               source):
  train, val, _ = digits
  result = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=(0.003, 0.03, 0.3),
      schedule="halving", epochs=9, batch_size=32, seeds=[0, 1],
      monitor="val_loss")
  assert result.member_epochs <= 3 * 9
  assert result.member_epochs == sum(
      r.member_epochs for r in result.members if r.seed == 0)
  _check_halving(result, "val_loss", higher_is_better=False)


def test_halving_on_accuracy_keeps_the_highest(digits, source):
  train, val, _ = digits
  result = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=(0.003, 0.3),
      transfer_layers=(0, 2), schedule=rules.Halving(eta=2), epochs=4,
      batch_size=32, seeds=[0, 1], monitor="val_accuracy")
  assert result.mode == "max"
  _check_halving(result, "val_accuracy", higher_is_better=True)
  rows = [r for r in result.members if r.seed == 0]
  np.testing.assert_allclose([r.best_value for r in rows], np.nanmax(
      result.history["val_accuracy"][0], axis=1), rtol=1e-6)


def test_halving_rules():
  plan = rules.halving_rungs(15, 50, 3)
  assert [n for _, n in plan] == [5, 2, 1]
  assert [e for e, _ in plan] == [2, 6, 17]
  assert rules.member_epochs(15, 50, plan) == 15 * 2 + 5 * 4 + 2 * 11 + 33
  # Rungs rounding to one epoch merge; the later count applies.
  assert rules.halving_rungs(12, 4, 3) == ((1, 1),)
  with pytest.raises(ValueError, match="more than budget=3"):
    rules.halving_plan(rules.Halving(rungs=(40, 45)), 12, 50)
  with pytest.raises(ValueError, match="rungs must be < epochs=50"):
    rules.halving_plan(rules.Halving(rungs=(50,)), 12, 50)
  assert list(rules.survivors(np.array([3.0, np.nan, 1.0, 2.0]), 2)) == [
      2, 3]


def test_pbt_copies_the_leaders_state_and_perturbs_its_rate(digits, source):
  train, val, _ = digits
  options = ((0, False), (2, False))
  models = [members_lib.member_model(source, o, 0, num_outputs=5,
                                     target=None) for o in options]
  program = build_program(models[0], lrtransfer.recipes.Recipe("c", 0.1),
                          len(train[1]), 4, 32, restore_best=True)
  states = [[split_model(models[k % 2]) for k in range(4)]]
  pop = engine.Population.start(program, states,
                                np.array([[0.01, 0.02, 0.04, 0.08]]), [0],
                                as_split(train, "train"),
                                as_split(val, "val"))
  # Member 2 is the leader, member 0 far behind.
  latest = jnp.asarray([5.0, 2.0, 1.0, 3.0], jnp.float32)
  pop.carry = pop.carry._replace(last={**pop.carry.last,
                                       "val_loss": latest})
  before = jax.tree.map(np.asarray, pop.carry)
  rule = rules.PBT(fraction=0.25, perturb=(0.5, 2.0))
  copies = engine._exploit(pop, rule, 1)
  (member, leader, rate), = copies[0][~np.isnan(copies[0, :, 0])]
  assert (member, leader) == (0, 2)
  assert rate / 0.04 in (0.5, 2.0) and pop.rates[0, 0] == rate
  assert pop.params_from[0, 0] == 2
  after = jax.tree.map(np.asarray, pop.carry)
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(new[0], old[2])  # params, opt state, ...
    np.testing.assert_array_equal(new[1:], old[1:])  # the others unchanged
  assert float(pop.inputs().learning_rate[0]) == pytest.approx(rate)


def test_pbt_schedule_records_its_copies(digits, source):
  train, val, _ = digits
  result = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=RATES,
      transfer_layers=(0, 2), schedule=rules.PBT(interval=2), epochs=6,
      batch_size=32)
  assert [d.epoch for d in result.decisions] == [2, 4]
  assert all(len(d.copies) == 1 for d in result.decisions)
  assert result.member_epochs == 4 * 6
  member, _, rate = result.decisions[-1].copies[0]
  assert result.members[member].final_learning_rate == pytest.approx(rate)


def test_a_cnn_with_batchnorm_and_dropout(source):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(48, 8, 8, 1)).astype(np.float32)
  y = ((x[:, 0, 0, 0] > 0).astype(np.int32) + (x[:, 1, 1, 0] > 0.5))
  cnn_source = SmallCNN(3, rngs=nnx.Rngs(5))
  result = lrtransfer.train.fit_auto(
      cnn_source, (x[:32], y[:32]), (x[32:], y[32:]),
      target=SmallCNN(3, rngs=nnx.Rngs(1)), learning_rates=RATES,
      transfer_layers=(0, (3, True)), schedule=rules.Halving(eta=2,
                                                            rungs=(1,)),
      epochs=3, batch_size=16)
  assert result.member_epochs == 4 * 1 + 2 * 2
  assert result.monitor == "val_accuracy"
  model = result.model()
  accuracy = lrtransfer.train.evaluate(model, (x[32:], y[32:]))["accuracy"]
  assert accuracy == pytest.approx(result.best_value[0], abs=1e-6)
  assert np.isfinite(np.asarray(model.norm1.mean[...])).all()


def test_a_regression_with_loss_fn(source):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(64, 8)).astype(np.float32)
  y = (x[:, :1] * 2.0).astype(np.float32)
  mse = lambda m, xs, ys: jnp.mean((m(xs) - ys) ** 2)
  reg_source = lrtransfer.models.MLP(8, (8, 8), 1, rngs=nnx.Rngs(3))
  result = lrtransfer.train.fit_auto(
      reg_source, (x[:48], y[:48]), (x[48:], y[48:]), num_outputs=1,
      learning_rates=(0.01, 0.05), schedule="full", epochs=4,
      batch_size=16, loss_fn=mse)
  assert {c.keep_head for c in result.candidates} == {False, True}
  model = result.model()
  assert float(mse(model, x[48:], y[48:])) == pytest.approx(
      result.best_value[0], rel=1e-4)
  assert result.test_accuracy is None


def test_an_absurd_population_is_refused_before_members_are_built(
    digits, source, monkeypatch):
  train, val, _ = digits
  built = []
  original = members_lib.member_model
  monkeypatch.setattr(members_lib, "member_model",
                      lambda *a, **k: built.append(1) or original(*a, **k))
  monkeypatch.setattr(sizes, "device_memory_bytes", lambda: 10**6)
  with pytest.raises(sizes.SizeError, match=r"a population of 600 members "
                     r"x 3 seeds = 1800 runs.*ask for less"):
    lrtransfer.train.fit_auto(
        source, train, val, num_outputs=5,
        learning_rates=tuple(0.001 * (1 + i) for i in range(200)),
        schedule="full", epochs=2, seeds=[0, 1, 2])
  assert len(built) == 1  # the one model the sizes are read from


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rates": ()}, "learning_rates is empty"),
    ({"learning_rates": (0.1, -0.01)}, "learning_rates holds -0.01"),
    ({"learning_rates": (0.1, 0.1)}, "repeats a rate"),
    ({"transfer_layers": (0, -1)}, r"transfer_layers holds -1.*\[0, 2\]"),
    ({"transfer_layers": (0, 3)}, r"transfer_layers holds 3"),
    ({"transfer_layers": ((1, True),)}, "keeping the head needs"),
    ({"schedule": "hyperband"}, "schedule must be one of.*'hyperband'"),
    ({"seeds": []}, "seeds is empty"),
    ({"seeds": [1, 1]}, "repeats a seed"),
    ({"recipe": lrtransfer.recipes.Recipe("l", 0.1, l2sp_alpha=0.01)},
     "uses L2-SP"),
    ({"num_outputs": None}, "pass num_outputs= .* or target="),
    ({"recipe": lrtransfer.recipes.Recipe("s", 0.1, from_source=False)},
     r"from_source=False.*transfer_layers=\(0,\)"),
    ({"resume": True}, "resume=True needs checkpoint_dir"),
])
def test_bad_arguments_name_the_value(digits, source, kwargs, message):
  train, val, _ = digits
  call = {"num_outputs": 5, "epochs": 2, **kwargs}
  with pytest.raises(ValueError, match=message):
    lrtransfer.train.fit_auto(source, train, val, **call)


def test_schedule_configs_refuse_bad_values():
  with pytest.raises(ValueError, match="eta must be an int >= 2, got 1"):
    rules.Halving(eta=1)
  with pytest.raises(ValueError, match=r"rungs must be increasing"):
    rules.Halving(rungs=(5, 3))
  with pytest.raises(ValueError, match=r"fraction must be in \(0, 0.5\]"):
    rules.PBT(fraction=0.8)
  with pytest.raises(ValueError, match="interval must be an int >= 1"):
    rules.PBT(interval=0)


class _Stop(Exception):
  pass


@pytest.mark.parametrize("schedule", ["halving", rules.PBT(interval=1)])
def test_an_interrupted_population_resumes_to_the_same_result(
    digits, source, tmp_path, monkeypatch, schedule):
  train, val, _ = digits
  call = dict(num_outputs=5, learning_rates=(0.003, 0.03, 0.3), epochs=9,
              batch_size=32, seeds=[0, 1], schedule=schedule)
  whole = lrtransfer.train.fit_auto(source, train, val, **call)
  original = RunCheckpointer.save
  saves = []

  def save_then_stop(self, epoch, state):
    original(self, epoch, state)
    saves.append(epoch)
    if len(saves) == 2:  # halving: between the first and second rung
      raise _Stop

  monkeypatch.setattr(RunCheckpointer, "save", save_then_stop)
  with pytest.raises(_Stop):
    lrtransfer.train.fit_auto(source, train, val, checkpoint_dir=tmp_path,
                              **call)
  monkeypatch.setattr(RunCheckpointer, "save", original)
  with pytest.raises(CheckpointError, match="pass resume=True"):
    lrtransfer.train.fit_auto(source, train, val, checkpoint_dir=tmp_path,
                              **call)
  resumed = lrtransfer.train.fit_auto(source, train, val,
                                      checkpoint_dir=tmp_path, resume=True,
                                      **call)
  assert saves == [1, 2]  # saved every epoch (9 < CHECKPOINTS_PER_RUN)
  np.testing.assert_array_equal(resumed.chosen, whole.chosen)
  np.testing.assert_allclose(resumed.history["val_loss"],
                             whole.history["val_loss"], rtol=1e-6)
  assert resumed.decisions == whole.decisions and whole.decisions
  assert resumed.members == whole.members
  with pytest.raises(CheckpointError, match="different run"):
    lrtransfer.train.fit_auto(source, train, val, checkpoint_dir=tmp_path,
                              resume=True, **{**call, "epochs": 10})


_TWO_DEVICES = """
import jax, numpy as np
from flax import nnx
from sklearn.datasets import load_digits
import lrtransfer
assert jax.device_count() == 2
x, y = load_digits(return_X_y=True)
x, y = (x / 16).astype(np.float32), (y % 5).astype(np.int32)
source = lrtransfer.models.MLP(64, (16, 8), 10, rngs=nnx.Rngs(42))
runs = [lrtransfer.train.fit_auto(
    source, (x[:120], y[:120]), (x[120:240], y[120:240]), num_outputs=5,
    learning_rates=(0.01, 0.1), transfer_layers=(0, 2), epochs=4,
    batch_size=32, schedule="halving", devices=devices)
    for devices in (None, jax.devices())]
one, two = runs
assert list(one.chosen) == list(two.chosen), (one.chosen, two.chosen)
assert one.decisions == two.decisions
np.testing.assert_allclose(one.history["val_loss"], two.history["val_loss"],
                           rtol=1e-4, atol=1e-5)
print("OK")
"""


@pytest.mark.slow  # a subprocess with two simulated devices
def test_data_parallel_over_two_devices_matches_one_device():
  import os
  import subprocess
  import sys
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=2").strip())
  done = subprocess.run([sys.executable, "-c", _TWO_DEVICES], env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_strategies_as_a_member_dimension_match_their_own_populations(
    digits, source):
  train, val, _ = digits
  constant = lrtransfer.recipes.Recipe("constant", 0.1)
  adjust = lrtransfer.recipes.default_recipes()["adjust"]
  call = dict(num_outputs=5, learning_rates=RATES, transfer_layers=(0, 2),
              schedule="full", epochs=5, batch_size=32, seeds=[0, 1])
  both = lrtransfer.train.fit_auto(source, train, val,
                                   recipe=[constant, adjust], **call)
  assert [c.strategy for c in both.candidates] == ["constant"] * 4 + [
      "adjust"] * 4
  for block, recipe in ((slice(0, 4), constant), (slice(4, 8), adjust)):
    alone = lrtransfer.train.fit_auto(source, train, val, recipe=recipe,
                                      **call)
    for name in ("val_loss", "scale"):
      np.testing.assert_allclose(both.history[name][:, block],
                                 alone.history[name], rtol=2e-5, atol=1e-6,
                                 err_msg=f"{recipe.name} {name}")
  assert not np.all(both.history["scale"][:, 4:] == 1.0)  # adjust acted
  assert "strategy" in both.table().splitlines()[0]
  assert "adjust" in both.table() and "strategy" not in alone.table()
  with pytest.raises(ValueError, match="differ in momentum"):
    lrtransfer.train.fit_auto(source, train, val, recipe=[
        constant, lrtransfer.recipes.Recipe("m", 0.1, momentum=0.5)], **call)


def test_rates_and_seeds_may_be_arrays():
  from lrtransfer._src.train import population
  assert members_lib.check_learning_rates(np.logspace(-3, -1, 3)) == (
      pytest.approx(0.001), pytest.approx(0.01), pytest.approx(0.1))
  assert population._check_seeds(np.arange(3)) == [0, 1, 2]
  assert population._check_seeds(jnp.arange(2)) == [0, 1]
  with pytest.raises(ValueError, match=r"seeds\[1\] must be an int"):
    population._check_seeds([0, 1.5])


def test_a_full_population_reproduces_the_grid_runs(digits, source):
  # Member (rate, depth) of seed s is fit_many's run of experiment's
  # target model for s at that rate and depth: the grid a user runs.
  train, val, _ = digits
  result = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=(0.05,),
      transfer_layers=(0, 1), schedule="full", epochs=4, batch_size=32,
      seeds=[3, 4])
  recipe = lrtransfer.recipes.Recipe("constant", 0.05)
  for k, depth in enumerate((0, 1)):
    models = lrtransfer.experiment.target_models(
        source, recipe if depth else dataclasses.replace(
            recipe, from_source=False), 5, [3, 4], transfer_layers=depth
        or None)
    grid = lrtransfer.train.fit_many(models, recipe, train, val,
                                     seeds=[3, 4], epochs=4, batch_size=32)
    np.testing.assert_allclose(result.history["val_loss"][:, k],
                               grid.history["val_loss"], rtol=1e-5)


def test_members_are_judged_on_accuracy_by_default_and_on_the_loss_otherwise(
    digits, source):
  train, val, _ = digits
  classify = lrtransfer.train.fit_auto(
      source, train, val, num_outputs=5, learning_rates=(0.03,),
      transfer_layers=(0, 2), schedule="full", epochs=2)
  assert (classify.monitor, classify.mode) == ("val_accuracy", "max")
  best = np.nanmax(classify.history["val_accuracy"][0], axis=1)
  assert classify.chosen[0] == int(np.argmax(best))

  def mse(model, x, y):
    return jnp.mean((model(x)[:, 0] - y) ** 2)
  regress = lrtransfer.train.fit_auto(
      source, (train[0], train[1].astype(np.float32)),
      (val[0], val[1].astype(np.float32)), num_outputs=1,
      learning_rates=(0.01,), transfer_layers=(0, 2), schedule="full",
      epochs=2, loss_fn=mse)
  assert (regress.monitor, regress.mode) == ("val_loss", "min")


def test_a_run_too_short_for_the_default_halving_is_warned_with_the_fix():
  halving = rules.as_schedule("halving")
  message = rules.short_run_warning(halving, 20, 10)
  assert message.startswith("epochs=10 is short for 20 members")
  assert "keeps 2 of 20 after epoch 1" in message
  needed = int(message.split("use epochs >= ")[1].split(",")[0])
  # The epochs named are the first that keep at least 1/eta after a rung.
  assert rules.short_run_warning(halving, 20, needed) is None
  assert rules.short_run_warning(halving, 20, needed - 1) is not None
  assert rules.default_halving_plan(20, needed, halving.eta,
                                    halving.budget)[0][1] >= 10
  assert rules.short_run_warning(halving, 20, 50) is None
  assert rules.short_run_warning(rules.Halving(rungs=(2,)), 20, 10) is None
  assert rules.short_run_warning(rules.as_schedule("full"), 20, 10) is None
