"""Fine-tune your own Flax NNX model in your own training loop.

The common use of lrtransfer: a strategy (here
``lrtransfer.reduce_on_plateau``; ``lrtransfer.adjust()`` drops in the same
way) and layer-wise rates (``lrtransfer.layerwise_scale``) chained after SGD-momentum
inside ``nnx.Optimizer``; the validation loss fed once per epoch with
``lrtransfer.measurement``; the rate of each depth level read back with
``lrtransfer.learning_rates``. The model's layers are named so that their
names sort against their order (``stem``, ``features``, ``classifier``: an
``nnx.State`` lists ``classifier`` first), so the depths come from
``lrtransfer.layer_depths(model)``, which reads the order from the module.

Data: scikit-learn's 8x8 digits. The model is pretrained on the digits 0-4,
then fine-tuned on 100 images of the digits 5-9 with a new head.

usage: python examples/own_loop.py [--epochs N] [--seed N]
(a few seconds after the imports on a 2-core CPU)
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import lrtransfer


class Net(nnx.Module):
  """Defined stem -> features -> classifier; sorted by name the reverse."""

  def __init__(self, rngs: nnx.Rngs):
    self.stem = nnx.Linear(64, 64, rngs=rngs)
    self.features = nnx.Linear(64, 32, rngs=rngs)
    self.classifier = nnx.Linear(32, 5, rngs=rngs)

  def __call__(self, x):
    return self.classifier(nnx.relu(self.features(nnx.relu(self.stem(x)))))


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y, metric):
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads, metric=metric)  # the strategy reads metric
  return loss


def train(model, tx, train_data, val_data, epochs, base_rate, seed,
          log=True):
  """Per-epoch loop; returns the validation losses and rates per epoch."""
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  # Before the first evaluation: count 0, never judged, the same structure
  # as the measurements that follow (so train_step compiles once).
  metric = lrtransfer.no_measurement("value", "train_loss")
  (x, y), (x_val, y_val) = train_data, val_data
  order = np.random.default_rng(seed)
  history = []
  for epoch in range(1, epochs + 1):
    batches = np.array_split(order.permutation(len(x)), max(len(x) // 32, 1))
    losses = [train_step(model, optimizer, x[b], y[b], metric)
              for b in batches]
    val_loss = float(loss_fn(model, x_val, y_val))
    metric = lrtransfer.measurement(val_loss, epoch,
                                    train_loss=float(np.mean(losses)))
    # The rates this epoch's updates applied; level 0 is the stem. The
    # strategy reacts to this measurement at the next epoch's first update.
    rates = lrtransfer.learning_rates(optimizer.opt_state, base_rate)
    if log:
      print(f"epoch {epoch:2d}  val_loss {val_loss:.3f}  rates {rates}")
    history.append({"val_loss": val_loss, "rates": rates})
  return history


def accuracy(model, x, y) -> float:
  return float(jnp.mean(jnp.argmax(model(x), -1) == y))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  images, labels = load_digits(return_X_y=True)
  images = jnp.asarray(images / 16.0, jnp.float32)
  rng = np.random.default_rng(args.seed)
  source = np.flatnonzero(labels < 5)
  target = rng.permutation(np.flatnonzero(labels >= 5))
  target_train, target_val, target_test = (
      target[:100], target[100:300], target[300:])
  split = lambda idx, shift: (images[idx], jnp.asarray(labels[idx] - shift))

  # 1. Pretrain on the digits 0-4 at a constant rate.
  pretrained = Net(nnx.Rngs(args.seed))
  train(pretrained, optax.sgd(0.05, momentum=0.9), split(source[::2], 0),
        split(source[1::2], 0), epochs=5, base_rate=0.05, seed=args.seed,
        log=False)

  # 2. Fine-tune on 100 images of 5-9: the body from the pretrained model,
  # a new head.
  model = Net(nnx.Rngs(args.seed + 1))
  for name in ("stem", "features"):
    nnx.update(getattr(model, name), nnx.state(getattr(pretrained, name)))
  base_rate = 0.1
  tx = optax.chain(
      optax.sgd(base_rate, momentum=0.9),
      # Halves the rate after 3 evaluations without a better validation loss.
      lrtransfer.reduce_on_plateau(factor=0.5, patience=2),
      lrtransfer.layerwise_scale(0.5, depths=lrtransfer.layer_depths(model)))
  history = train(model, tx, split(target_train, 5), split(target_val, 5),
                  args.epochs, base_rate, args.seed)
  test_accuracy = accuracy(model, *split(target_test, 5))
  print(f"test accuracy on the digits 5-9: {test_accuracy:.3f}")
  return {"history": history, "test_accuracy": test_accuracy}


if __name__ == "__main__":
  main()
