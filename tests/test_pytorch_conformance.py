"""reduce_on_plateau gives PyTorch's ReduceLROnPlateau learning rates.

The expected learning rates in data/pytorch_conformance.json were recorded
from torch 2.13.0 by data/make_pytorch_conformance.py; PyTorch is not needed
to run this test.
"""

import json
import pathlib

import numpy as np
import pytest

import lrtransfer
from _harness import per_step_measurements, scales_over_steps

DATA = json.loads(
    (pathlib.Path(__file__).parent / "data" /
     "pytorch_conformance.json").read_text())


def _case_id(case):
  c = case["config"]
  return (f"{case['sequence']}-{c['mode']}-f{c['factor']}-p{c['patience']}-"
          f"{c['threshold_mode']}{c['threshold']}-cd{c['cooldown']}")


@pytest.mark.parametrize("case", DATA["cases"], ids=_case_id)
@pytest.mark.parametrize("steps_per_eval", [1, 5])
def test_reduce_on_plateau_matches_pytorch(case, steps_per_eval):
  config = case["config"]
  base_lr = DATA["base_lr"]
  tx = lrtransfer.reduce_on_plateau(
      mode=config["mode"], factor=config["factor"],
      patience=config["patience"], threshold=config["threshold"],
      threshold_mode=config["threshold_mode"], cooldown=config["cooldown"],
      min_scale=config["min_lr"] / base_lr, eps=1e-8 / base_lr)
  scales = scales_over_steps(
      tx, *per_step_measurements(case["metrics"], steps_per_eval))
  lrs = base_lr * scales[steps_per_eval - 1::steps_per_eval]
  np.testing.assert_allclose(lrs, case["lrs"], rtol=1e-6)
  # The sequence must exercise the rule, or the test proves little.
  assert len(set(case["lrs"])) > 1


def test_general_adjust_in_reduce_configuration_matches_pytorch():
  case = DATA["cases"][1]
  config = case["config"]
  tx = lrtransfer.adjust(
      mode=config["mode"], raise_factor=1.0, lower_factor=config["factor"],
      patience=config["patience"], cooldown=config["cooldown"],
      min_scale=config["min_lr"] / 0.1, max_scale=1.0,
      rule=lrtransfer.AdjustRule(threshold=config["threshold"],
                                 threshold_mode=config["threshold_mode"]))
  scales = scales_over_steps(tx, *per_step_measurements(case["metrics"], 1))
  np.testing.assert_allclose(0.1 * scales, case["lrs"], rtol=1e-6)
