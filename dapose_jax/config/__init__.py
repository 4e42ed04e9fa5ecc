"""Config building blocks that import nothing heavier than ml_collections: shared keys, tasks, variants, and
``load`` (``files.py``) of a config file from Python."""

from dapose_jax.config.files import load  # noqa: F401
