"""A small deterministic fit, run in a subprocess by the reliability tests.

usage: fit_run.py OUT.npz [--checkpoint DIR] [--every K] [--resume]
                  [--epochs E] [--devices all|one] [--recipe NAME] [--many]

Writes the final params and history to OUT.npz; with --many, of two runs of
one fit_many (seeds 3 and 4), each array with a leading run axis.
"""

import argparse

import jax
import numpy as np
from flax import nnx

import lrtransfer

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--checkpoint")
parser.add_argument("--every", type=int)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--devices", default="one")
parser.add_argument("--recipe", default="adjust")
parser.add_argument("--many", action="store_true")
args = parser.parse_args()

task = lrtransfer.data.get_task("digits_label_split", shots_per_class=8)
source = lrtransfer.experiment.pretrain_source(task, hidden=(32, 16), epochs=3)
target = lrtransfer.models.target_from_source(source, task.num_target_classes,
                                       rngs=nnx.Rngs(1))
recipe = lrtransfer.recipes.default_recipes(0.05)[args.recipe]
options = dict(
    epochs=args.epochs, batch_size=8,
    source_params=nnx.as_pure(nnx.state(source, nnx.Param)),
    checkpoint_dir=args.checkpoint, checkpoint_every=args.every,
    resume=args.resume,
    devices=jax.devices() if args.devices == "all" else None)
if args.many:
  result = lrtransfer.train.fit_many(
      [target, lrtransfer.models.target_from_source(
          source, task.num_target_classes, rngs=nnx.Rngs(2))],
      recipe, task.target_train, task.target_val, seeds=[3, 4], **options)
  params = result.params
else:
  result = lrtransfer.train.fit(target, recipe, task.target_train,
                                task.target_val, seed=3, **options)
  params = nnx.as_pure(nnx.state(result.model, nnx.Param))
flat = {"param/" + "/".join(map(str, path)): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
flat.update({"history/" + k: v for k, v in result.history.items()})
flat["device_count"] = np.asarray(jax.device_count())
# How many devices hold the trained parameters (replicated when parallel).
parameters = result.params if args.many else result.carry.params
flat["param_devices"] = np.asarray(len(
    jax.tree.leaves(parameters)[0].sharding.device_set))
np.savez(args.out, **flat)
