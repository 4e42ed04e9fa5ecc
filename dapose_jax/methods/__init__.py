"""Methods: each module defines ``init(config, rng) -> State``,
``train_step(config, state, source_batch, target_batch) -> (state, metrics)`` and
``eval_heatmaps(config, state, images) -> heatmaps``; optional hooks that ``train.run`` calls:
``configure(config) -> config``, ``uses_style(config)``, ``pretrain_config(config)`` and
``load_pretrained(config, state)``."""

import importlib

NAMES = ("source_only", "regda", "mean_teacher", "daml")


def get(name):
  if name not in NAMES:
    raise ValueError(f"config.method={name!r} is not a method; choose one of {', '.join(NAMES)}")
  return importlib.import_module(f"dapose_jax.methods.{name}")
