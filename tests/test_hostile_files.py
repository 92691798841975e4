"""Broken data files and bad arguments, through the loaders and the CLI.

Every broken file must end in ``lrtransfer.data.DataError`` whose message names the
file and the problem; through ``lrtransfer run`` it must end with exit status
2, one ``lrtransfer: error: ...`` line on stderr, no traceback and no
``results.json``. Bad arguments exit with status 2 and say what is wrong.

The tests at the end pin loader defects these tests found (and that were
fixed): damaged zip members, lying .npy headers, CSV byte-order marks.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lrtransfer
from lrtransfer._src import cli

FEATURES = 8
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _xy(rows=60, classes=3, features=FEATURES, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(rows) % classes
  x = rng.normal(size=(rows, features)) + y[:, None]
  return x.astype(np.float32), y.astype(np.int64)


def _npz(path: Path, **arrays) -> Path:
  with open(path, "wb") as f:  # np.savez would append ".npz" to odd names
    np.savez(f, **arrays)
  return path


def _valid(tmp_path: Path, name="valid.npz", rows=60, features=FEATURES,
           seed=0) -> Path:
  x, y = _xy(rows, features=features, seed=seed)
  return _npz(tmp_path / name, x=x, y=y)


def _truncated(tmp_path, fraction):
  full = _valid(tmp_path, "full.npz").read_bytes()
  path = tmp_path / "truncated.npz"
  path.write_bytes(full[:int(len(full) * fraction)])
  return path


def _csv(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return path


def _bytes(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  return path


def _csv_rows(rows=30, features=FEATURES):
  x, y = _xy(rows, features=features)
  return "".join(",".join(f"{v:.4f}" for v in row) + f",{label}\n"
                 for row, label in zip(x, y))


def _npy_named_npz(tmp_path):
  path = tmp_path / "array.npz"
  with open(path, "wb") as f:
    np.save(f, x60)  # a bare .npy, not an archive
  return path


x60, y60 = _xy(60)
CORRUPT = r"truncated or corrupt|cannot read"

# name -> (builder(tmp_path) -> broken file, fragment the message must hold)
BROKEN_FILES = {
    "truncated_half": (lambda d: _truncated(d, 0.5), CORRUPT),
    "truncated_header": (lambda d: _truncated(d, 0.02), CORRUPT),
    "truncated_tail": (lambda d: _truncated(d, 0.98), CORRUPT),
    "empty_npz": (lambda d: _csv(d, "empty.npz", ""), CORRUPT),
    "text_as_npz": (lambda d: _csv(d, "text.npz", "1,2,3\n"), CORRUPT),
    "npy_named_npz": (lambda d: _npy_named_npz(d), CORRUPT),
    "string_x": (lambda d: _npz(d / "s.npz", x=x60.astype(str), y=y60),
                 "x must be numeric"),
    "object_x": (lambda d: _npz(d / "o.npz", x=x60.astype(object), y=y60),
                 r"(?i)object.*pickle|pickle.*object"),
    "complex_x": (lambda d: _npz(d / "c.npz", x=x60 + 1j, y=y60),
                  "x must be numeric"),
    "string_y": (lambda d: _npz(d / "sy.npz", x=x60, y=y60.astype(str)),
                 "y must be integer class labels"),
    "complex_y": (lambda d: _npz(d / "cy.npz", x=x60, y=y60 + 0j),
                  "y must be integer class labels"),
    "fractional_y": (lambda d: _npz(d / "fy.npz", x=x60, y=y60 + 0.5),
                     "not a class index"),
    "nan_y": (lambda d: _npz(d / "ny.npz", x=x60,
                             y=np.where(y60 == 2, np.nan, y60)),
              "holds nan, not a class index"),
    "negative_y": (lambda d: _npz(d / "neg.npz", x=x60, y=y60 - 1),
                   "holds label -1"),
    "nan_features": (lambda d: _npz(d / "nan.npz",
                                    x=np.where(x60 > 1.5, np.nan, x60),
                                    y=y60), "NaN/inf"),
    "inf_features": (lambda d: _npz(d / "inf.npz", x=np.full((60, 8), -np.inf),
                                    y=y60), "NaN/inf"),
    "beyond_float32": (lambda d: _npz(d / "big.npz", x=x60.astype(np.float64) * 1e300, y=y60),
                       "beyond float32"),
    "mismatched_lengths": (lambda d: _npz(d / "len.npz", x=x60, y=y60[:-1]),
                           r"x has 60 rows but y has 59 labels"),
    "zero_rows": (lambda d: _npz(d / "zero.npz",
                                 x=np.zeros((0, FEATURES), np.float32),
                                 y=np.zeros(0, np.int64)), "0 rows"),
    "zero_features": (lambda d: _npz(d / "nofeat.npz",
                                     x=np.zeros((60, 0), np.float32), y=y60),
                      "0 feature columns"),
    "million_classes": (lambda d: _npz(d / "million.npz", x=x60,
                                       y=np.where(y60 == 2, 10**6, y60)),
                        "implies 1000001 classes"),
    "x_3d": (lambda d: _npz(d / "x3d.npz", x=x60.reshape(60, 2, 4), y=y60),
             "x must be 2-D"),
    "x_1d": (lambda d: _npz(d / "x1d.npz", x=x60[:, 0], y=y60),
             "x must be 2-D"),
    "y_2d": (lambda d: _npz(d / "y2d.npz", x=x60, y=y60[:, None]),
             r"column \[n, 1\]: pass y\.ravel\(\)"),
    "missing_y": (lambda d: _npz(d / "noy.npz", x=x60), r"missing key\(s\) \['y'\]"),
    "missing_x": (lambda d: _npz(d / "nox.npz", y=y60), r"missing key\(s\) \['x'\]"),
    "wrong_keys": (lambda d: _npz(d / "keys.npz", features=x60, labels=y60),
                   r"missing key\(s\) \['x', 'y'\]"),
    "csv_text_cell": (lambda d: _csv(d, "text.csv",
                                     "1,2,0\n3,4,1\n5,abc,0\n6,7,1\n"),
                      "could not convert string 'abc'"),
    "csv_empty": (lambda d: _csv(d, "empty.csv", ""), "no data rows"),
    "csv_header_only": (lambda d: _csv(d, "header.csv", "a,b,label\n"),
                        "no data rows"),
    "csv_one_column": (lambda d: _csv(d, "one.csv", "0\n1\n0\n1\n"),
                       "needs at least 2 columns"),
    "csv_ragged": (lambda d: _csv(d, "ragged.csv", "1,2,0\n3,4,1\n5,1\n"),
                   "number of columns changed"),
    "csv_not_utf8": (lambda d: _bytes(d, "latin.csv", b"1,2,0\n3,\xe9,1\n"),
                     "cannot read .csv"),
    "csv_fractional_label": (lambda d: _csv(d, "frac.csv",
                                            "1,2,0\n3,4,1.5\n"),
                             "label column must be integer class labels"),
    "missing_file": (lambda d: d / "nosuch.npz", "file not found"),
    "unsupported_extension": (lambda d: _csv(d, "data.txt", "1,2,0\n"),
                              "unsupported extension"),
}

# Files that load alone but cannot make a task with a valid partner.
BROKEN_TASKS = {
    "one_class": (lambda d: _npz(d / "one.npz", x=x60, y=np.zeros(60, int)),
                  "needs at least 2 classes"),
    "class_gap": (lambda d: _npz(d / "gap.npz", x=x60, y=y60 * 2),
                  r"no examples of class\(es\) \[1, 3\]"),
    "class_too_small": (lambda d: _npz(d / "small.npz", x=x60,
                                       y=np.where(np.arange(60) == 0, 3, y60)),
                        "class 3 has 1 examples"),
}


def _run_cli(argv, capsys):
  """(exit status, stdout, stderr) of ``lrtransfer`` in this process."""
  try:
    code = cli.main(argv)
  except SystemExit as exit_:
    code = exit_.code
  out, err = capsys.readouterr()
  return code, out, err


def _run_args(source, target, out):
  return ["run", "--source-data", str(source), "--target-data", str(target),
          "--out", str(out), "--epochs", "1", "--seeds", "1", "--no-progress"]


def _assert_one_error_line(err, *fragments, problem=None):
  """One ``lrtransfer: error:`` line holding every fragment (and problem)."""
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("lrtransfer: error: "), err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, err)
  if problem is not None:
    assert re.search(problem, lines[0]), (problem, err)


# ---------------------------------------------------------------------------
# Loaders.


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_load_split_file_names_file_and_problem(case, tmp_path):
  build, problem = BROKEN_FILES[case]
  path = build(tmp_path)
  with pytest.raises(lrtransfer.data.DataError) as error:
    lrtransfer.data.load_split_file(path)
  assert str(path) in str(error.value)
  assert re.search(problem, str(error.value)), (problem, str(error.value))


@pytest.mark.parametrize("role", ["source", "target"])
@pytest.mark.parametrize("case", sorted(BROKEN_FILES) + sorted(BROKEN_TASKS))
def test_load_user_task_names_file_and_problem(case, role, tmp_path):
  build, problem = {**BROKEN_FILES, **BROKEN_TASKS}[case]
  broken, valid = build(tmp_path), _valid(tmp_path)
  pair = (broken, valid) if role == "source" else (valid, broken)
  with pytest.raises(lrtransfer.data.DataError) as error:
    lrtransfer.data.load_user_task(*pair)
  assert str(broken) in str(error.value)
  assert re.search(problem, str(error.value)), (problem, str(error.value))


def test_mismatched_feature_counts_name_both_files(tmp_path):
  source = _valid(tmp_path, "source.npz", features=FEATURES)
  target = _csv(tmp_path, "target.csv", _csv_rows(features=FEATURES - 3))
  with pytest.raises(lrtransfer.data.DataError) as error:
    lrtransfer.data.load_user_task(source, target)
  message = str(error.value)
  assert "feature counts differ" in message
  assert f"{source} has {FEATURES}" in message
  assert f"{target} has {FEATURES - 3}" in message


def test_every_truncation_of_an_npz_is_a_data_error(tmp_path):
  # Small arrays keep the file small enough to try every cut.
  x, y = _xy(rows=6, features=3)
  for save in (np.savez, np.savez_compressed):
    buffer = io.BytesIO()
    save(buffer, x=x, y=y)
    full = buffer.getvalue()
    path = tmp_path / f"{save.__name__}.npz"
    for cut in range(len(full)):
      path.write_bytes(full[:cut])
      with pytest.raises(lrtransfer.data.DataError, match=CORRUPT):
        lrtransfer.data.load_split_file(path)


# ---------------------------------------------------------------------------
# The CLI on broken files.


@pytest.mark.parametrize("role", ["source", "target"])
@pytest.mark.parametrize("case", sorted(BROKEN_FILES) + sorted(BROKEN_TASKS))
def test_cli_reports_broken_file_in_one_line(case, role, tmp_path, capsys):
  build, problem = {**BROKEN_FILES, **BROKEN_TASKS}[case]
  broken, valid = build(tmp_path), _valid(tmp_path)
  pair = (broken, valid) if role == "source" else (valid, broken)
  out = tmp_path / "out"
  code, _, err = _run_cli(_run_args(*pair, out), capsys)
  assert code == 2
  _assert_one_error_line(err, str(broken), problem=problem)
  assert not (out / "results.json").exists()


def test_cli_reports_mismatched_feature_counts(tmp_path, capsys):
  source = _valid(tmp_path, "source.npz", features=FEATURES)
  target = _valid(tmp_path, "target.npz", features=FEATURES + 1)
  out = tmp_path / "out"
  code, _, err = _run_cli(_run_args(source, target, out), capsys)
  assert code == 2
  _assert_one_error_line(err, "feature counts differ", str(source),
                         str(target))
  assert not (out / "results.json").exists()


def test_cli_failure_removes_results_of_an_earlier_run(tmp_path, capsys):
  out = tmp_path / "out"
  out.mkdir()
  (out / "results.json").write_text("{}")
  code, _, err = _run_cli(
      _run_args(_truncated(tmp_path, 0.5), _valid(tmp_path), out), capsys)
  assert code == 2
  _assert_one_error_line(err, problem=CORRUPT)
  assert not (out / "results.json").exists()


def _console_command():
  script = Path(sys.executable).with_name("lrtransfer")
  if script.is_file() and os.access(script, os.X_OK):
    return [str(script)]
  return [sys.executable, "-m", "lrtransfer._src.cli"]


def test_console_script_exit_code_on_broken_file(tmp_path):
  broken, valid = _truncated(tmp_path, 0.5), _valid(tmp_path)
  out = tmp_path / "out"
  proc = subprocess.run(_console_command() + _run_args(broken, valid, out),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  _assert_one_error_line(proc.stderr, str(broken), problem=CORRUPT)
  assert not (out / "results.json").exists()


# ---------------------------------------------------------------------------
# Bad arguments.


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "must be >= 1, got 0"),
    (["--epochs", "many"], "expected a whole number"),
    (["--seeds", "-2"], "must be >= 1"),
    (["--lr", "nan"], "must be a finite number > 0"),
    (["--lr", "inf"], "must be a finite number > 0"),
    (["--lr", "-0.1"], "must be a finite number > 0"),
    (["--task", "nosuch"], "unknown task 'nosuch'"),
    (["--task", "digits_labl_split"],
     "(did you mean 'digits_label_split'?)"),
])
def test_bad_argument_values_exit_2_via_argparse(args, message, tmp_path,
                                                 capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(["run", "--out", str(tmp_path / "out"), "--no-progress", *args])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err
  assert not (tmp_path / "out").exists()


def test_missing_command_exits_2(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main([])
  assert exit_.value.code == 2
  assert "required" in capsys.readouterr().err


def test_unknown_method_exits_2(tmp_path, capsys):
  code, _, err = _run_cli(["run", "--methods", "constant,nosuch", "--out",
                           str(tmp_path / "out"), "--no-progress"], capsys)
  assert code == 2
  _assert_one_error_line(err, "unknown method(s) nosuch", "choose from",
                         "constant")


def test_empty_method_list_exits_2(tmp_path, capsys):
  code, _, err = _run_cli(["run", "--methods", " , ", "--out",
                           str(tmp_path / "out"), "--no-progress"], capsys)
  assert code == 2
  _assert_one_error_line(err, "unknown method(s)")


@pytest.mark.parametrize("given", ["--source-data", "--target-data"])
def test_source_and_target_data_go_together(given, tmp_path, capsys):
  code, _, err = _run_cli(["run", given, str(_valid(tmp_path)), "--out",
                           str(tmp_path / "out"), "--no-progress"], capsys)
  assert code == 2
  _assert_one_error_line(err, "--source-data and --target-data go together")
  assert not (tmp_path / "out" / "results.json").exists()


def test_out_pointing_at_a_file_exits_2(tmp_path, capsys):
  out = tmp_path / "out.txt"
  out.write_text("keep me")
  code, _, err = _run_cli(
      _run_args(_valid(tmp_path, "s.npz"), _valid(tmp_path, "t.npz"), out),
      capsys)
  assert code == 2
  _assert_one_error_line(err, str(out), "exists and is not a folder")
  assert out.read_text() == "keep me"


def test_out_below_a_file_exits_2(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("")
  code, _, err = _run_cli(
      _run_args(_valid(tmp_path, "s.npz"), _valid(tmp_path, "t.npz"),
                blocker / "out"), capsys)
  assert code == 2
  _assert_one_error_line(err)


# ---------------------------------------------------------------------------
# A valid tiny pair runs end to end.


def test_valid_tiny_user_data_runs_end_to_end(tmp_path, capsys):
  source = _valid(tmp_path, "source.npz", rows=60, seed=1)
  # The target as a CSV with a header line, to cover both formats.
  target = _csv(tmp_path, "target.csv",
                ",".join(f"f{i}" for i in range(FEATURES)) + ",label\n"
                + _csv_rows(rows=30))
  out = tmp_path / "out"
  code, printed, err = _run_cli(
      ["run", "--source-data", str(source), "--target-data", str(target),
       "--out", str(out), "--epochs", "2", "--source-epochs", "2",
       "--seeds", "1", "--methods", "constant,adjust", "--no-progress"],
      capsys)
  assert code == 0, err
  assert "Traceback" not in err
  assert "constant" in printed and "adjust" in printed
  results = json.loads((out / "results.json").read_text())
  assert results["task"] == "source->target"
  assert set(results["methods"]) == {"constant", "adjust"}
  assert results["settings"]["epochs"] == 2
  for method in results["methods"].values():
    assert len(method["test_accuracy"]) == 1
    assert 0.0 <= method["test_accuracy_mean"] <= 1.0
  for png in ("learning_rate.png", "val_accuracy.png"):
    assert (out / png).read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------
# CSV edge cases that work.


def test_empty_csv_gives_only_the_error_no_warning(tmp_path):
  path = _csv(tmp_path, "empty.csv", "")
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with pytest.raises(lrtransfer.data.DataError, match="no data rows"):
      lrtransfer.data.load_split_file(path)
  assert [str(w.message) for w in caught] == []


# ---------------------------------------------------------------------------
# Damaged archives and unusual encodings: a data error naming the file, or
# every row read.


def _zip_patched(tmp_path, name, patch):
  """A valid compressed .npz whose x.npy member is damaged by ``patch``."""
  x, y = _xy(60)
  buffer = io.BytesIO()
  np.savez_compressed(buffer, x=x, y=y)
  data = bytearray(buffer.getvalue())
  with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
    info = archive.getinfo("x.npy")
  patch(data, info)
  path = tmp_path / name
  path.write_bytes(bytes(data))
  return path


def _garbage_deflate_stream(data, info):
  # Local header: 30 bytes, then the name and the extra field.
  start = info.header_offset + 30
  name_len, extra_len = np.frombuffer(
      bytes(data[info.header_offset + 26:start]), "<u2")
  start += int(name_len) + int(extra_len)
  data[start:start + info.compress_size] = b"\xff" * info.compress_size


def _central_record(data, info):
  """Offset of the member's central directory record."""
  name = info.filename.encode()
  offset = bytes(data).find(b"PK\x01\x02")
  while bytes(data[offset + 46:offset + 46 + len(name)]) != name:
    offset = bytes(data).find(b"PK\x01\x02", offset + 4)
    assert offset >= 0, "no central directory record"
  return offset


def _unknown_compression(data, info):
  offset = _central_record(data, info)
  data[offset + 10:offset + 12] = (99).to_bytes(2, "little")


def _encrypted_flag(data, info):
  offset = _central_record(data, info)
  data[offset + 8] |= 0x01


def _lying_header_npz(tmp_path, name="lying.npz"):
  """A well-formed archive whose x.npy header claims 10**13 rows."""
  path = tmp_path / name
  header = io.BytesIO()
  np.lib.format.write_array(header, x60)
  x_bytes = header.getvalue().replace(b"(60, 8)", b"(10000000000000, 8)")
  labels = io.BytesIO()
  np.lib.format.write_array(labels, y60)
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("x.npy", x_bytes)
    archive.writestr("y.npy", labels.getvalue())
  return path


CORRUPT_ARCHIVES = {
    # zlib.error escapes.
    "garbage_deflate_stream": lambda d: _zip_patched(
        d, "garbage.npz", _garbage_deflate_stream),
    # NotImplementedError escapes.
    "unknown_compression": lambda d: _zip_patched(
        d, "method.npz", _unknown_compression),
    # RuntimeError ("password required") escapes.
    "encrypted_flag": lambda d: _zip_patched(d, "encrypted.npz",
                                             _encrypted_flag),
    # MemoryError escapes: numpy allocates the claimed shape before reading.
    "lying_shape_header": _lying_header_npz,
}
# Unchecked, each would escape _read_npz as zlib.error, NotImplementedError,
# RuntimeError or MemoryError: a traceback and exit status 1 from the CLI.


@pytest.mark.parametrize("case", sorted(CORRUPT_ARCHIVES))
def test_damaged_archive_member_is_a_data_error(case, tmp_path):
  path = CORRUPT_ARCHIVES[case](tmp_path)
  with pytest.raises(lrtransfer.data.DataError) as error:
    lrtransfer.data.load_split_file(path)
  assert str(path) in str(error.value)


def test_cli_reports_damaged_archive_member(tmp_path, capsys):
  path = CORRUPT_ARCHIVES["garbage_deflate_stream"](tmp_path)
  out = tmp_path / "out"
  code, _, err = _run_cli(_run_args(path, _valid(tmp_path), out), capsys)
  assert code == 2
  _assert_one_error_line(err, str(path))


def test_csv_with_byte_order_mark_loads_every_row(tmp_path):
  path = tmp_path / "bom.csv"
  path.write_text("\ufeff" + _csv_rows(rows=6), encoding="utf-8")
  assert len(lrtransfer.data.load_split_file(path)) == 6
