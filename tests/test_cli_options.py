"""`lrtransfer`'s usage errors come before JAX is imported; the same label
checks for the command's files and for `train.fit`; results.json types."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from flax import nnx

from lrtransfer import data, recipes, train
from lrtransfer._src import cli, report
from lrtransfer._src.data import labels
from lrtransfer_cli import options

# Runs the entry point in a fresh interpreter and reports, after the usage
# error, the exit status and whether JAX (or NumPy) had been imported.
_PROBE = """
import sys
from lrtransfer_cli import main
try:
  code = main(sys.argv[1:])
except SystemExit as exit_:
  code = exit_.code
print(code, "jax" in sys.modules, "numpy" in sys.modules)
"""


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["--seeds", "two"], "expected a whole number, got 'two'"),
    (["--lr", "nan"], "must be a finite number > 0"),
    (["--methods", "constnt"],
     "unknown method(s) constnt (did you mean 'constant'?)"),
    (["--task", "digits_labl_split"],
     "unknown task 'digits_labl_split' (did you mean 'digits_label_split'?)"),
    (["--transfer-layers", "7"], "--transfer-layers must be in 0..2, got 7"),
    (["--standardize", "none"], "--standardize applies to your own data"),
    (["--source-data", "a.npz"], "--source-data and --target-data go "
                                 "together"),
])
def test_usage_errors_are_reported_before_jax_is_imported(args, message,
                                                           tmp_path):
  start = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, "-c", _PROBE, "run", "--out", str(tmp_path / "o"),
       *args], capture_output=True, text=True, timeout=120)
  seconds = time.perf_counter() - start  # for information, never asserted
  print(f"{args}: usage error after {seconds:.2f} s (interpreter included)")
  code, jax_loaded, numpy_loaded = proc.stdout.split()
  assert (code, jax_loaded, numpy_loaded) == ("2", "False", "False"), (
      proc.stderr)
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "o").exists()


def test_list_methods_needs_no_jax():
  proc = subprocess.run([sys.executable, "-c", _PROBE, "run",
                         "--list-methods"], capture_output=True, text=True,
                        timeout=120)
  *names, code, jax_loaded, _ = proc.stdout.split()
  assert (code, jax_loaded) == ("0", "False")
  assert names == [*options.METHODS, options.AUTO]
  assert set(recipes.default_recipes()) <= set(names)


def test_the_stdlib_registries_match_the_library():
  # The entry point lists methods and tasks without importing them; a new
  # recipe or task must be added there too.
  recipe_names = list(recipes.default_recipes())
  assert [m for m in options.METHODS if m in recipe_names] == recipe_names
  assert set(options.TASKS) == set(data.TASKS)


def test_did_you_mean_suggests_only_close_names():
  assert options.did_you_mean(["gradual_unfrezee"], options.METHODS) == (
      " (did you mean 'gradual_unfreeze'?)")
  assert options.did_you_mean(["zzz"], options.METHODS) == ""
  with pytest.raises(options.UsageError, match=r"adjst, l2 \(did you mean "
                     r"'adjust', 'l2sp'\?\); choose from recommended"):
    options.select_methods("adjst,l2")


def test_an_unknown_method_from_the_console_script(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "lrtransfer_cli", "run", "--methods", "l2_sp",
       "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "lrtransfer: error: unknown method(s) l2_sp (did you mean 'l2sp'?); "
      "choose from " + ", ".join([*options.METHODS, options.AUTO])]


# ---------------------------------------------------------------------------
# One set of label checks: the command's files and train.fit.

RNG = np.random.default_rng(0)
Y = np.arange(60) % 3
X = RNG.normal(size=(60, 6)).astype(np.float32)

BAD_LABELS = {
    "whole_floats": (Y.astype(np.float32), "float32 (60,)",
                     "(whole numbers stored as floats: pass "
                     "y.astype(np.int32))"),
    "one_hot": (np.eye(3, dtype=np.float32)[Y], "float32 (60, 3)",
                "(one-hot rows: pass y.argmax(-1))"),
    "column": (Y[:, None].astype(np.int32), "int32 (60, 1)",
               "(a column [n, 1]: pass y.ravel())"),
}


class _Net(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.head = nnx.Linear(6, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(x)


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_files_and_fit_refuse_the_same_labels_with_the_same_fix(case,
                                                                tmp_path):
  y, got, fix = BAD_LABELS[case]
  path = tmp_path / "target.npz"
  np.savez(path, x=X, y=y)
  with pytest.raises(data.DataError) as from_file:
    data.load_split_file(path)
  with pytest.raises(ValueError) as from_fit:
    train.fit(_Net(nnx.Rngs(0)), recipes.Recipe("c", 0.03), (X, y), (X, Y),
              epochs=1)
  expected = "must be integer class labels of shape [n]"
  for error, where in ((from_file, f"{path}: y "), (from_fit, "train.y ")):
    message = str(error.value)
    assert message.startswith(where + expected), message
    assert f"got {got} {fix}" in message, message


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_the_command_reports_the_fit_fix_for_a_file(case, tmp_path, capsys):
  y, got, fix = BAD_LABELS[case]
  source, target = tmp_path / "source.npz", tmp_path / "target.npz"
  np.savez(source, x=X, y=Y)
  np.savez(target, x=X, y=y)
  code = cli.main(["run", "--source-data", str(source), "--target-data",
                   str(target), "--out", str(tmp_path / "o"),
                   "--no-progress"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert err == [f"lrtransfer: error: {target}: y must be integer class "
                 f"labels of shape [n], got {got} {fix}"]


def test_csv_whole_number_labels_are_integers_fractions_are_not(tmp_path):
  whole = tmp_path / "whole.csv"
  whole.write_text("0.5,1,0\n1.5,2,1.0\n2.5,3,2\n")
  assert data.load_split_file(whole).y.tolist() == [0, 1, 2]
  fraction = tmp_path / "fraction.csv"
  fraction.write_text("0.5,1,0\n1.5,2,1.5\n")
  with pytest.raises(data.DataError, match=re.escape(
      f"{fraction}: the label column must be integer class labels of shape "
      "[n], got float64 (2,) (row 1 holds 1.5, not a class index)")):
    data.load_split_file(fraction)


def test_label_values_name_the_row_and_the_fix():
  with pytest.raises(ValueError, match=re.escape(
      "y holds label 3 (row 4) but the model has 3 outputs: labels must be "
      "in [0, 3) (1-based labels: pass y - 1")):
    labels.check_label_values(np.array([0, 1, 2, 1, 3]), "y", classes=3)
  with pytest.raises(data.DataError, match=re.escape("holds label -1 (row 2)")):
    labels.check_label_values(np.array([0, 1, -1]), "y",
                              error=data.DataError)
  labels.check_label_values(np.array([0, 1, 2]), "y", classes=3)  # fine


# ---------------------------------------------------------------------------
# results.json: numbers with their types, float32 noise rounded.


def test_json_rounds_float32_noise_and_keeps_types():
  payload = {"rate": 0.019999997690320015, "f32": np.float32(0.3),
             "count": np.int64(1), "flag": np.bool_(True), "nan": float("nan"),
             "inf": np.float32(np.inf), "seconds": 12.3456789012,
             "array": np.array([0.1, 0.2], np.float32)}
  assert report.strict_json(payload) == {
      "rate": 0.02, "f32": 0.3, "count": 1, "flag": True, "nan": None,
      "inf": None, "seconds": 12.34568, "array": [0.1, 0.2]}
  converted = report.strict_json(payload)
  assert type(converted["count"]) is int and type(converted["flag"]) is bool


def test_results_json_of_a_run_has_real_types(tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["run", "--epochs", "2", "--source-epochs", "1", "--seeds",
                   "2", "--methods", "constant,decay", "--out", str(out),
                   "--no-progress"]) == 0
  capsys.readouterr()
  results = json.loads((out / "results.json").read_text())
  assert type(results["device"]["device_count"]) is int
  assert results["settings"]["learning_rate"] == {"constant": 0.03,
                                                  "decay": 0.03}

  def floats(value):
    if isinstance(value, dict):
      return [f for v in value.values() for f in floats(v)]
    if isinstance(value, list):
      return [f for v in value for f in floats(v)]
    return [value] if isinstance(value, float) else []

  every = floats(results)
  digits = report.FLOAT_DIGITS
  assert every and all(float(f"{f:.{digits}g}") == f for f in every)
  # The rate, recorded in float32, reads as its decimal value.
  assert results["methods"]["decay"]["history_mean"]["group_lr"][0] == [
      0.03, 0.03, 0.03]
