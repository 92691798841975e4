"""Tests for the embedded transfer tasks and user data loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lrtransfer._src import data
from lrtransfer._src.data import DataError, Split, TransferTask

SPLITS = ("source_train", "source_val", "target_train", "target_val",
          "target_test")


def _splits(task: TransferTask) -> dict[str, Split]:
  return {name: getattr(task, name) for name in SPLITS}


def _rows(split: Split) -> set[bytes]:
  return {row.tobytes() for row in split.x}


def _assert_same_task(a: TransferTask, b: TransferTask):
  for name in SPLITS:
    np.testing.assert_array_equal(getattr(a, name).x, getattr(b, name).x)
    np.testing.assert_array_equal(getattr(a, name).y, getattr(b, name).y)


# ----------------------------------------------------------------------------
# Embedded tasks.

EXPECTED = {
    # name: (features, source classes, target classes, target shots per class)
    "digits_label_split": (64, 5, 5, 10),
    "digits_domain_shift": (64, 10, 10, 10),
    "teacher_student_close": (32, 5, 5, 20),
    "teacher_student_far": (32, 5, 5, 20),
}


# The four original tasks; the rest of the suite: tests/test_tasks_suite.py.
@pytest.fixture(scope="module", params=sorted(EXPECTED))
def task(request):
  return data.get_task(request.param)


def test_registry_names():
  assert set(EXPECTED) <= set(data.TASKS)


def test_task_shapes_and_classes(task):
  features, n_source, n_target, shots = EXPECTED[task.name]
  assert task.in_features == features
  assert (task.num_source_classes, task.num_target_classes) == (
      n_source, n_target)
  for name, split in _splits(task).items():
    assert split.x.dtype == np.float32 and split.y.dtype == np.int32, name
    assert split.x.shape == (len(split), features), name
    assert np.isfinite(split.x).all(), name
    n_classes = n_source if name.startswith("source") else n_target
    # Every class in every split, no label outside the range.
    np.testing.assert_array_equal(np.unique(split.y), np.arange(n_classes))
  np.testing.assert_array_equal(
      np.bincount(task.target_train.y), np.full(n_target, shots)
  )
  assert len(task.source_train) > 5 * len(task.target_train)


def test_task_splits_are_disjoint(task):
  rows = {name: _rows(split) for name, split in _splits(task).items()}
  for i, a in enumerate(SPLITS):
    for b in SPLITS[i + 1:]:
      assert not rows[a] & rows[b], (a, b)


def test_task_is_deterministic_and_seed_dependent(task):
  _assert_same_task(task, data.get_task(task.name))
  other = data.get_task(task.name, seed=1)
  assert not np.array_equal(task.target_train.x, other.target_train.x)


def test_task_is_standardised_with_source_train_statistics(task):
  x = task.source_train.x
  if task.name.startswith("digits"):  # One scale for all pixels.
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-3
  else:
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-3)


def test_label_split_targets_are_digits_5_to_9():
  task = data.digits_label_split(shots_per_class=3, seed=2)
  assert task.name == "digits_label_split"
  np.testing.assert_array_equal(np.unique(task.target_test.y), np.arange(5))
  np.testing.assert_array_equal(np.bincount(task.target_train.y), [3] * 5)
  # 1797 digits: the two halves of the label space use every image once.
  total = sum(len(s) for s in _splits(task).values())
  assert total == 1797


def test_domain_shift_uses_each_image_once_and_shifts_the_target():
  task = data.digits_domain_shift(seed=0)
  assert sum(len(s) for s in _splits(task).values()) == 1797
  # Shifted right: column 0 of every target image is background, which is
  # rare in the source.
  def column0(split):
    return split.x.reshape(-1, 8, 8)[:, :, 0]
  background = column0(task.target_test).min()
  assert np.all(column0(task.target_test) == background)
  assert not np.all(column0(task.source_train) == background)


def test_teacher_student_similarity_controls_transfer():
  # A classifier of the source task does as well on the target as on the
  # source when the teachers coincide, and far worse when they are far apart.
  def source_accuracy_on_target(similarity):
    task = data.teacher_student(similarity, shots_per_class=5, seed=0)
    classifier = LogisticRegression(max_iter=500).fit(
        task.source_train.x, task.source_train.y)
    return (classifier.score(task.source_val.x, task.source_val.y),
            classifier.score(task.target_test.x, task.target_test.y))

  on_source, same = source_accuracy_on_target(1.0)
  _, far = source_accuracy_on_target(0.3)
  assert abs(same - on_source) < 0.05
  assert far < same - 0.3
  close = data.get_task("teacher_student_close")
  far_task = data.get_task("teacher_student_far")
  # One source task; only the target teacher differs.
  np.testing.assert_array_equal(close.source_train.x, far_task.source_train.x)
  np.testing.assert_array_equal(close.source_train.y, far_task.source_train.y)


def test_teacher_student_options():
  task = data.teacher_student(0.5, shots_per_class=3, num_classes=3,
                              in_features=7, seed=4)
  assert task.in_features == 7
  np.testing.assert_array_equal(np.bincount(task.target_train.y), [3, 3, 3])


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (data.digits_label_split, dict(shots_per_class=0), "shots_per_class"),
        (data.digits_domain_shift, dict(shots_per_class=2.5),
         "shots_per_class"),
        (data.digits_label_split, dict(shots_per_class=500), "too few"),
        (data.teacher_student, dict(similarity=1.5), "similarity"),
        (data.teacher_student, dict(similarity=-0.1), "similarity"),
        (data.teacher_student, dict(similarity=0.5, num_classes=1),
         "num_classes"),
        (data.teacher_student, dict(similarity=0.5, in_features=0),
         "in_features"),
    ],
)
def test_builders_reject_bad_arguments(builder, kwargs, match):
  with pytest.raises(ValueError, match=match):
    builder(**kwargs)


def test_get_task_unknown_name():
  with pytest.raises(ValueError, match="unknown task 'nope'.*digits"):
    data.get_task("nope")


def test_split_validates_its_arrays():
  with pytest.raises(ValueError, match="float32"):
    Split(np.zeros((2, 3)), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match="rows"):
    Split(np.zeros((2, 3), np.float32), np.zeros(3, np.int32))


# ----------------------------------------------------------------------------
# User data.


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return path


def _dataset(n_per_class=10, classes=3, features=4, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per_class)
  x = rng.normal(size=(len(y), features)) + y[:, None]
  return x, y


def test_load_npz(tmp_path):
  x, y = _dataset()
  split = data.load_split_file(_write_npz(tmp_path / "a.npz", x=x, y=y))
  assert split.x.dtype == np.float32 and split.y.dtype == np.int32
  np.testing.assert_allclose(split.x, x, rtol=1e-6)
  np.testing.assert_array_equal(split.y, y)


@pytest.mark.parametrize("header", [True, False])
def test_load_csv(tmp_path, header):
  x, y = _dataset()
  path = tmp_path / "a.csv"
  table = np.column_stack([x, y])
  np.savetxt(path, table, delimiter=",",
             header="f0,f1,f2,f3,label" if header else "", comments="")
  split = data.load_split_file(str(path))
  np.testing.assert_allclose(split.x, x, rtol=1e-6)
  np.testing.assert_array_equal(split.y, y)


def test_load_user_task(tmp_path):
  xs, ys = _dataset(n_per_class=40, classes=4, features=5, seed=0)
  xt, yt = _dataset(n_per_class=10, classes=3, features=5, seed=1)
  task = data.load_user_task(
      _write_npz(tmp_path / "src.npz", x=xs, y=ys),
      _write_npz(tmp_path / "tgt.npz", x=xt, y=yt),
  )
  assert (task.num_source_classes, task.num_target_classes) == (4, 3)
  assert task.in_features == 5
  assert len(task.source_train) + len(task.source_val) == len(ys)
  assert sum(len(getattr(task, s)) for s in SPLITS[2:]) == len(yt)
  for name, split in _splits(task).items():
    n_classes = 4 if name.startswith("source") else 3
    np.testing.assert_array_equal(np.unique(split.y), np.arange(n_classes))
  # Per class 10 target examples: 2 val, 2 test, 6 train.
  np.testing.assert_array_equal(np.bincount(task.target_train.y), [6, 6, 6])
  # Features on one scale share one mean and scale (common_scale).
  np.testing.assert_allclose(task.source_train.x.mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(task.source_train.x.std(), 1.0, rtol=1e-5)
  # The target went through the source transform, not its own.
  assert np.abs(task.target_train.x.mean(0)).max() > 0.1
  rows = {name: _rows(split) for name, split in _splits(task).items()}
  assert not rows["target_train"] & rows["target_test"]
  # Deterministic given the seed.
  again = data.load_user_task(tmp_path / "src.npz", tmp_path / "tgt.npz")
  _assert_same_task(task, again)


def _error(tmp_path, name, writer) -> str:
  path = tmp_path / name
  writer(path)
  with pytest.raises(DataError) as info:
    data.load_split_file(path)
  message = str(info.value)
  assert name in message
  return message


def _text(content):
  return lambda path: path.write_text(content)


X, Y = _dataset()


@pytest.mark.parametrize(
    "name, writer, problem",
    [
        ("a.txt", _text("1,2\n"), "unsupported extension '.txt'"),
        ("a.npz", _text("not a zip"), "not a valid .npz"),
        ("a.npz",
         lambda p: p.write_bytes(
             _write_npz(p, x=X, y=Y).read_bytes()[:200]),
         "truncated or corrupt"),
        ("a.npz", lambda p: _write_npz(p, x=X), "missing key(s) ['y']"),
        ("a.npz", lambda p: _write_npz(p, features=X, y=Y), "['x']"),
        ("a.npz", lambda p: _write_npz(p, x=X[:, 0], y=Y), "x must be 2-D"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y[:, None]),
         "column [n, 1]: pass y.ravel()"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y[:-1]),
         "30 rows but y has 29"),
        ("a.npz", lambda p: _write_npz(p, x=X[:0], y=Y[:0]), "0 rows"),
        ("a.npz", lambda p: _write_npz(p, x=X[:, :0], y=Y), "0 feature"),
        ("a.npz", lambda p: _write_npz(p, x=X.astype(str), y=Y),
         "x must be numeric"),
        ("a.npz", lambda p: _write_npz(p, x=X.astype(object), y=Y),
         "object (pickled) arrays"),
        ("a.npz", lambda p: _write_npz(p, x=np.where(X > 2, np.nan, X), y=Y),
         "NaN/inf"),
        ("a.npz", lambda p: _write_npz(p, x=np.where(X > 2, np.inf, X), y=Y),
         "NaN/inf"),
        ("a.npz", lambda p: _write_npz(p, x=X * 1e300, y=Y), "float32 range"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y + 0.5),
         "holds 0.5, not a class index"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y.astype(str)),
         "y must be integer class labels"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y - 1), "holds label -1"),
        ("a.npz", lambda p: _write_npz(p, x=X, y=Y * 100_000),
         "more than the 10000 supported"),
        ("a.csv", _text(""), "no data rows"),
        ("a.csv", _text("a,b,label\n"), "no data rows"),
        ("a.csv", _text("1,2,0\n3,abc,1\n"), "abc"),
        ("a.csv", _text("1,abc,0\n3,2,1\n"), "abc"),  # Not a header.
        ("a.csv", _text("1,2,0\n3,1\n"), "malformed"),
        ("a.csv", _text("0\n1\n"), "at least 2 columns"),
        ("a.csv", _text("1,nan,0\n3,1,1\n"), "NaN/inf"),
        ("a.csv", _text("1,2,0.5\n3,1,1\n"),
         "label column must be integer class labels"),
        ("a.csv", _text("1,2,-1\n3,1,1\n"),
         "label column holds label -1 (row 0)"),
        ("a.csv", lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "cannot read"),
    ],
)
def test_load_split_file_errors(tmp_path, name, writer, problem):
  message = _error(tmp_path, name, writer)
  assert problem in message, message


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match="nope.npz: file not found"):
    data.load_split_file(tmp_path / "nope.npz")


def test_user_task_errors(tmp_path):
  xs, ys = _dataset(features=4)
  good = _write_npz(tmp_path / "src.npz", x=xs, y=ys)

  def target_error(x, y, **kwargs) -> str:
    path = _write_npz(tmp_path / "tgt.npz", x=x, y=y)
    with pytest.raises(DataError) as info:
      data.load_user_task(good, path, **kwargs)
    return str(info.value)

  xt, yt = _dataset(features=3)
  message = target_error(xt, yt)
  assert "feature counts differ" in message
  assert "src.npz has 4" in message and "tgt.npz has 3" in message

  xt, yt = _dataset(n_per_class=2)
  message = target_error(xt, yt)
  assert "tgt.npz" in message and "class 0 has 2 examples, too few" in message

  xt, yt = _dataset()
  message = target_error(xt, np.where(yt == 1, 3, yt))
  assert "tgt.npz" in message and "no examples of class(es) [1]" in message
  assert message.endswith("relabel to 0..2 (e.g. np.unique(y, "
                          "return_inverse=True)[1])")
  message = target_error(xt, yt + 5)  # labels 5.. : an offset
  assert "no examples of class(es) [0, 1, 2, 3, 4]" in message
  assert message.endswith(f"relabel to 0..{yt.max()} (e.g. y - 5)")

  message = target_error(xt, np.zeros_like(yt))
  assert "tgt.npz" in message and "at least 2 classes" in message


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(val_fraction=0.0), "val_fraction"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(val_fraction=0.5, test_fraction=0.5), "< 1"),
    ],
)
def test_user_task_rejects_bad_fractions(tmp_path, kwargs, match):
  x, y = _dataset()
  path = _write_npz(tmp_path / "a.npz", x=x, y=y)
  with pytest.raises(ValueError, match=match):
    data.load_user_task(path, path, **kwargs)


def test_task_is_frozen(task):
  with pytest.raises(dataclasses.FrozenInstanceError):
    task.name = "other"


# ----------------------------------------------------------------------------
# Split dtypes and ranks, the user's own splits, shots, standardisation.


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint8, np.uint32])
def test_split_accepts_any_integer_labels_that_fit_int32(dtype):
  split = Split(np.zeros((3, 2), np.float32), np.array([0, 1, 2], dtype))
  assert split.y.dtype == np.int32
  np.testing.assert_array_equal(split.y, [0, 1, 2])


def test_split_refuses_labels_beyond_int32_and_non_integers():
  x = np.zeros((1, 2), np.float32)
  with pytest.raises(ValueError, match="outside the int32 range"):
    Split(x, np.array([2**31], np.int64))
  with pytest.raises(ValueError, match="integer labels"):
    Split(x, np.array([0.0]))
  with pytest.raises(ValueError, match="at least 2-D"):
    Split(np.zeros(3, np.float32), np.zeros(3, np.int32))


def test_split_takes_images_of_any_rank():
  split = Split(np.zeros((4, 8, 8, 1), np.float32), np.arange(4))
  assert split.feature_shape == (8, 8, 1)
  assert split.num_features == 64


def test_user_task_from_explicit_splits(tmp_path):
  files = {}
  for name, (n, seed) in {"s_train": (20, 0), "s_val": (5, 1),
                          "t_train": (8, 2), "t_val": (4, 3),
                          "t_test": (6, 4)}.items():
    x, y = _dataset(n_per_class=n, seed=seed)
    files[name] = _write_npz(tmp_path / f"{name}.npz", x=x, y=y)
  task = data.load_user_task((files["s_train"], files["s_val"]),
                             (files["t_train"], files["t_val"],
                              files["t_test"]))
  sizes = [len(getattr(task, s)) for s in SPLITS]
  assert sizes == [60, 15, 24, 12, 18]  # the files as given, not re-split


def test_user_task_refuses_a_val_label_missing_from_train(tmp_path):
  x, y = _dataset()
  train = _write_npz(tmp_path / "train.npz", x=x[y < 2], y=y[y < 2])
  val = _write_npz(tmp_path / "val.npz", x=x, y=y)
  with pytest.raises(DataError, match="val.npz: label 2 does not occur"):
    data.load_user_task((train, val), (train, val, val))


def test_user_task_shots_subsample_the_target_training_split(tmp_path):
  x, y = _dataset(n_per_class=30)
  path = _write_npz(tmp_path / "a.npz", x=x, y=y)
  task = data.load_user_task(path, path, shots_per_class=5)
  np.testing.assert_array_equal(np.bincount(task.target_train.y), [5, 5, 5])
  with pytest.raises(DataError, match="fewer than the 50 shots"):
    data.load_user_task(path, path, shots_per_class=50)


def test_pixel_like_features_share_one_scale_tabular_ones_do_not():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 17, size=(50, 64)).astype(float)
  pixels[:, 0] = 0.0  # a blank border pixel
  pixels[:3, 1] = 1.0  # almost blank
  assert data.splitting.common_scale(pixels)
  table = np.stack([rng.normal(size=50), 1e4 * rng.normal(size=50)], 1)
  assert not data.splitting.common_scale(table)


@pytest.mark.parametrize("mode", ["source", "target", "none"])
def test_standardize_modes(tmp_path, mode):
  xs, ys = _dataset(n_per_class=30)
  xt, yt = _dataset(n_per_class=30, seed=1)
  task = data.load_user_task(
      _write_npz(tmp_path / "s.npz", x=xs, y=ys),
      _write_npz(tmp_path / "t.npz", x=3 * xt + 5, y=yt), standardize=mode)
  target_mean = float(task.target_train.x.mean())
  expected = {"source": lambda m: m > 1.0,  # the shift stays visible
              "target": lambda m: abs(m) < 1e-5,  # its own frame
              "none": lambda m: m > 5.0}[mode]
  assert expected(target_mean), target_mean


def test_keep_head_check_refuses_a_new_label_set():
  with pytest.raises(DataError, match="same label set"):
    data.get_task("digits_label_split").check_keep_head()
  data.get_task("digits_domain_shift").check_keep_head()  # same digits
