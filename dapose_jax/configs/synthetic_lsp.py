"""The embedded synthetic source -> real LSP target, at the demo's CPU scale (ResNet-18, 128 px, heatmap 32).

`configs/synthetic_lsp.py`: source-only ERM; `configs/synthetic_lsp.py:regda`: RegDA (any method name works).
Needs LSP built once into ~/tensorflow_datasets (`--config.target.data_dir` to change):

  python -m dapose_jax build --dataset lsp --manual_dir DIR_WITH_images_AND_joints.mat

As in tllib, the LSP target is resized and zero-padded to a square without any augmentation, also for
target training, and its test split is all 2000 images, the same ones the target training reads (the
target has no ``test_size``). Each evaluation therefore runs the model on 2000 target images plus 512
synthetic source images.
"""

import pathlib
import runpy

from dapose_jax.config import defaults, variants

_DEMO = runpy.run_path(str(pathlib.Path(__file__).with_name("demo.py")))


def get_config(variant=""):
  chosen = variants.parse(variant, "configs/synthetic_lsp.py")
  c = _DEMO["demo"]()
  c.target = defaults.domain("lsp", data_dir="~/tensorflow_datasets")
  return variants.with_method(c, chosen.method)
