"""Tests of gradual_unfreeze, head_first and unfrozen_levels."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from _harness import tiny_mlp
from lrtransfer._src.transfer import (
  UnfreezeState,
  gradual_unfreeze,
  head_first,
  unfrozen_levels,
)

NUM_HIDDEN = 3  # Depths 0, 1, 2 and the head at 3: four levels.


def dict_params(num_hidden=NUM_HIDDEN, seed=0):
  rng = np.random.default_rng(seed)
  layer = lambda n_in, n_out: {
      "kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32),
  }
  return {"hidden": {i: layer(3, 3) for i in range(num_hidden)},
          "head": layer(3, 2)}


def open_mask(updates):
  """Per depth, whether the update went through (all leaves nonzero)."""
  layers = [updates["hidden"][i] for i in range(NUM_HIDDEN)]
  return [bool(all(np.all(np.asarray(leaf) != 0)
                   for leaf in jax.tree.leaves(layer)))
          for layer in layers + [updates["head"]]]


def reference_open(step, top, every_steps, start_open):
  """NumPy reference: which depths 0..top train at `step`."""
  num_open = min(start_open + step // every_steps, top + 1)
  return [top - depth < num_open for depth in range(top + 1)]


def run_masks(tx, num_steps, jit):
  params = dict_params()
  grads = dict_params(seed=1)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  masks, num_open = [], [int(state.num_open)]
  for _ in range(num_steps):
    updates, state = update(grads, state, params)
    masks.append(open_mask(updates))
    num_open.append(int(state.num_open))
    # Open leaves pass the update through unchanged.
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
      assert np.all((np.asarray(got) == 0) | (np.asarray(got) == want))
  return masks, num_open, state


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("every_steps,start_open", [(2, 1), (3, 2), (1, 1)])
def test_mask_sequence_matches_reference(every_steps, start_open, jit):
  masks, num_open, state = run_masks(
      gradual_unfreeze(every_steps, start_open=start_open), 10, jit)
  top = NUM_HIDDEN
  assert masks == [reference_open(t, top, every_steps, start_open)
                   for t in range(10)]
  assert num_open == [sum(reference_open(t, top, every_steps, start_open))
                      for t in range(11)]
  assert state.count.dtype == jnp.int32 and int(state.count) == 10


@pytest.mark.parametrize("jit", [False, True])
def test_head_first_sequence(jit):
  masks, num_open, _ = run_masks(head_first(probe_steps=3), 6, jit)
  head_only = [False] * NUM_HIDDEN + [True]
  assert masks == [head_only] * 3 + [[True] * (NUM_HIDDEN + 1)] * 3
  assert num_open == [1, 1, 1, 4, 4, 4, 4]
  masks, _, _ = run_masks(head_first(probe_steps=0), 2, jit)
  assert masks == [[True] * (NUM_HIDDEN + 1)] * 2


def test_head_first_reuses_the_masking_code():
  assert (head_first(3).update.__code__
          is gradual_unfreeze(3).update.__code__)


def test_count_saturates():
  params = dict_params()
  tx = gradual_unfreeze(every_steps=1)
  state = UnfreezeState(count=jnp.array(np.iinfo(np.int32).max - 1, jnp.int32),
                        num_open=jnp.array(1, jnp.int32),
                        num_levels=jnp.array(NUM_HIDDEN + 1, jnp.int32))
  for _ in range(3):
    updates, state = jax.jit(tx.update)(params, state)
  assert int(state.count) == np.iinfo(np.int32).max
  assert int(state.num_open) == NUM_HIDDEN + 1
  assert open_mask(updates) == [True] * (NUM_HIDDEN + 1)


def test_depths_as_a_function():
  params = {"encoder": [{"w": jnp.ones(2)}, {"w": jnp.ones(2)}],
            "classifier": {"w": jnp.ones(2)}}
  depths = lambda path: 2 if path[0] == "classifier" else path[1]
  tx = gradual_unfreeze(every_steps=1, depths=depths)
  state = tx.init(params)
  updates, state = tx.update(params, state)
  assert [float(u[0]) for u in jax.tree.leaves(updates)] == [1.0, 0.0, 0.0]
  updates, state = tx.update(params, state)
  assert [float(u[0]) for u in jax.tree.leaves(updates)] == [1.0, 0.0, 1.0]


def test_inside_scan_matches_python_loop():
  params = dict_params()
  tx = optax.chain(gradual_unfreeze(2), optax.sgd(0.1, momentum=0.9))
  grads_seq = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[dict_params(seed=s) for s in range(7)])

  def body(carry, grads):
    params, state = carry
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (scanned, scan_state), _ = jax.lax.scan(
      body, (params, tx.init(params)), grads_seq)
  looped, state = params, tx.init(params)
  for s in range(7):
    (looped, state), _ = body((looped, state),
                              jax.tree.map(lambda x: x[s], grads_seq))
  chex.assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-6)
  assert int(unfrozen_levels(scan_state)) == 4


def test_before_sgd_momentum_frozen_layers_stay_exact_and_open_cleanly():
  """The documented order: gradual_unfreeze, then sgd-momentum."""
  lr, every_steps = 0.1, 3
  x = jax.random.normal(jax.random.key(0), (16, 3))
  y = jax.random.normal(jax.random.key(1), (16, 2))
  model = tiny_mlp([3, 4, 4], 2, nnx.Rngs(0))  # Depths 0, 1; head 2.
  loss = lambda model: jnp.mean((model(x) - y) ** 2)
  tx = optax.chain(gradual_unfreeze(every_steps),
                   optax.sgd(lr, momentum=0.9))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  initial = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  opens_at = {"head": 0, 1: every_steps, 0: 2 * every_steps}

  @nnx.jit
  def train_step(model, optimizer):
    grads = nnx.grad(loss)(model)
    updates = optimizer.update(model, grads)
    return grads, updates

  for step in range(3 * every_steps):
    assert unfrozen_levels(optimizer.opt_state) == min(
        1 + step // every_steps, 3)
    grads, updates = train_step(model, optimizer)
    grads = nnx.to_pure_dict(grads)
    updates = nnx.to_pure_dict(nnx.State(updates))
    current = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for key, open_step in opens_at.items():
      pick = (lambda t, key=key: t["head"] if key == "head"
              else t["hidden"][key])
      if step < open_step:  # Frozen: not a single bit moved.
        chex.assert_trees_all_equal(pick(current), pick(initial))
      elif step == open_step:  # First update: plain SGD from zero momentum.
        chex.assert_trees_all_close(
            pick(updates), jax.tree.map(lambda g: -lr * g, pick(grads)),
            rtol=1e-6)


def test_after_sgd_momentum_releases_stale_momentum():
  """Why the order matters: after the optimizer, frozen layers build up
  momentum that the first open step releases at once."""
  params = dict_params(num_hidden=1)
  grads = jax.tree.map(jnp.ones_like, params)
  lr = 0.1
  tx = optax.chain(optax.sgd(lr, momentum=0.9), gradual_unfreeze(3))
  state = tx.init(params)
  for _ in range(4):
    updates, state = tx.update(grads, state, params)
  # Step 3 opens hidden 0 with a 4-step momentum 1 + .9 + .81 + .729.
  np.testing.assert_allclose(updates["hidden"][0]["bias"],
                             -lr * 3.439, rtol=1e-5)


def test_unfrozen_levels_errors():
  with pytest.raises(ValueError, match="found 0"):
    unfrozen_levels(optax.sgd(0.1).init(dict_params()))
  tx = optax.chain(gradual_unfreeze(2), head_first(2))
  with pytest.raises(ValueError, match="found 2"):
    unfrozen_levels(tx.init(dict_params()))


@pytest.mark.parametrize("kwargs,name", [
    ({"every_steps": 0}, "every_steps"),
    ({"every_steps": 1.5}, "every_steps"),
    ({"every_steps": True}, "every_steps"),
    ({"every_steps": 2, "start_open": 0}, "start_open"),
])
def test_gradual_unfreeze_bad_args(kwargs, name):
  with pytest.raises(ValueError, match=f"{name}="):
    gradual_unfreeze(**kwargs)


@pytest.mark.parametrize("probe_steps", [-1, 2.0, 2**31])
def test_head_first_bad_args(probe_steps):
  with pytest.raises(ValueError, match="probe_steps="):
    head_first(probe_steps)


def test_multisteps_counts_effective_steps():
  params = dict_params()
  tx = optax.MultiSteps(gradual_unfreeze(every_steps=1), every_k_schedule=2)
  state = tx.init(params)
  levels = []
  for _ in range(6):
    _, state = jax.jit(tx.update)(params, state, params)
    levels.append(int(unfrozen_levels(state)))
  assert levels == [1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize("tool", [{"head_first_epochs": 3},
                                  {"unfreeze_every_epochs": 3}])
def test_frozen_layers_stay_bit_identical_under_adam(tool):
  """The docstring's promise holds for any base optimizer
  whose step is zero for a zero gradient (Adam); AdamW's decoupled weight
  decay moves frozen layers unless given a mask (documented)."""
  from lrtransfer.recipes import Recipe, build_optimizer
  def run(optimizer):
    params = dict_params()
    recipe = Recipe("r", 1e-2, **tool, optimizer=optimizer)
    tx = build_optimizer(recipe, steps_per_epoch=1, total_steps=10)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(2):  # inside the first period: only the head is open
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
    return params
  same = lambda a, b: all(np.array_equal(x, y) for x, y in
                          zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  start = dict_params()
  adam = run(lambda lr: optax.adam(lr))
  assert same(adam["hidden"], start["hidden"])
  assert not same(adam["head"], start["head"])
  adamw = run(lambda lr: optax.adamw(lr, weight_decay=0.5))
  assert not same(adamw["hidden"], start["hidden"])  # the documented limit
