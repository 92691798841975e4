"""Regenerates pytorch_conformance.json (needs torch; not a test dependency).

Runs torch.optim.lr_scheduler.ReduceLROnPlateau on fixed metric sequences and
records the learning rate after each step(metric). The test reads the JSON,
so PyTorch is only needed to regenerate it:

    pip install torch==2.13.0 && python tests/data/make_pytorch_conformance.py
"""

import json
import pathlib

import numpy as np
import torch

BASE_LR = 0.1


def sequences():
  rng = np.random.default_rng(2026)
  noisy = np.round(1.5 * np.exp(-np.arange(120) / 30) + rng.normal(0, .03, 120)
                   + np.repeat(rng.uniform(0, .2, 12), 10), 4)
  plateau = [1.0] * 5 + [0.9] + [0.9] * 6 + [0.5, 0.6, 0.7, 0.49, 0.5] * 4
  acc = np.round(np.clip(0.5 + 0.45 * (1 - np.exp(-np.arange(80) / 15))
                         + rng.normal(0, 0.01, 80), 0, 1), 4)
  return {"noisy_loss": [float(x) for x in noisy],
          "plateau_loss": [float(x) for x in plateau],
          "accuracy": [float(x) for x in acc]}


CONFIGS = [
    dict(mode="min", factor=0.1, patience=10, threshold=1e-4,
         threshold_mode="rel", cooldown=0, min_lr=0.0),
    dict(mode="min", factor=0.5, patience=2, threshold=1e-3,
         threshold_mode="rel", cooldown=0, min_lr=0.0),
    dict(mode="min", factor=0.5, patience=0, threshold=1e-4,
         threshold_mode="rel", cooldown=2, min_lr=0.0),
    dict(mode="min", factor=0.3, patience=1, threshold=0.01,
         threshold_mode="abs", cooldown=1, min_lr=0.001),
    dict(mode="min", factor=0.5, patience=3, threshold=0.0,
         threshold_mode="abs", cooldown=0, min_lr=0.01),
    dict(mode="max", factor=0.5, patience=2, threshold=1e-3,
         threshold_mode="rel", cooldown=1, min_lr=0.0),
    dict(mode="max", factor=0.2, patience=1, threshold=0.005,
         threshold_mode="abs", cooldown=0, min_lr=0.0001),
]


def main():
  cases = []
  for name, metrics in sequences().items():
    for config in CONFIGS:
      if (config["mode"] == "max") != (name == "accuracy"):
        continue
      opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
      sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **config)
      lrs = []
      for m in metrics:
        opt.step()
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
      cases.append({"sequence": name, "config": config, "metrics": metrics,
                    "lrs": lrs})
  out = {"torch_version": torch.__version__, "base_lr": BASE_LR,
         "cases": cases}
  path = pathlib.Path(__file__).with_name("pytorch_conformance.json")
  path.write_text(json.dumps(out, indent=1))
  print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
  main()
