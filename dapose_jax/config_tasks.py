"""The benchmark tasks of the seed papers as configs: reference hyper-parameters, real data sets."""

from dapose_jax import config_base


def task_config(source, target, keypoint_set, rotation, variant, regda_epochs=30):
  """``variant``: '' (source-only ERM, 70 epochs) or 'regda' (stage 1 + ``regda_epochs`` of stage 2)."""
  c = config_base.base_config()
  c.source = config_base.domain(source, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.target = config_base.domain(target, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.source.augment.rotation = c.target.augment.rotation = rotation
  if target == "lsp":
    # tllib's LSP ignores the transform argument: resize-and-pad only, also for target training
    c.target.resize_pad = True
    c.target.augment = config_base.augment(rotation, resize_pad=True, enabled=False)
  if variant == "regda":
    c.method = "regda"
    c.epochs = regda_epochs
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' (source only) or 'regda'")
  return c
