"""RHD -> H3D with tllib's hyper-parameters (ResNet-101, 256 px, batch 32).

`configs/rhd_h3d.py`: source-only ERM; `configs/rhd_h3d.py:regda`: RegDA (stage 1 + 30 epochs).
`:mean_teacher` / `:daml`: UDAPE / DAML (40 stylised source-only epochs + 30 mean-teacher epochs).
Needs the built data sets (docs/datasets.md).
"""

from dapose_jax.config import tasks


def get_config(variant=""):
  return tasks.task_config("rhd", "h3d", rotation=180.0, variant=variant,
                                  config_file="configs/rhd_h3d.py", regda_epochs=30)
