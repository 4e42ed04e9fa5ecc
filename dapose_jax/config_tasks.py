"""Configs of the seed papers' benchmark tasks (reference hyper-parameters, real data) and of the embedded demo."""

from dapose_jax import config_base


def task_config(source, target, keypoint_set, rotation, variant, regda_epochs=30):
  """``variant``: '' (source-only ERM, 70 epochs) or 'regda' (stage 1 + ``regda_epochs`` of stage 2)."""
  c = config_base.base_config()
  c.source = config_base.domain(source, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.target = config_base.domain(target, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.source.augment.rotation = c.target.augment.rotation = rotation
  if variant == "regda":
    c.method = "regda"
    c.epochs = regda_epochs
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' (source only) or 'regda'")
  return c


def demo_config(variant=""):
  """The embedded benchmark at CPU scale: ResNet-18 from scratch, 128 px, 32 px heatmaps, 500 steps."""
  c = config_base.base_config()
  c.model.backbone = "resnet18"
  c.model.upsampling_features = 128
  c.image_size = 128
  c.heatmap_size = 32
  c.sigma = 1.0
  c.source = config_base.domain("synthetic", style="source", seed=0, train_size=50_000, test_size=512,
                                render_size=128)
  c.target = config_base.domain("synthetic", style="target", seed=1, train_size=50_000, test_size=512,
                                render_size=128)
  c.epochs = 5
  c.iters_per_epoch = 100
  c.log_every = 20
  c.eval_every = c.checkpoint_every = c.iters_per_epoch
  c.source_only.lr_milestones = (4,)
  c.regda.pretrain_epochs = 3
  c.regda.pretrain.lr_milestones = (3,)

  if variant == "smoke":
    c.model.upsampling_features = 32
    c.image_size = 64
    c.heatmap_size = 16
    for domain in (c.source, c.target):
      domain.render_size = 64
      domain.test_size = 64
    c.batch_size = 8
    c.eval_batch_size = 16
    c.epochs = 2
    c.iters_per_epoch = 10
    c.log_every = 5
    c.eval_every = c.checkpoint_every = 10
    c.regda.pretrain_epochs = 1
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/demo.py; expected '' or 'smoke'")
  return c
