"""Tests of lr_range_test."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lrtransfer._src.transfer import LRRangeTestResult, lr_range_test
from lrtransfer._src.transfer.lr_finder import _steepest_suggestion

CURVATURE = 2.0
QUADRATIC = dict(min_lr=1e-3, max_lr=100.0, num_steps=100)


def quadratic_loss(w, batch):
  """0.5 * a * w**2 with the curvature a as the batch."""
  return 0.5 * batch * w**2


def numpy_reference(learning_rates, momentum, w=1.0, a=CURVATURE):
  """Heavy-ball SGD on the quadratic, by hand, in float64."""
  losses, trace = [], 0.0
  for lr in learning_rates:
    losses.append(0.5 * a * w * w)
    trace = a * w + momentum * trace
    w = w - lr * trace
  return np.array(losses)


def smooth(losses, rho):
  average, out = 0.0, []
  for k, loss in enumerate(losses):
    average = rho * average + (1 - rho) * loss
    out.append(average / (1 - rho ** (k + 1)))
  return np.array(out)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_quadratic_stops_after_the_stability_bound(momentum):
  # Heavy-ball SGD on 0.5*a*w^2 diverges iff lr > 2 (1 + momentum) / a.
  bound = 2 * (1 + momentum) / CURVATURE
  result = lr_range_test(quadratic_loss, jnp.float32(1.0),
                         jnp.full((1,), CURVATURE), momentum=momentum,
                         **QUADRATIC)
  assert isinstance(result, LRRangeTestResult)
  assert result.stopped_at is not None
  assert result.learning_rates[result.stopped_at] > bound
  assert 0 < result.suggestion < bound
  assert isinstance(result.suggestion, float)

  # The arrays end at the diverging step.
  n = result.stopped_at + 1
  assert result.learning_rates.shape == result.losses.shape == (n,)
  assert result.smoothed_losses.shape == (n,)

  # Against NumPy: rates, raw losses, smoothing, stop index, suggestion.
  expected_lrs = 1e-3 * (1e5) ** (np.arange(100) / 99)
  np.testing.assert_allclose(result.learning_rates, expected_lrs[:n],
                             rtol=1e-12)
  expected_losses = numpy_reference(expected_lrs, momentum)[:n]
  np.testing.assert_allclose(result.losses, expected_losses, rtol=2e-3)
  expected_smoothed = smooth(expected_losses, 0.98)
  np.testing.assert_allclose(result.smoothed_losses, expected_smoothed,
                             rtol=2e-3)
  best = np.minimum.accumulate(expected_smoothed)
  first_diverged = int(np.argmax(expected_smoothed[1:] > 4 * best[:-1])) + 1
  assert result.stopped_at == first_diverged
  slopes = np.gradient(expected_smoothed[:n - 1], np.log(expected_lrs[:n - 1]))
  assert result.suggestion == pytest.approx(expected_lrs[np.argmin(slopes)],
                                            rel=1e-6)


def test_no_stop_runs_every_step_and_cycles_batches():
  # Rates too small to move w: losses[k] = 0.5 * batches[k % 3].
  batches = {"a": jnp.array([1.0, 2.0, 3.0])}
  result = lr_range_test(lambda w, b: 0.5 * b["a"] * w**2, jnp.float32(1.0),
                         batches, min_lr=1e-9, max_lr=1e-8, num_steps=10,
                         smoothing=0.0)
  assert result.stopped_at is None
  assert result.losses.shape == (10,)
  np.testing.assert_allclose(result.losses,
                             0.5 * np.array([1.0, 2.0, 3.0] * 4)[:10],
                             rtol=1e-6)
  np.testing.assert_array_equal(result.smoothed_losses, result.losses)


def test_pytree_params_and_batches_with_more_than_one_leaf():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 8, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32))[..., None]
  params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
  loss = lambda p, batch: jnp.mean(
      (batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)
  result = lr_range_test(loss, params, {"x": x, "y": y}, min_lr=1e-4,
                         max_lr=50.0, num_steps=60)
  assert result.stopped_at is not None
  assert 1e-4 <= result.suggestion < result.learning_rates[result.stopped_at]
  assert np.all(np.isfinite(result.smoothed_losses[:-1]))


def test_non_finite_loss_stops():
  # The loss turns NaN once |w| >= 3, which the large rates force.
  loss = lambda w, b: jnp.where(jnp.abs(w) < 3.0, 0.5 * b * w**2, jnp.nan)
  result = lr_range_test(loss, jnp.float32(1.0), jnp.ones((1,)),
                         min_lr=1e-2, max_lr=1e3, num_steps=50, momentum=0.0,
                         diverge_factor=1e9)
  assert result.stopped_at is not None
  assert not np.isfinite(result.losses[-1])
  assert np.all(np.isfinite(result.losses[:-1]))
  assert math.isfinite(result.suggestion)


def test_compiled_as_one_scan():
  traces = []

  def loss(w, batch):
    traces.append(None)  # Runs once per trace, not once per step.
    return quadratic_loss(w, batch)

  lr_range_test(loss, jnp.float32(1.0), jnp.ones((1,)), num_steps=50)
  assert len(traces) == 1
  # Other parameters and batches of the same shapes: no new trace/compile.
  lr_range_test(loss, jnp.float32(3.0), jnp.full((1,), 2.0, jnp.float32),
                num_steps=50)
  assert len(traces) == 1


def test_constant_loss_falls_back_to_min_over_ten():
  result = lr_range_test(lambda w, b: 0.0 * w + 1.0, jnp.float32(1.0),
                         jnp.ones((1,)), min_lr=1e-3, max_lr=1.0,
                         num_steps=5, smoothing=0.0)
  assert result.stopped_at is None
  assert result.suggestion == pytest.approx(1e-4)


def test_suggestion_rule_on_synthetic_curves():
  lrs = np.geomspace(1e-4, 1.0, 9)
  smoothed = np.array([1.0, 0.99, 0.95, 0.7, 0.3, 0.25, 0.24, 0.5, 2.0])
  slopes = np.gradient(smoothed, np.log(lrs))
  assert _steepest_suggestion(lrs, smoothed) == lrs[np.argmin(slopes)] == lrs[3]
  rising = np.linspace(1.0, 2.0, 9)
  assert _steepest_suggestion(lrs, rising) == pytest.approx(lrs[0] / 10)
  assert _steepest_suggestion(lrs[:1], rising[:1]) == pytest.approx(
      lrs[0] / 10)
  assert math.isnan(_steepest_suggestion(lrs[:0], rising[:0]))


@pytest.mark.parametrize("kwargs,name", [
    ({"min_lr": 0.0}, "min_lr"),
    ({"min_lr": -1.0}, "min_lr"),
    ({"max_lr": float("inf")}, "max_lr"),
    ({"min_lr": 1.0, "max_lr": 1.0}, "min_lr"),
    ({"num_steps": 2}, "num_steps"),
    ({"num_steps": 10.0}, "num_steps"),
    ({"momentum": 1.0}, "momentum"),
    ({"smoothing": 1.0}, "smoothing"),
    ({"smoothing": -0.1}, "smoothing"),
    ({"diverge_factor": 1.0}, "diverge_factor"),
])
def test_bad_arguments(kwargs, name):
  with pytest.raises(ValueError, match=f"{name}="):
    lr_range_test(quadratic_loss, jnp.float32(1.0), jnp.ones((4,)), **kwargs)


def test_bad_batches():
  with pytest.raises(ValueError, match="batches"):
    lr_range_test(quadratic_loss, jnp.float32(1.0),
                  {"a": jnp.ones((4,)), "b": jnp.ones((3,))})
  with pytest.raises(ValueError, match="batches"):
    lr_range_test(quadratic_loss, jnp.float32(1.0), jnp.float32(1.0))


def test_suggestion_skips_the_noisy_first_steps():
  lrs = np.geomspace(1e-5, 1.0, 20)
  # A noisy plunge at the very start, then the real descent around step 12.
  smoothed = np.concatenate([[5.0, 2.0], np.full(9, 2.0),
                             [1.9, 1.5, 1.0, 0.9, 0.9, 0.95, 1.2, 2.0, 3.0]])
  assert _steepest_suggestion(lrs, smoothed) == lrs[0]
  assert _steepest_suggestion(lrs, smoothed, skip=2) == lrs[12]
