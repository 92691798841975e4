"""Eager validation of Python-number hyperparameters.

Optax factories check their hyperparameters when the transformation is built,
so a bad value fails at construction with a message naming it, not as a silent
wrong learning rate after compilation. Values that are not concrete Python
numbers (for example arrays injected by ``optax.inject_hyperparams``, which
calls the factory with traced values) are skipped: a Python ``if`` on a tracer
would fail, and those values are the user's responsibility at run time.
Anything else that is not a number (a string such as ``"3"`` or ``"nan"``,
None, a list, a NumPy array) is refused with a ValueError naming it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NoReturn

import jax


def is_concrete_number(value: Any) -> bool:
  """True for Python (or NumPy scalar) numbers, False for arrays and tracers."""
  return isinstance(value, numbers.Number) and not isinstance(value, bool)


def is_jax_value(value: Any) -> bool:
  """A JAX array or tracer: what ``optax.inject_hyperparams`` passes."""
  return isinstance(value, (jax.Array, jax.core.Tracer))


def all_concrete(*values: Any) -> bool:
  """True when every value is a concrete Python number (safe for ``if``)."""
  return all(is_concrete_number(v) for v in values)


def check_number(name: str, value: Any) -> None:
  """A real number (not bool, not complex) or a JAX array/tracer."""
  if is_jax_value(value):
    return
  if (not is_concrete_number(value)
      or not isinstance(value, numbers.Real)):
    raise ValueError(f"{name} must be a number, got {name}={value!r} "
                     f"({type(value).__name__})")


def _fail(name: str, value: Any, requirement: str) -> NoReturn:
  raise ValueError(f"{name} must be {requirement}, got {name}={value!r}")


# Hyperparameters become float32 / int32 arrays inside the transformations.
FLOAT32_MAX = 3.4028234663852886e38
INT32_MAX = 2**31 - 1


def check_finite(name: str, value: Any) -> None:
  """Finite, and finite in float32 (where the value is used).

  Every numeric check goes through here, so a bool (``True`` is an ``int``
  to Python) is refused wherever a number is expected.
  """
  if isinstance(value, bool):
    _fail(name, value, "a number, not a bool")
  check_number(name, value)
  if is_concrete_number(value) and not (
      math.isfinite(value) and abs(value) <= FLOAT32_MAX):
    _fail(name, value, "a finite number within the float32 range")


def check_positive(name: str, value: Any) -> None:
  check_finite(name, value)
  if is_concrete_number(value) and not value > 0:
    _fail(name, value, "> 0")


def check_non_negative(name: str, value: Any) -> None:
  check_finite(name, value)
  if is_concrete_number(value) and not value >= 0:
    _fail(name, value, ">= 0")


def check_int(name: str, value: Any, minimum: int) -> None:
  """Integer (not bool, not float) and at least ``minimum``."""
  if not isinstance(value, bool):
    check_number(name, value)
  if isinstance(value, bool) or (
      is_concrete_number(value) and not float(value).is_integer()):
    _fail(name, value, f"an integer >= {minimum}")
  if is_concrete_number(value) and not minimum <= value <= INT32_MAX:
    _fail(name, value, f"an integer in [{minimum}, {INT32_MAX}]")


def check_in_interval(name: str, value: Any, low: float, high: float,
                      *, low_open: bool = False, high_open: bool = False
                      ) -> None:
  check_finite(name, value)
  if not is_concrete_number(value):
    return
  too_low = value <= low if low_open else value < low
  too_high = value >= high if high_open else value > high
  if too_low or too_high:
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    _fail(name, value, f"in {left}{low}, {high}{right}")


def check_bool(name: str, value: Any) -> None:
  """A Python bool; a string such as ``"False"``, a number or an array is
  refused (the rules that take one are frozen, hashable configs, never
  traced)."""
  if not isinstance(value, bool):
    _fail(name, value, "True or False")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    _fail(name, value, "one of " + ", ".join(repr(c) for c in choices))


def check_bounds(min_name: str, min_value: Any, max_name: str,
                 max_value: Any) -> None:
  """``0 <= min <= max``, max finite and positive."""
  check_non_negative(min_name, min_value)
  check_positive(max_name, max_value)
  if (is_concrete_number(min_value) and is_concrete_number(max_value)
      and min_value > max_value):
    raise ValueError(
        f"{min_name} must be <= {max_name}, got {min_name}={min_value!r} > "
        f"{max_name}={max_value!r}")
