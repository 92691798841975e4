"""Small public signatures, each default defined once, documented in full.

``adjust`` and ``dynamic`` take the arguments a user sets; the finer
constants of their rule live in one frozen config each
(:class:`lrtransfer.AdjustRule`, :class:`lrtransfer.DynamicRule`), and the
defaults the two signatures share are the module constants of
``lrtransfer._src.rules``. The test references (``tests/_harness.py``) read
their defaults from the library, so a retuned default cannot leave a copy
behind.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrtransfer
from _harness import ADJUST_DEFAULTS, DYNAMIC_DEFAULTS
from lrtransfer._src import rules

STRATEGIES = [lrtransfer.adjust, lrtransfer.dynamic, lrtransfer.decay,
              lrtransfer.reduce_on_plateau, lrtransfer.bold_driver]


def _params(fn):
  return inspect.signature(fn).parameters


def test_adjust_takes_at_most_10_parameters_and_dynamic_at_most_12():
  assert len(_params(lrtransfer.adjust)) <= 10
  assert len(_params(lrtransfer.dynamic)) <= 12


@pytest.mark.parametrize("strategy", [lrtransfer.adjust, lrtransfer.dynamic])
def test_shared_defaults_are_the_module_constants(strategy):
  params = _params(strategy)
  assert params["patience"].default is rules.PATIENCE
  assert params["cooldown"].default is rules.COOLDOWN
  assert params["raise_factor"].default is rules.RAISE_FACTOR
  assert params["lower_factor"].default is rules.LOWER_FACTOR
  assert params["max_scale"].default is rules.MAX_SCALE


@pytest.mark.parametrize("strategy,rule_class", [
    (lrtransfer.adjust, lrtransfer.AdjustRule),
    (lrtransfer.dynamic, lrtransfer.DynamicRule)])
def test_the_rule_default_is_its_class_defaults(strategy, rule_class):
  default = _params(strategy)["rule"].default
  assert type(default) is rule_class
  assert default == rule_class()
  # Frozen: a default shared by every call cannot be changed by one.
  with pytest.raises(dataclasses.FrozenInstanceError):
    default.max_raises = 5  # type: ignore[misc]


@pytest.mark.parametrize("strategy,rule_class", [
    (lrtransfer.adjust, lrtransfer.AdjustRule),
    (lrtransfer.dynamic, lrtransfer.DynamicRule)])
def test_no_setting_is_both_an_argument_and_a_rule_field(strategy,
                                                          rule_class):
  fields = {f.name for f in dataclasses.fields(rule_class)}
  assert not fields & set(_params(strategy))


def test_dynamic_rule_differs_from_adjust_rule_only_where_documented():
  adjust_rule = dataclasses.asdict(lrtransfer.AdjustRule())
  dynamic_rule = dataclasses.asdict(lrtransfer.DynamicRule())
  changed = {k for k in adjust_rule if adjust_rule[k] != dynamic_rule[k]}
  assert changed == {"brake_patience", "remember_brake",
                     "brake_while_improving"}
  assert set(dynamic_rule) - set(adjust_rule) == {
      "progress_gain", "stall_gain", "improving_gain"}


def test_the_references_take_their_defaults_from_the_library():
  for strategy, rule_class, defaults in [
      (lrtransfer.adjust, lrtransfer.AdjustRule, ADJUST_DEFAULTS),
      (lrtransfer.dynamic, lrtransfer.DynamicRule, DYNAMIC_DEFAULTS)]:
    for name, param in _params(strategy).items():
      if name not in ("rule", "total_steps"):
        assert defaults[name] is param.default, name
    for field in dataclasses.fields(rule_class):
      assert defaults[field.name] is getattr(rule_class(), field.name)


def test_no_parameter_does_three_jobs():
  for strategy in STRATEGIES:
    assert "plateau_factor" not in _params(strategy)


def test_a_lower_factor_keeps_the_slow_progress_raise():
  # Lowering on over-fitting and raising on slow progress are separate
  # settings: lower_factor < 1 leaves the slow-progress raise on.
  tx = lrtransfer.adjust(lower_factor=0.5)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  for k in range(1, 8):  # validation improves, training creeps (1% a time)
    metric = lrtransfer.measurement(count=k, monitor="val_loss",
                                    val_loss=1.0 - 0.05 * k,
                                    train_loss=0.99 ** k)
    _, state = tx.update(params, state, params, metric=metric)
  assert float(state.scale) > 1.0


def test_raise_factor_one_turns_every_raise_off():
  tx = lrtransfer.adjust(raise_factor=1.0)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  scales = []
  for k in range(1, 12):  # slow progress, then a plateau with training flat
    metric = lrtransfer.measurement(count=k, monitor="val_loss",
                                    val_loss=max(1.0 - 0.05 * k, 0.7),
                                    train_loss=max(0.99 ** k, 0.95))
    _, state = tx.update(params, state, params, metric=metric)
    scales.append(float(state.scale))
  np.testing.assert_array_equal(scales, 1.0)


@pytest.mark.parametrize("public", STRATEGIES + [
    lrtransfer.schedule_scale, lrtransfer.decay_schedule,
    lrtransfer.measurement, lrtransfer.no_measurement,
    lrtransfer.check_count_order])
def test_public_functions_are_typed_and_documented(public):
  doc = inspect.getdoc(public)
  assert len(doc.splitlines()) <= 40, len(doc.splitlines())
  for section in ("Args:", "Returns:", "Example"):
    assert section in doc, section
  hints = typing.get_type_hints(public)
  assert "return" in hints
  for name in _params(public):
    assert name in hints, name


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_docstrings_have_a_table_and_references(strategy):
  doc = inspect.getdoc(strategy)
  assert "References:" in doc
  assert "\n====" in doc  # the rule, as a table


@pytest.mark.parametrize("rule_class", [lrtransfer.AdjustRule,
                                        lrtransfer.DynamicRule])
def test_every_rule_field_is_documented(rule_class):
  doc = inspect.getdoc(rule_class)
  own = {f.name for f in dataclasses.fields(rule_class)}
  if rule_class is lrtransfer.DynamicRule:
    own -= {f.name for f in dataclasses.fields(lrtransfer.AdjustRule)}
  for name in own:
    assert f"\n  {name}: " in doc, name


@pytest.mark.parametrize("make", [
    lrtransfer.adjust, lambda: lrtransfer.dynamic(10),
    lrtransfer.reduce_on_plateau, lrtransfer.bold_driver])
def test_update_declares_metric_by_name_as_optax_extra_args(make):
  tx = make()
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  metric = inspect.signature(tx.update).parameters["metric"]
  assert metric.kind is inspect.Parameter.KEYWORD_ONLY
  assert "Measurement" in str(metric.annotation)
