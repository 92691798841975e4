"""Test configuration shared by the suite: the Hypothesis profiles."""

import os

from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples, so that a change
# passes or fails on its code, not on the draw. Local runs ("dev", the
# default) draw new examples each run, and replay any failure Hypothesis
# stored in .hypothesis/. HYPOTHESIS_PROFILE=ci reproduces CI's examples
# locally; .ci/run sets it. The property tests' own settings (example counts,
# deadline) set no seed, so the profile decides.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
_profile = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev")
settings.load_profile(_profile)
