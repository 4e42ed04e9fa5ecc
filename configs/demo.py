"""The embedded default: procedural synthetic source -> shifted synthetic target, no downloads.

Variants: ``configs/demo.py`` (the README's demo run, <= 15 minutes on 2 CPU cores) and
``configs/demo.py:smoke`` (a tiny run for checking an installation, < 2 minutes).
Methods: ``--config.method=source_only`` (default) or ``regda``.
"""

from dapose_jax import config_base


def get_config(variant=""):
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
  c.epochs = 6
  c.iters_per_epoch = 100
  c.log_every = 20
  c.eval_every = c.checkpoint_every = c.iters_per_epoch
  c.source_only.lr_milestones = (4, 6)
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
