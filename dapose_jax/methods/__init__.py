"""The training methods by name (``config.method``): the one registry. Each name is a module of this package that
declares its ``METHOD`` (``base.Method``), imported when the method is first asked for, and a module of
``methods/defaults`` with the config section it owns, plain data, so that config files read both without importing
JAX. Adding a method: its module, its defaults module and its name here."""

import importlib
import json

from dapose_jax import errors

NAMES = ("source_only", "regda", "mean_teacher", "daml", "style_decoder", "reconstruction", "geometric")


def get(name):
  if name not in NAMES:
    raise errors.ConfigError(f"config.method={name!r} is not a method; choose one of {', '.join(NAMES)}")
  return importlib.import_module(f"{__name__}.{name}").METHOD


def section(name):
  """The name of the config section that method ``name`` owns."""
  return getattr(_defaults(name), "SECTION", name)


def default_sections():
  """{section: its reference defaults} for every method."""
  return {section(name): _defaults(name).get() for name in NAMES}


def _defaults(name):
  return importlib.import_module(f"{__name__}.defaults.{name}")


def as_recorded(config):
  """``config`` as a JSON-ready dict, without the sections of the methods that a run of ``config.method`` does
  not read: what the run records in ``config.json`` and what a resumed run must match."""
  unused = {section(name) for name in NAMES} - set(get(config.method).sections(config))
  return {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in unused}
