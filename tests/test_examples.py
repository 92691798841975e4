"""The examples run (reduced with --quick)."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def test_finetune_cnn_quick():
  pytest.importorskip("mlxtend")
  spec = importlib.util.spec_from_file_location(
      "finetune_cnn", EXAMPLES / "finetune_cnn.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  results = module.main(["--quick"])
  assert set(results) == {"scratch", "constant", "adjust+layerwise+unfreeze"}
  # Even the tiny CNN transfers: fine-tuned beats chance (0.1) clearly.
  assert results["constant"] > 0.3
