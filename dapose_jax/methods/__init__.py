"""Methods: each module defines ``init(config, rng) -> State``,
``train_step(config, state, source_batch, target_batch) -> (state, metrics)`` and
``eval_heatmaps(config, state, images) -> heatmaps``."""

import importlib

NAMES = ("source_only", "regda")


def get(name):
  if name not in NAMES:
    raise ValueError(f"config.method={name!r} is not a method; choose one of {', '.join(NAMES)}")
  return importlib.import_module(f"dapose_jax.methods.{name}")
