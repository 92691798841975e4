"""Test configuration shared by the suite: Hypothesis profiles, fixtures."""

import os

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples, so that a change
# passes or fails on its code, not on the draw. Local runs ("dev", the
# default) draw new examples each run, and replay any failure Hypothesis
# stored in .hypothesis/. HYPOTHESIS_PROFILE=ci reproduces CI's examples
# locally; .ci/run sets it. The property tests' own settings (example counts,
# deadline) set no seed, so the profile decides.
settings.register_profile("ci", derandomize=True, print_blob=True)
# Explicit: under CI=true Hypothesis itself defaults to derandomize=True, and
# a bare profile would inherit that.
settings.register_profile("dev", derandomize=False)
_profile = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev")
settings.load_profile(_profile)


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory) -> dict[str, str]:
  """The environment for test subprocesses, with one on-disk JAX cache.

  Tests that start the same program in several processes (a reference run,
  a killed run, its resumption) compile it once: the later processes load
  the executable the first one stored, which computes bit for bit the same.
  """
  env = dict(os.environ)
  env.update(
      JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
      # Store every program, however small or quick to compile.
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env
