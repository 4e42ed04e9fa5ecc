"""The embedded synthetic source -> real LSP target, at the demo's CPU scale (ResNet-18, 128 px, heatmap 32).

`configs/synthetic_lsp.py`: source-only ERM; `configs/synthetic_lsp.py:regda`: RegDA.
Needs LSP built once into ~/tensorflow_datasets (`--config.target.data_dir` to change):

  python -m dapose_jax.data.build --dataset lsp --manual_dir DIR_WITH_images_AND_joints.mat

As in tllib, the LSP target is resized and zero-padded to a square without any augmentation, also for
target training, and its test split is all 2000 images, the same ones the target training reads (the
target has no ``test_size``). Each evaluation therefore runs the model on 2000 target images plus 512
synthetic source images, under a minute on 2 CPU cores (estimated from the demo's run time, not measured).
"""

from dapose_jax import config_base, config_tasks


def get_config(variant=""):
  c = config_tasks.demo_config()
  c.target = config_base.domain("lsp", keypoint_set="body16", data_dir="~/tensorflow_datasets")
  if variant == "regda":
    c.method = "regda"
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/synthetic_lsp.py; expected '' or 'regda'")
  return c
