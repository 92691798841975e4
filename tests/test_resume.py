"""Resume after a real interruption, and refuse bad checkpoints clearly."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from flax import nnx

import lrtransfer

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "fit_run.py"
EPOCHS = 30


def _fit_script(*args):
  return [sys.executable, str(SCRIPT), *map(str, args)]


def _checkpointed_epochs(folder):
  if not folder.exists():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def _kill_once_checkpointed(proc, folder, epoch=3):
  """SIGKILLs ``proc`` as soon as ``folder`` holds the checkpoint of ``epoch``."""
  deadline = time.monotonic() + 240
  while not any(e >= epoch for e in _checkpointed_epochs(folder)):
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.monotonic() < deadline
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()


def _assert_bit_identical(a_path, b_path):
  a, b = np.load(a_path), np.load(b_path)
  assert sorted(a.files) == sorted(b.files)
  for name in a.files:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_killed_run_resumes_bit_identical(tmp_path, subprocess_env):
  reference = tmp_path / "reference.npz"
  subprocess.run(_fit_script(reference, "--checkpoint", tmp_path / "ref_ck",
                             "--every", 1, "--epochs", EPOCHS),
                 check=True, timeout=300, env=subprocess_env)
  folder = tmp_path / "ck"
  proc = subprocess.Popen(_fit_script(tmp_path / "unused.npz", "--checkpoint",
                                      folder, "--every", 1, "--epochs",
                                      EPOCHS), env=subprocess_env)
  _kill_once_checkpointed(proc, folder)
  done = _checkpointed_epochs(folder)
  assert done and max(done) < EPOCHS, f"not interrupted mid-run: {done}"
  resumed = tmp_path / "resumed.npz"
  subprocess.run(_fit_script(resumed, "--checkpoint", folder, "--every", 1,
                             "--epochs", EPOCHS, "--resume"),
                 check=True, timeout=300, env=subprocess_env)
  _assert_bit_identical(reference, resumed)


@pytest.fixture(scope="module")
def small():
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=4)
  source = lrtransfer.experiment.pretrain_source(task, hidden=(16,), epochs=2)
  target = lrtransfer.models.target_from_source(source, task.num_target_classes,
                                         rngs=nnx.Rngs(0))
  return task, target


def _fit(small, folder, **kwargs):
  task, target = small
  settings = dict(epochs=4, batch_size=8, checkpoint_dir=folder,
                  checkpoint_every=2)
  settings.update(kwargs)
  recipe = settings.pop("recipe", lrtransfer.recipes.default_recipes()["adjust"])
  return lrtransfer.train.fit(target, recipe, task.target_train, task.target_val,
                        **settings)


def test_resume_of_a_finished_run_restores_it(small, tmp_path):
  first = _fit(small, tmp_path / "ck")
  again = _fit(small, tmp_path / "ck", resume=True)
  assert again.compile_seconds == 0.0  # nothing left to run
  for name in first.history:
    np.testing.assert_array_equal(first.history[name], again.history[name])


def test_resume_refuses_a_checkpoint_of_another_run(small, tmp_path):
  _fit(small, tmp_path / "ck")
  with pytest.raises(lrtransfer.checkpoint.CheckpointError,
                     match=r"different run \(epochs: checkpoint has 4, this "
                           r"run 6\)"):
    _fit(small, tmp_path / "ck", epochs=6, resume=True)
  with pytest.raises(lrtransfer.checkpoint.CheckpointError, match="recipe"):
    _fit(small, tmp_path / "ck", resume=True,
         recipe=lrtransfer.recipes.default_recipes()["decay"])


def test_corrupt_checkpoint_is_named_not_loaded(small, tmp_path):
  folder = tmp_path / "ck"
  _fit(small, folder)
  latest = folder / "4"
  for path in (latest / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b"garbage")
  with pytest.raises(lrtransfer.checkpoint.CheckpointError, match=str(latest)):
    _fit(small, folder, resume=True)


def test_resume_without_checkpoint_starts_fresh(small, tmp_path):
  fresh = _fit(small, tmp_path / "new", resume=True)
  assert fresh.history["val_loss"].shape == (4,)
  assert np.all(np.isfinite(fresh.history["val_loss"]))


def _cli(out, *extra):
  return [sys.executable, "-m", "lrtransfer._src.cli", "run", "--methods",
          "adjust", "--epochs", "12", "--source-epochs", "2",
          "--seeds", "2", "--shots", "4", "--checkpoint-every", "1",
          "--no-progress", "--out", str(out), *extra]


# The fast tier kills a fit (test_killed_run_resumes_bit_identical) and
# interrupts the command (tests/test_interrupt.py); this runs three command
# processes to compare a killed and resumed run with an uninterrupted one.
@pytest.mark.slow
def test_cli_resume_after_kill_matches_uninterrupted(tmp_path, subprocess_env):
  subprocess.run(_cli(tmp_path / "ref"), check=True, timeout=300,
                 capture_output=True, env=subprocess_env)
  out = tmp_path / "run"
  proc = subprocess.Popen(_cli(out), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=subprocess_env)
  _kill_once_checkpointed(proc, out / "checkpoints" / "adjust")
  assert not (out / "results.json").exists()
  subprocess.run(_cli(out, "--resume"), check=True, timeout=300,
                 capture_output=True, env=subprocess_env)

  ref = json.loads((tmp_path / "ref" / "results.json").read_text())
  got = json.loads((out / "results.json").read_text())
  for method in ("adjust",):
    assert got["methods"][method]["test_accuracy"] == (
        ref["methods"][method]["test_accuracy"])
    assert got["methods"][method]["history_mean"] == (
        ref["methods"][method]["history_mean"])


def test_checkpoint_every_must_be_positive(small, tmp_path):
  task, target = small
  with pytest.raises(ValueError, match="checkpoint_every"):
    _fit(small, tmp_path / "ck", checkpoint_every=0)
  with pytest.raises(ValueError, match="checkpoint_every"):
    lrtransfer.train.fit_many([target], lrtransfer.recipes.Recipe("c"), task.target_train,
                        task.target_val, seeds=[0], epochs=2,
                        checkpoint_every=0)


def test_resume_refuses_a_recipe_changed_under_the_same_name(small, tmp_path):
  def mine(patience):
    return lrtransfer.recipes.Recipe(
        "mine", strategy=lambda spe, total: lrtransfer.adjust(
            patience=patience))
  _fit(small, tmp_path / "ck", recipe=mine(3))
  with pytest.raises(lrtransfer.checkpoint.CheckpointError, match="recipe"):
    _fit(small, tmp_path / "ck", recipe=mine(5), resume=True)
