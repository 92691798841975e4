"""Data-parallel fit and fit_many over 4 (simulated CPU) devices equal the
1-device runs."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "fit_run.py"


# fit_many on four devices runs in the slow tier: fit and fit_many share
# their implementation (train/runs.py), the fast tier checks it through fit.
@pytest.mark.parametrize("many", [
    False, pytest.param(True, marks=pytest.mark.slow)], ids=["fit", "fit_many"])
def test_four_devices_match_one_device(tmp_path, many):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=4").strip()
  env["JAX_PLATFORMS"] = "cpu"
  runs = {}
  for devices in ("one", "all"):
    out = tmp_path / f"{devices}.npz"
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--epochs", "8",
                    "--devices", devices] + (["--many"] if many else []),
                   check=True, env=env, timeout=300)
    runs[devices] = np.load(out)
  assert int(runs["all"]["device_count"]) == 4
  one, four = runs["one"], runs["all"]
  assert int(one["param_devices"]) == 1
  assert int(four["param_devices"]) == 4  # replicated over the mesh
  for name in one.files:
    if name.startswith("history/") or name.startswith("param/"):
      np.testing.assert_allclose(four[name], one[name], rtol=1e-4, atol=1e-5,
                                 err_msg=name)
  # The learning-rate decisions (one per epoch) are the same on all devices.
  np.testing.assert_array_equal(four["history/scale"], one["history/scale"])
