"""Config files as Python code reads them (``dapose_jax.config.load``): a path, or the name of one of the repository's
configs, with its variant and key overrides; what ``--config FILE:VARIANT --config.KEY=VALUE`` gives the commands."""

import pathlib
import runpy

from dapose_jax import errors

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/ (editable installs)


def load(name_or_path, variant="", **overrides):
  """The ConfigDict of a config file's ``get_config(variant)``: ``name_or_path`` is a file (``configs/demo.py``,
  ``configs/demo.py:smoke``) or a name of the repository's ``configs/`` (``"demo"``, ``"demo:smoke"``); each
  override sets a key, ``__`` standing for a dot (``model__backbone="resnet10"`` sets ``model.backbone``)."""
  text = str(name_or_path)
  path_text, _, named_variant = text.partition(":") if not pathlib.Path(text).is_file() else (text, "", "")
  variant = variant or named_variant
  path = pathlib.Path(path_text).expanduser()
  if not path.is_file():
    path = CONFIGS / f"{path_text}.py"
  if not path.is_file():
    names = sorted(p.stem for p in CONFIGS.glob("*.py")) if CONFIGS.is_dir() else []
    raise errors.ConfigError(f"config {text!r}: no such file, nor a config of {CONFIGS} (those: {', '.join(names)})")
  config = runpy.run_path(str(path))["get_config"](variant)
  for key, value in overrides.items():
    *parents, leaf = key.split("__")
    section = config
    for name in parents:
      section = section[name] if name in section else None
      if section is None:
        break
    if section is None or leaf not in section:
      raise errors.ConfigError(f"config override {key}={value!r}: {key.replace('__', '.')} is not a key of {path}")
    try:
      section[leaf] = value
    except TypeError as error:
      raise errors.ConfigError(f"config override {key}={value!r}: {error}") from None
  return config
