"""SURREAL -> LSP with tllib's hyper-parameters (ResNet-101, 256 px, batch 32).

`configs/surreal_lsp.py`: source-only ERM; `configs/surreal_lsp.py:regda`: RegDA (stage 1 + 30 epochs).
`:mean_teacher` / `:daml`: UDAPE / DAML (40 stylised source-only epochs + 30 mean-teacher epochs).
Needs the built data sets (docs/datasets.md).
"""

from dapose_jax.config import tasks


def get_config(variant=""):
  return tasks.task_config("surreal", "lsp", rotation=30.0, variant=variant,
                                  config_file="configs/surreal_lsp.py", regda_epochs=30)
