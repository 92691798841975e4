"""One suite run over every strategy: jit, scan, dtypes, composition, state."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import lrtransfer
from _harness import strategy_factories

FACTORIES = strategy_factories()
NAMES = sorted(FACTORIES)
# Evaluation values seen by the steps: a plateau, then improvements.
EVAL_VALUES = [1.0, 1.0, 1.0, 1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.5]
STEPS_PER_EVAL = 2


def _params(dtype=jnp.float32):
  return {"w": jnp.arange(6, dtype=dtype).reshape(2, 3) / 10,
          "b": jnp.ones((3,), dtype)}


def _grads(params, t):
  return jax.tree.map(lambda p: jnp.cos(p + t).astype(p.dtype), params)


def _metric(t):
  k = t // STEPS_PER_EVAL
  return lrtransfer.measurement(EVAL_VALUES[k % len(EVAL_VALUES)], k + 1)


def _run(tx, params, steps, update=None, scale=lrtransfer.current_scale):
  update = tx.update if update is None else update
  state = tx.init(params)
  out = []
  for t in range(steps):
    updates, state = update(_grads(params, t), state, params,
                            metric=_metric(t))
    params = optax.apply_updates(params, updates)
    out.append(float(scale(state)))
  return params, state, np.asarray(out)


def _base():
  return optax.sgd(0.1, momentum=0.9)


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_no_jit_agree(name):
  tx = optax.chain(_base(), FACTORIES[name]())
  p_eager, _, s_eager = _run(tx, _params(), 20)
  p_jit, _, s_jit = _run(tx, _params(), 20, update=jax.jit(tx.update))
  np.testing.assert_allclose(s_eager, s_jit, rtol=1e-6)
  chex.assert_trees_all_close(p_eager, p_jit, rtol=1e-5, atol=1e-6)
  assert len(set(np.round(s_jit, 6))) > 1  # the scale really moved


@pytest.mark.parametrize("name", NAMES)
def test_scan_equals_python_loop(name):
  tx = optax.chain(_base(), FACTORIES[name]())
  params = _params()
  p_loop, _, s_loop = _run(tx, params, 20, update=jax.jit(tx.update))
  steps = jnp.arange(20)

  def body(carry, t):
    params, state = carry
    k = t // STEPS_PER_EVAL
    metric = lrtransfer.measurement(jnp.asarray(EVAL_VALUES)[k % 10], k + 1)
    updates, state = tx.update(_grads(params, t), state, params,
                               metric=metric)
    return ((optax.apply_updates(params, updates), state),
            lrtransfer.current_scale(state))

  (p_scan, _), s_scan = jax.jit(
      lambda c: jax.lax.scan(body, c, steps))((params, tx.init(params)))
  np.testing.assert_allclose(s_loop, np.asarray(s_scan), rtol=1e-6)
  chex.assert_trees_all_close(p_loop, p_scan, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_no_recompile_on_later_calls(name):
  tx = optax.chain(_base(), FACTORIES[name]())

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, metric):
    updates, state = tx.update(_grads(params, 0.0), state, params,
                               metric=metric)
    return optax.apply_updates(params, updates), state

  chex.clear_trace_counter()
  params = _params()
  state = tx.init(params)
  for t in range(6):  # new values and counts must not retrace
    params, state = step(params, state, _metric(t))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_param_dtypes_kept_and_bookkeeping_in_float32(name, dtype):
  tx = optax.chain(_base(), FACTORIES[name]())
  params, state, scales = _run(tx, _params(dtype), 12,
                               update=jax.jit(tx.update))
  chex.assert_trees_all_equal_dtypes(params, _params(dtype))
  for strategy_state in lrtransfer.strategy_states(state):
    assert strategy_state.scale.dtype == jnp.float32
    plateau = getattr(strategy_state, "plateau", None)
    if plateau is not None:
      assert plateau.best.dtype == jnp.float32
      assert plateau.last_value.dtype == jnp.float32
  assert np.all(np.isfinite(scales))


def test_bf16_params_do_not_cause_false_plateaus():
  # 1.001, 1.0005, ... are distinct in float32 but equal in bfloat16: if the
  # best were kept in the params' dtype these would all look like plateaus.
  tx = lrtransfer.reduce_on_plateau(factor=0.5, patience=0, threshold=0.0,
                                    threshold_mode="abs")
  params = _params(jnp.bfloat16)
  state = tx.init(params)
  for k, v in enumerate([1.004, 1.003, 1.002, 1.001], start=1):
    _, state = jax.jit(tx.update)(_grads(params, 0), state, params,
                                  metric=lrtransfer.measurement(v, k))
  assert float(lrtransfer.current_scale(state)) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_partition(name):
  params = _params()
  labels = {"w": "strategy", "b": "frozen"}
  tx = optax.partition(
      {"strategy": optax.chain(_base(), FACTORIES[name]()),
       "frozen": optax.set_to_zero()}, labels)
  # The strategy acts on one group of two: its scale is that group's
  # (current_scale refuses: no single scale is every group's rate).
  new_params, state, scales = _run(
      tx, params, 10, update=jax.jit(tx.update),
      scale=lambda s: lrtransfer.group_scales(s)["strategy"])
  with pytest.raises(ValueError, match="group_scales"):
    lrtransfer.current_scale(state)
  chex.assert_trees_all_equal(new_params["b"], params["b"])
  assert not np.allclose(new_params["w"], params["w"])
  _, _, reference = _run(optax.chain(_base(), FACTORIES[name]()), params, 10)
  np.testing.assert_allclose(scales, reference, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_apply_if_finite(name):
  tx = optax.apply_if_finite(optax.chain(_base(), FACTORIES[name]()), 5)
  params = _params()
  state = tx.init(params)
  step = jax.jit(tx.update)
  scales = []
  for t in range(8):
    grads = _grads(params, t)
    if t == 3:  # a NaN gradient: the whole step, strategy included, skipped
      grads = jax.tree.map(lambda g: g * jnp.nan, grads)
    updates, state = step(grads, state, params, metric=_metric(t))
    params = optax.apply_updates(params, updates)
    scales.append(float(lrtransfer.current_scale(state)))
  chex.assert_tree_all_finite(params)
  assert int(state.total_notfinite) == 1
  assert scales[3] == scales[2]  # the skipped step changed no strategy state


@pytest.mark.parametrize("name", NAMES)
def test_composes_with_multisteps(name):
  k = 3
  tx = optax.MultiSteps(optax.chain(_base(), FACTORIES[name]()),
                        every_k_schedule=k)
  params = _params()
  state = tx.init(params)
  step = jax.jit(tx.update)
  outer_scales = []
  for t in range(6 * k):
    # Evaluation number t // k + 1 is fed on each of its k mini-steps.
    metric = lrtransfer.measurement(EVAL_VALUES[t // k], t // k + 1)
    updates, state = step(_grads(params, 0), state, params, metric=metric)
    params = optax.apply_updates(params, updates)
    if (t + 1) % k == 0:
      outer_scales.append(float(lrtransfer.current_scale(state)))
  # Same as the inner transformation updated once per evaluation.
  inner = optax.chain(_base(), FACTORIES[name]())
  inner_state = inner.init(params)
  expected = []
  for e in range(6):
    _, inner_state = inner.update(_grads(params, 0), inner_state, params,
                                  metric=lrtransfer.measurement(
                                      EVAL_VALUES[e], e + 1))
    expected.append(float(lrtransfer.current_scale(inner_state)))
  np.testing.assert_allclose(outer_scales, expected, rtol=1e-6)


class _Tiny(nnx.Module):

  def __init__(self, rngs):
    self.linear = nnx.Linear(3, 2, rngs=rngs)

  def __call__(self, x):
    return self.linear(x)


@pytest.mark.parametrize("name", NAMES)
def test_nnx_optimizer_update_with_metric(name):
  model = _Tiny(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.chain(_base(), FACTORIES[name]()),
                            wrt=nnx.Param)
  x = jnp.ones((4, 3))

  @nnx.jit
  def train_step(model, optimizer, metric):
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    optimizer.update(model, grads, metric=metric)

  scales = []
  for t in range(12):
    train_step(model, optimizer, _metric(t))
    scales.append(float(lrtransfer.current_scale(optimizer)))
  # Same scales as the plain optax chain fed the same measurements.
  _, _, reference = _run(optax.chain(_base(), FACTORIES[name]()), _params(),
                         12)
  np.testing.assert_allclose(scales, reference, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_state_survives_checkpoint_round_trip(name, tmp_path):
  tx = optax.chain(_base(), FACTORIES[name]())
  params, state, _ = _run(tx, _params(), 7)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "state", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "state", target=state)
  checkpointer.close()
  chex.assert_trees_all_equal(restored, state)
  chex.assert_trees_all_equal_structs(restored, state)
  # Continuing from the restored state gives what continuing would have.
  grads = _grads(params, 7)
  a, sa = tx.update(grads, state, params, metric=_metric(7))
  b, sb = tx.update(grads, restored, params, metric=_metric(7))
  chex.assert_trees_all_equal((a, sa), (b, sb))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
  target = jnp.array([1.0, -2.0, 3.0])
  loss = lambda p: 0.5 * jnp.sum((p - target) ** 2)
  steps = 300
  tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                   strategy_factories(steps)[name]())
  params = jnp.zeros(3)
  state = tx.init(params)
  step = jax.jit(lambda p, s, m: tx.update(jax.grad(loss)(p), s, p, metric=m))
  count = 0
  for t in range(steps):
    if t % 5 == 0:  # evaluate every 5 steps
      count += 1
      metric = lrtransfer.measurement(loss(params), count)
    updates, state = step(params, state, metric)
    params = optax.apply_updates(params, updates)
  # A hundredfold drop: bold driver, halving whenever momentum's oscillation
  # makes an evaluation worse than the best, converges the slowest.
  assert float(loss(params)) < 1e-2 * float(loss(jnp.zeros(3)))


@pytest.mark.parametrize("factory,kwargs", [
    (lrtransfer.adjust, dict(raise_factor=1.0, lower_factor=0.5,
                             patience=1, cooldown=0, min_scale=0.01,
                             max_scale=1.0)),
    (lrtransfer.dynamic, dict(total_steps=100, every_steps=2, rate=0.9,
                              patience=1)),
])
def test_works_under_inject_hyperparams(factory, kwargs):
  # optax.inject_hyperparams calls the factory with traced arrays: no
  # Python-side check may touch them, and the results must not change.
  injected = optax.inject_hyperparams(factory)(**kwargs)
  plain = factory(**kwargs)
  params = {"w": jnp.ones(2)}
  s_injected, s_plain = injected.init(params), plain.init(params)
  update = jax.jit(injected.update)
  for count, value in enumerate([1.0, 1.0, 1.0, 1.0, 0.5], start=1):
    metric = lrtransfer.measurement(value, count)
    u_injected, s_injected = update(params, s_injected, params, metric=metric)
    u_plain, s_plain = plain.update(params, s_plain, params, metric=metric)
    chex.assert_trees_all_close(u_injected, u_plain, rtol=1e-6)
  # A hyperparameter changed in the state takes effect at the next plateau.
  s_injected.hyperparams["lower_factor"] = jnp.float32(0.1)
  before = float(lrtransfer.current_scale(s_injected.inner_state))
  for count in range(6, 9):
    _, s_injected = update(params, s_injected, params,
                           metric=lrtransfer.measurement(0.5, count))
  after = float(lrtransfer.current_scale(s_injected.inner_state))
  assert after < before * 0.1 * 1.0001


INJECT_CASES = {
    "reduce_on_plateau": (lrtransfer.reduce_on_plateau, (),
                          dict(factor=0.5, patience=1), ()),
    "bold_driver": (lrtransfer.bold_driver, (), {}, ()),
    "decay": (lrtransfer.decay, (0.9, 10), {}, ()),
    "decay-all-args": (lrtransfer.decay, (0.5, 2),
                       dict(staircase=True, warmup_steps=3, warmup_init=0.1,
                            min_scale=0.2), ()),
    "adjust": (lrtransfer.adjust, (), dict(patience=1, cooldown=0), ()),
    "dynamic": (lrtransfer.dynamic, (20,), dict(patience=1), ()),
    # The rule is a static object; the factors beside it are traced.
    "adjust-brake": (lrtransfer.adjust, (),
                     dict(raise_factor=2.0, rule=lrtransfer.AdjustRule(
                         brake_patience=1, rise_factor=0.5)), ()),
    "dynamic-brake": (lrtransfer.dynamic, (20,),
                      dict(lower_factor=0.5, rule=lrtransfer.DynamicRule(
                          brake_patience=0, rise_factor=0.5)), ()),
    # The schedule must be static (see schedule_scale's docstring).
    "schedule_scale": (lrtransfer.schedule_scale,
                       (optax.cosine_decay_schedule(1.0, 20),), {},
                       ("schedule",)),
}


@pytest.mark.parametrize("case", sorted(INJECT_CASES))
def test_every_strategy_works_under_inject_hyperparams(case):
  # Python-side checks of traced values would raise
  # TracerBoolConversionError. Injected and plain runs must agree.
  factory, args, kwargs, static_args = INJECT_CASES[case]
  injected = optax.inject_hyperparams(factory, static_args=static_args)(
      *args, **kwargs)
  plain = factory(*args, **kwargs)
  params = {"w": jnp.ones(2)}
  s_injected, s_plain = injected.init(params), plain.init(params)
  update = jax.jit(injected.update)
  values = [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8, 0.2, 0.2]
  # Rises, a spike that falls back, a climb: the brake acts on some.
  train = [2.0, 1.5, 3.0, 3.5, 1.2, 1.1, 2.0, 2.5, 1.0, 0.9]
  got, expected = [], []
  for count, (value, train_loss) in enumerate(zip(values, train), start=1):
    metric = lrtransfer.measurement(count=count, monitor="val_loss",
                                    val_loss=value, train_loss=train_loss)
    _, s_injected = update(params, s_injected, params, metric=metric)
    _, s_plain = plain.update(params, s_plain, params, metric=metric)
    got.append(float(lrtransfer.current_scale(s_injected.inner_state)))
    expected.append(float(lrtransfer.current_scale(s_plain)))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert len(set(expected)) > 1, expected  # the case exercises the rule
