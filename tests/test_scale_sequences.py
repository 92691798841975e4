"""Every strategy's scales on fixed metric sequences, bit for bit.

``tests/data/scale_sequences.json`` holds the float32 bits of the scale after
each step, for every configuration of
``tests/scripts/record_scale_sequences.py`` (each public strategy with its
defaults, with the settings of ``lrtransfer.recipes.default_recipes`` and
with non-default finer settings) on metric sequences that improve, plateau,
over-fit, diverge, carry NaN or negative values, progress slowly, spike, or
come at irregular intervals with jumping and stale counts. A change to the
strategies' signatures or internals must leave every scale identical;
rerun the script only for an intended change of behaviour.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
RECORDED = json.loads((HERE / "data" / "scale_sequences.json").read_text())


def _load_recorder():
  path = HERE / "scripts" / "record_scale_sequences.py"
  spec = importlib.util.spec_from_file_location("record_scale_sequences",
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


recorder = _load_recorder()


def test_every_configuration_is_recorded():
  assert sorted(recorder.CONFIGS) == sorted(RECORDED)


@pytest.fixture(scope="module")
def sequences():
  return recorder.sequences()


@pytest.mark.parametrize("config", sorted(recorder.CONFIGS))
def test_scales_are_bit_identical(config, sequences):
  for feed in recorder.FEEDS:
    got = recorder.run(recorder.CONFIGS[config], feed, sequences)
    expected = RECORDED[config][feed]
    assert sorted(got) == sorted(expected)
    for name, scales in got.items():
      assert recorder.to_hex(scales) == expected[name], (
          f"{config}, {feed} feed, {name} sequence: scales moved")
