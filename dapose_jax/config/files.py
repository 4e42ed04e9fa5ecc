"""Config files by path or by name: ``resolve`` (what ``--config`` takes: a file or the name of one of the package's
configs, ``dapose_jax/configs``, with ``:VARIANT``), and ``load`` for Python code (with key overrides)."""

import pathlib
import runpy

from ml_collections import ConfigDict

from dapose_jax import errors

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"  # installed with the package; configs/ in the repository


def resolve(argument):
  """(the config file, its variant) of ``argument``: a file (``configs/demo.py``, ``configs/demo.py:smoke``) or the
  name of one of the package's configs (``demo``, ``demo:smoke``, from any folder)."""
  text = str(argument)
  if pathlib.Path(text).expanduser().is_file():
    return pathlib.Path(text).expanduser(), ""
  path_text, _, variant = text.partition(":")
  path = pathlib.Path(path_text).expanduser()
  named = "/" not in path_text and not path_text.endswith(".py")
  if not path.is_file() and named:
    path = CONFIGS / f"{path_text}.py"
  if not path.is_file():
    names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.py")))
    raise errors.ConfigError(f"config {text!r}: " + (f"no such file, nor a config of {CONFIGS} (those: {names})" if named
                                                     else f"no such file (or give a config by name: {names})"))
  return path, variant


def set_key(config, key, value):
  """Sets the dotted ``key`` of ``config`` to ``value``: a KeyError when it is not one of the config's keys, a
  ConfigError when the value's type does not fit the key's."""
  *parents, leaf = key.split(".")
  section = config
  for name in parents:
    section = section.get(name) if isinstance(section, ConfigDict) else None
  if not (isinstance(section, ConfigDict) and leaf in section):
    raise KeyError(key)
  try:
    section[leaf] = value
  except TypeError as error:
    raise errors.ConfigError(str(error)) from None


def load(name_or_path, variant="", **overrides):
  """The ConfigDict of a config file's ``get_config(variant)``: ``name_or_path`` as ``resolve`` reads it (a file, or
  a name of the package's configs, with ``:VARIANT`` or not); each override sets a key, ``__`` standing for a dot
  (``model__backbone="resnet10"`` sets ``model.backbone``)."""
  path, named_variant = resolve(name_or_path)
  variant = variant or named_variant
  config = runpy.run_path(str(path))["get_config"](variant)
  for key, value in overrides.items():
    dotted = key.replace("__", ".")
    try:
      set_key(config, dotted, value)
    except KeyError:
      raise errors.ConfigError(f"config override {key}={value!r}: {dotted} is not a key of {path}") from None
    except errors.ConfigError as error:
      raise errors.ConfigError(f"config override {key}={value!r}: {error}") from None
  return config
