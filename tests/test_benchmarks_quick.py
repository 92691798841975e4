"""The benchmark scripts run end to end (--quick) and write the documented JSON.

Checks the schema, not the numbers: speed and accuracy depend on the machine.
The optional peers (PyTorch, Keras) are skipped with ``--peers none``, which
must give them ``null`` -- the same as on a machine without the ``[bench]``
extra, such as CI.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TIMEOUT_S = 170


def _run(script: str, out: Path, *extra: str) -> dict:
  proc = subprocess.run(
      [sys.executable, str(BENCHMARKS / script), "--quick", "--out",
       str(out), *extra],
      cwd=BENCHMARKS.parent, capture_output=True, text=True,
      timeout=TIMEOUT_S)
  assert proc.returncode == 0, (
      f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
      f"{proc.stderr[-3000:]}")
  return json.loads(out.read_text())


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_device(device) -> None:
  assert isinstance(device, dict)
  for key in ("platform", "device_kind", "jax_version"):
    assert isinstance(device[key], str) and device[key]


@pytest.fixture(scope="module")
def speed(tmp_path_factory):
  out = tmp_path_factory.mktemp("speed") / "speed.json"
  return _run("speed.py", out, "--peers", "none"), out


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
  out = tmp_path_factory.mktemp("quality") / "quality.json"
  return _run("quality.py", out), out


def test_speed_schema(speed):
  result, out = speed
  _check_device(result["device"])
  ratios = result["overhead_ratio"]
  for name in ("decay", "adjust", "dynamic", "reduce_on_plateau",
               "layerwise_scale", "gradual_unfreeze", "l2sp"):
    assert _is_number(ratios[name]) and ratios[name] > 0, name
  for key in ("fit_seconds", "fit_accuracy"):
    assert set(result[key]) >= {"lrtransfer", "optax_scan", "pytorch",
                                "keras"}
    for name in ("lrtransfer", "optax_scan"):
      assert _is_number(result[key][name]) and result[key][name] >= 0
  assert 0.0 <= result["fit_accuracy"]["lrtransfer"] <= 1.0
  sweep = result["sweep"]
  assert isinstance(sweep["runs"], int) and sweep["runs"] >= 32
  assert _is_number(sweep["vmapped_s"]) and sweep["vmapped_s"] > 0
  assert _is_number(sweep["sequential_s"]) and sweep["sequential_s"] > 0
  assert _is_number(result["compile_seconds"])
  assert result["compile_seconds"] > 0
  assert out.with_suffix(".md").read_text().strip()


def test_speed_missing_peers_are_null(speed):
  result, _ = speed
  for name in ("pytorch", "keras"):
    assert result["fit_seconds"][name] is None
    assert result["fit_accuracy"][name] is None
    assert name in result["missing_peers"]
    key = f"fit_4x_faster_than_{name}_at_equal_accuracy"
    assert result["targets"][key] is None


def test_quality_schema(quality):
  result, out = quality
  _check_device(result["device"])
  seeds = result["seeds"]
  assert isinstance(seeds, int) and seeds >= 5
  assert result["tasks"]
  for task, methods in result["tasks"].items():
    for name in ("scratch", "constant_lr_best_of_grid",
                 "optax_reduce_on_plateau", "range_test_lr", "decay",
                 "reduce_on_plateau", "adjust", "dynamic", "layerwise",
                 "gradual_unfreeze", "head_first", "l2sp"):
      stats = methods[name]
      assert set(stats) >= {"mean", "std", "n"}, (task, name)
      assert isinstance(stats["n"], int)
      if name == "range_test_lr" and stats["n"] == 0:
        continue  # no usable suggestion: reported as NaN with n = 0
      assert stats["n"] == seeds, (task, name)
      assert 0.0 <= stats["mean"] <= 1.0 and stats["std"] >= 0.0
    details = result["details"][task]
    assert details["grid"]["chosen"] in details["grid"]["learning_rates"]
    assert len(details["grid"]["learning_rates"]) >= 5
    assert math.isfinite(details["range_test"]["suggestion"]) or (
        methods["range_test_lr"]["n"] == 0)
  assert result["optax_plateau"]["reacts_once_per_epoch"] is True
  assert out.with_suffix(".md").read_text().strip()
  assert out.with_suffix(".png").stat().st_size > 0
