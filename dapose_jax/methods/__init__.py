"""The training methods by name (``config.method``): the one registry. Each name is a module of this package that
declares its ``METHOD`` (``base.Method``), imported when the method is first asked for, so that config files can
read the names without importing JAX."""

import importlib
import json

from dapose_jax import errors

NAMES = ("source_only", "regda", "mean_teacher", "daml", "style_decoder", "reconstruction", "geometric")


def get(name):
  if name not in NAMES:
    raise errors.ConfigError(f"config.method={name!r} is not a method; choose one of {', '.join(NAMES)}")
  return importlib.import_module(f"{__name__}.{name}").METHOD


def as_recorded(config):
  """``config`` as a JSON-ready dict, without the sections of the methods that a run of ``config.method`` does
  not read: what the run records in ``config.json`` and what a resumed run must match."""
  unused = {get(name).own_section for name in NAMES} - set(get(config.method).sections(config))
  return {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in unused}
