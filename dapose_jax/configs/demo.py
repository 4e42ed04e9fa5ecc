"""The embedded default: procedural synthetic source -> shifted synthetic target, no downloads, at CPU scale
(ResNet-18 from scratch, 128 px input, 32 px heatmaps, batch 32, 5 epochs of 100 steps).

Variants (comma-separated): ``smoke`` (a tiny run for checking an installation, < 2 minutes on 2 cores),
``sampling`` (the pose-VAE sampling demo's scale: 64 px, 10,000 source poses, 80 + 40 steps of batch 8, a per-bin
report of the target test split; needs ``--config.sampling.scores``, see ``experiments/sampling_demo.py``),
``table_a`` (the geometric method's ablation demo at the same scale, target pairs from the renderer and the
pseudo-label diagnostics, see ``experiments/geometric_demo.py``) and a
method, e.g. ``configs/demo.py`` (the README's demo run, source-only, about 13 minutes on 2 CPU cores),
``configs/demo.py:regda``, ``configs/demo.py:smoke,mean_teacher``; ``--config.method=...`` does the same.
"""

from dapose_jax.config import defaults, variants


def demo(size=""):
  c = defaults.base_config()
  c.model.backbone = "resnet18"
  c.model.upsampling_features = 128
  c.image_size = 128
  c.heatmap_size = 32
  c.sigma = 1.0
  c.source = defaults.domain("synthetic", style="source", seed=0, train_size=50_000, test_size=512,
                                render_size=128)
  c.target = defaults.domain("synthetic", style="target", seed=1, train_size=50_000, test_size=512,
                                render_size=128)
  c.epochs = 5
  c.iters_per_epoch = 100
  c.log_every = 20
  c.eval_every = c.checkpoint_every = c.iters_per_epoch
  c.source_only.lr_milestones = (4,)
  c.regda.pretrain_epochs = 3
  c.regda.pretrain.lr_milestones = (3,)
  for method in (c.mean_teacher, c.daml, c.geometric):
    # From scratch, stage 1 needs the source-only demo's Adam 1e-3 (the reference starts from ImageNet);
    # the EMA's time constant is scaled to the short stage 2 (reference: 1000 of 15000 steps).
    method.update(pretrain_epochs=3, pretrain_select_on="source", lr_milestones=(4,), ema=0.98,
                  occlude_size=5)
    method.pretrain.update(lr=1e-3, lr_milestones=(3,))
  # AdaIN network (methods/style_decoder.py): quarter width, random frozen encoder cut at relu2_1 (a random
  # encoder to relu4_1 cannot be inverted by a decoder trained for a few hundred steps), ~4 min on 2 CPU cores
  c.style.update(width=0.25, depth=2, steps=300, lr=3e-4, batch_size=8, log_every=25)
  c.reconstruction.update(warping_features=8, generator_features=8, generator_residual_blocks=2, steps=300,
                          batch_size=8, lr=1e-3, log_every=25)
  c.lifting.update(poses=4000, steps=1000)
  if size == "sampling":
    shrink(c, image_size=64, heatmap_size=16, features=64, render_size=64, test_size=256, batch_size=8,
           iters_per_epoch=40, log_every=20)
    c.epochs = 1
    c.eval_batch_size = 64
    c.eval_pictures = 0
    c.source.train_size = 10_000
    c.regda.update(pretrain_epochs=2, warm_start_iters=20.0)  # lambda(40) = 0.076, as the longer demo's late steps
    c.sampling.upper_quantile = 0.999  # the scores' long tail (docs/pose-vae.md, "Bins and samplers")
    c.evals.target_bins = dict(type="pose_bins", domain="target")
  if size == "table_a":
    shrink(c, image_size=64, heatmap_size=16, features=64, render_size=64, test_size=256, batch_size=8,
           iters_per_epoch=40, log_every=20)
    c.eval_batch_size = 64
    c.eval_pictures = 0
    c.geometric.update(pretrain_epochs=5)  # 200 stage-1 steps: a stage 1 that finds some keypoints
    c.geometric.pretrain.lr_milestones = (5,)
    c.reconstruction.update(warping_blocks=4, steps=150, log_every=25)
    c.lifting.update(poses=2000, steps=500)
    c.target.pairs = True  # the renderer's pairs are the target's driving images
    c.evals.target_labels = dict(type="pseudo_labels", domain="target", split="train", count=128)
  if size == "smoke":
    shrink(c, image_size=64, heatmap_size=16, features=32, render_size=64, test_size=64, batch_size=8,
           iters_per_epoch=10, log_every=5)
    c.regda.pretrain_epochs = 1
    for method in (c.mean_teacher, c.daml, c.geometric):
      method.update(pretrain_epochs=1, occlude_size=2)
    c.style.update(width=0.0625, steps=10, log_every=5)
    c.reconstruction.update(warping_blocks=4, steps=10, log_every=5)
    c.lifting.update(poses=64, steps=20, width=32, batch_size=32)
  return c


def shrink(c, *, image_size, heatmap_size, features, render_size, test_size, batch_size, iters_per_epoch,
           log_every):
  """Scales the demo down in place to a 2-epoch run that evaluates and checkpoints once per epoch."""
  c.model.upsampling_features = features
  c.image_size = image_size
  c.heatmap_size = heatmap_size
  for domain in (c.source, c.target):
    domain.render_size = render_size
    domain.test_size = test_size
  c.batch_size = batch_size
  c.eval_batch_size = 2 * batch_size
  c.epochs = 2
  c.iters_per_epoch = iters_per_epoch
  c.log_every = log_every
  c.eval_every = c.checkpoint_every = iters_per_epoch


def get_config(variant=""):
  chosen = variants.parse(variant, "configs/demo.py", size=("smoke", "sampling", "table_a"))
  return variants.with_method(demo(chosen.size), chosen.method)
