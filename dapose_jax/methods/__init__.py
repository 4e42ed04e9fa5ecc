"""The training methods by name (``config.method``); each module declares its ``METHOD`` (``base.Method``)."""

import json

from dapose_jax import errors
from dapose_jax.methods import daml, geometric, mean_teacher, reconstruction, regda, source_only, style_decoder

REGISTRY = {m.name: m for m in (source_only.METHOD, regda.METHOD, mean_teacher.METHOD, daml.METHOD,
                                style_decoder.METHOD, reconstruction.METHOD, geometric.METHOD)}
NAMES = tuple(REGISTRY)


def get(name):
  if name not in REGISTRY:
    raise errors.ConfigError(f"config.method={name!r} is not a method; choose one of {', '.join(NAMES)}")
  return REGISTRY[name]


def recorded_config(config):
  """``config`` as a JSON-ready dict, without the sections of the methods that a run of ``config.method`` does
  not read: what the run records in ``config.json`` and what a resumed run must match."""
  unused = {m.own_section for m in REGISTRY.values()} - set(get(config.method).sections(config))
  return {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in unused}
