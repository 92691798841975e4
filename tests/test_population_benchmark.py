"""benchmarks/population.py runs end to end (--quick) and writes its JSON;
the schedules it replays on recorded curves follow their rules.

Checks the schema and the replay arithmetic, not the accuracies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TIMEOUT_S = 170
sys.path.insert(0, str(BENCHMARKS))

import population_sim as sim  # noqa: E402 (after the sys.path entry)


def _run(out: Path, *extra: str) -> dict:
  proc = subprocess.run(
      [sys.executable, str(BENCHMARKS / "population.py"), "--quick", "--out",
       str(out), *extra], cwd=BENCHMARKS.parent, capture_output=True,
      text=True, timeout=TIMEOUT_S, check=False)
  assert proc.returncode == 0, (
      f"population.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
      f"{proc.stderr[-3000:]}")
  return json.loads(out.read_text())


def _check_common(result: dict, out: Path) -> str:
  assert result["quick"] is True
  assert isinstance(result["device"]["platform"], str)
  (task, meta), = result["tasks"].items()
  labels = [m["label"] for m in meta["members"]]
  # 5 rates x (scratch, all body levels but the last, all of them, + head).
  assert len(labels) == len(set(labels)) == 20
  assert {m["depth"] for m in meta["members"]} == {0, 1, 2}
  assert any(m["keep_head"] for m in meta["members"])
  for timing in meta["timing"].values():
    assert timing["wall_time_ratio"] > 0
    assert len(timing["single_member_seconds"]) == 2
  with np.load(out.with_name(out.stem + "_curves.npz")) as curves:
    shape = curves[f"{task}/constant/val_accuracy"].shape
  assert shape == (20, 2, result["epochs"])
  assert out.with_suffix(".md").read_text().strip()
  return task


@pytest.mark.slow  # the benchmark end to end; the replay rules stay fast
def test_tuning_quick(tmp_path):
  out = tmp_path / "tuning.json"
  result = _run(out, "--strategies", "constant")
  task = _check_common(result, out)
  with np.load(out.with_name(out.stem + "_curves.npz")) as curves:
    assert f"{task}/constant/val_accuracy_test" not in curves.files
  analysis = result["analysis"]
  assert "test never evaluated" in analysis["rule"]
  adopted = analysis["adopted"]
  assert adopted["monitor"] in ("val_accuracy", "val_loss")
  assert set(adopted["halving"]) == {"eta", "rungs"}
  assert set(adopted["rates"]) <= set(result["rates"])
  assert 0.0 <= adopted["held_out_validation"] <= 1.0
  assert {r["schedule"] for r in analysis["schedules"]} >= {"full"}
  assert adopted["schedule"] in ("full", "halving", "pbt")


@pytest.mark.slow  # the benchmark end to end; the replay rules stay fast
def test_report_quick(tmp_path):
  out = tmp_path / "report.json"
  result = _run(out, "--set", "report")
  task = _check_common(result, out)
  row = result["analysis"]["tasks"][task]
  for name in ("full", "budgeted"):
    assert 0.0 <= row[name]["test_mean"] <= 1.0
    assert len(row[name]["chosen"]) == 2
  assert row["full"]["member_epochs_runs"] == 20
  assert row["budgeted"]["member_epochs_runs"] < 20
  for variant in ("final_epoch", "best_epoch"):
    ref = row["reference"][variant]
    assert ref["reference"] == max(ref["scratch"]["test_mean"],
                                   ref["fine_tuning"]["test_mean"])
  targets = result["analysis"]["targets"]
  assert set(targets) == {"budgeted", "full", "budget"}
  for variant in ("budgeted", "full"):
    assert set(targets[variant]) >= {
        "test_mean", "mean_vs_reference_final_epoch", "mean_vs_prodigy",
        "every_task_vs_reference_best_epoch"}
    for name, target in targets[variant].items():
      if name != "test_mean":
        assert target["met"] in (True, False, None), name
  assert targets["budget"]["met"] in (True, False)


def test_halving_stops_the_weaker_members_at_each_rung():
  # Member 1 trails at epoch 1, member 2 at epoch 2: member 2's 0.95 at
  # epoch 4 is never reached under halving, the full population finds it.
  values = np.array([[0.5, 0.9, 0.9, 0.9],
                     [0.2, 0.3, 0.4, 0.5],
                     [0.4, 0.1, 0.2, 0.95]])
  schedule = sim.Halving(((1, 2), (2, 1)))
  stop = schedule.stops(sim.signed_values(values, "max"))
  np.testing.assert_array_equal(stop, [4, 1, 2])
  assert schedule.member_epochs(3, 4) == stop.sum() == 7
  # Member 0's best, first reached at epoch 2, wins.
  out = sim.replay(schedule, values, "max", [values * 10])
  assert (out["member"], out["epoch"], out["scores"]) == (0, 2, [9.0])
  full = sim.replay(sim.Halving(), values, "max", [values])
  assert (full["member"], full["epoch"], full["member_epochs"]) == (2, 4, 12)


def test_replay_min_mode_ties_and_nan():
  values = np.array([[np.nan, 0.5, 0.5],
                     [0.7, 0.5, 0.6]])
  out = sim.replay(sim.Halving(), values, "min", [values])
  # Equal best losses: the first member, its first epoch at that value.
  assert (out["member"], out["epoch"]) == (0, 2)
  subset = sim.replay(sim.Halving(), values, "min", [values], members=[1])
  assert (subset["member"], subset["epoch"]) == (1, 2)


@pytest.mark.parametrize("members", [15, 20, 40])
def test_budgeted_schedules_stay_within_budget(members):
  specs = sim.halving_specs(members, 50, 3.0)
  assert specs
  for eta, rung_epochs in specs:
    schedule = sim.explicit(members, eta, rung_epochs)
    assert schedule.member_epochs(members, 50) <= 150
    keeps = [keep for _, keep in schedule.rungs]
    assert keeps == sorted(keeps, reverse=True) and keeps[-1] >= 1
    assert list(rung_epochs) == sorted(set(rung_epochs))
    assert 0 < rung_epochs[0] and rung_epochs[-1] < 50


def test_anchored_rungs_end_at_a_fraction_eta_of_the_run():
  # 20 members, eta 3: 20 -> 7 -> 3 -> 1 at 50/27, 50/9, 50/3 (rounded).
  assert sim.anchored_epochs(20, 50, 3) == (2, 6, 17)
  schedule = sim.explicit(20, 3, (2, 6, 17))
  assert schedule.rungs == ((2, 7), (6, 3), (17, 1))
  assert schedule.member_epochs(20, 50) == 20 * 2 + 7 * 4 + 3 * 11 + 33
