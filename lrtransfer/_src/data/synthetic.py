"""Synthetic transfer tasks: labels from random teacher networks.

``teacher_student(similarity)`` mixes the source teacher with an independent
one; sweeping ``similarity`` from 1 (the source task again) to 0 (an
unrelated task) moves a task from positive to negative transfer.
"""

from __future__ import annotations

import math

import numpy as np

from lrtransfer._src.data.splitting import (
  check_shots,
  split_per_class,
  standardized_task,
)
from lrtransfer._src.data.types import TransferTask

# A small teacher in its near-linear range: a student learns it well from the
# source data (about 88% validation accuracy), so whether transfer helps depends
# on the teachers' similarity, not on a poorly learnt source task. With 16 or 64
# hidden units, or pre-activations of scale 1, the close task gained nothing
# from transfer in our runs.
_TEACHER_HIDDEN = 8
_TEACHER_PREACTIVATION_SCALE = 0.5
_SOURCE_TRAIN_SIZE = 4_000
_SOURCE_VAL_SIZE = 1_000
_TARGET_VAL_PER_CLASS = 50
_TARGET_TEST_PER_CLASS = 200


def _teacher_labels(weights, x) -> np.ndarray:
  w1, w2 = weights
  logits = np.tanh(x @ w1) @ w2
  # Per-class z-scores: a raw random teacher can leave a class nearly empty,
  # which a few-shot split per class could not sample.
  logits = (logits - logits.mean(0)) / logits.std(0)
  return logits.argmax(1).astype(np.int32)


def teacher_student(
    similarity: float,
    shots_per_class: int = 20,
    num_classes: int = 5,
    in_features: int = 32,
    seed: int = 0,
) -> TransferTask:
  """Synthetic task: labels from random teacher networks of tunable similarity.

  Inputs are ``x ~ N(0, I)`` for both tasks. A teacher is a one-hidden-layer
  tanh network with 8 hidden units, ``label = argmax(z(tanh(x W1) W2))``, with
  ``W1 ~ N(0, 0.25 / in_features)`` (pre-activations of scale 0.5),
  ``W2 ~ N(0, 1 / 8)`` and ``z`` a per-class standardisation of the logits over
  the sample (keeps the classes balanced). The target teacher mixes the source
  teacher with an independent one, weight matrix by weight matrix::

    W_target = similarity * W_source + sqrt(1 - similarity**2) * W_fresh

  With i.i.d. Gaussian entries this keeps the weights' variance, so only the
  *direction* of the labelling function moves: ``similarity=1`` is the source
  task again, ``similarity=0`` an unrelated task. In our runs (MLP (256, 128),
  SGD-momentum), fine-tuning a source model beat training from scratch by about
  4 points of target accuracy at similarity 0.9, and lost by about 19 points
  at 0.3 (negative transfer).

  Args:
    similarity: in ``[0, 1]``, how close the target teacher is to the source.
    shots_per_class: target training examples per class.
    num_classes: number of classes of both tasks.
    in_features: input dimension.
    seed: seed of every random choice (teachers and samples).

  Returns:
    A `TransferTask` with 4000 source training and 1000 source validation
    examples, and ``shots_per_class``/50/200 target train/val/test examples per
    class.
  """
  if not 0.0 <= similarity <= 1.0:
    raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
  check_shots(shots_per_class)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or (
      num_classes < 2
  ):
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
  if isinstance(in_features, bool) or not isinstance(in_features, int) or (
      in_features < 1
  ):
    raise ValueError(f"in_features must be a positive int, got {in_features!r}")

  rng = np.random.default_rng(seed)

  def random_teacher():
    return (
        rng.normal(size=(in_features, _TEACHER_HIDDEN))
        * (_TEACHER_PREACTIVATION_SCALE / math.sqrt(in_features)),
        rng.normal(size=(_TEACHER_HIDDEN, num_classes))
        / math.sqrt(_TEACHER_HIDDEN),
    )

  source_teacher = random_teacher()
  fresh = random_teacher()
  target_teacher = tuple(
      similarity * ws + math.sqrt(1.0 - similarity**2) * wf
      for ws, wf in zip(source_teacher, fresh)
  )

  n_source = _SOURCE_TRAIN_SIZE + _SOURCE_VAL_SIZE
  xs = rng.normal(size=(n_source, in_features)).astype(np.float32)
  ys = _teacher_labels(source_teacher, xs)
  # Four times the examples needed, so that every class (balanced only on
  # average) has enough for its per-class quota.
  pool = 4 * num_classes * (
      shots_per_class + _TARGET_VAL_PER_CLASS + _TARGET_TEST_PER_CLASS
  )
  xt = rng.normal(size=(pool, in_features)).astype(np.float32)
  yt = _teacher_labels(target_teacher, xt)
  # With many classes some logit can rarely (or never) win the argmax.
  for what, labels, need in (
      ("source", ys[:_SOURCE_TRAIN_SIZE], 1),
      ("target", yt, pool // (4 * num_classes) + 1),
  ):
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < need:
      raise ValueError(
          f"teacher_student: class {counts.argmin()} is too rare under the"
          f" {what} teacher ({counts.min()} of {len(labels)} examples, need"
          f" {need}); use fewer classes (num_classes={num_classes}) or"
          " another seed"
      )
  # Fixed counts per class; the pool's remainder is dropped.
  tgt_train, tgt_val, tgt_test, _ = split_per_class(
      yt,
      [shots_per_class, _TARGET_VAL_PER_CLASS, _TARGET_TEST_PER_CLASS],
      rng,
      what="teacher-student target pool",
  )
  source = (
      (xs[:_SOURCE_TRAIN_SIZE], ys[:_SOURCE_TRAIN_SIZE]),
      (xs[_SOURCE_TRAIN_SIZE:], ys[_SOURCE_TRAIN_SIZE:]),
  )
  return standardized_task(
      f"teacher_student(similarity={similarity})",
      f"random-teacher labels; target teacher = {similarity} * source teacher"
      " + independent part",
      source,
      tuple((xt[i], yt[i]) for i in (tgt_train, tgt_val, tgt_test)),
      num_source_classes=num_classes,
      num_target_classes=num_classes,
      shared_labels=True,  # Class k of both teachers: the same argmax slot.
  )
