"""The embedded default: procedural synthetic source -> shifted synthetic target, no downloads.

Variants: ``configs/demo.py`` (the README's demo run, <= 15 minutes on 2 CPU cores) and
``configs/demo.py:smoke`` (a tiny run for checking an installation, < 2 minutes).
Methods: ``--config.method=source_only`` (default) or ``regda``.
"""

from dapose_jax import config_tasks


def get_config(variant=""):
  return config_tasks.demo_config(variant)
