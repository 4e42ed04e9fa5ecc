"""Configs of the seed papers' benchmark tasks (reference hyper-parameters, real data) and of the embedded demo."""

from dapose_jax import config_base


def task_config(source, target, keypoint_set, rotation, variant, regda_epochs=30):
  """``variant``: '' (source-only ERM, 70 epochs), 'regda' (stage 1 + ``regda_epochs`` of stage 2), or
  'mean_teacher' / 'daml' (UDAPE's 40 stylised source-only epochs + 30 mean-teacher epochs)."""
  c = config_base.base_config()
  c.source = config_base.domain(source, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.target = config_base.domain(target, keypoint_set=keypoint_set, data_dir="~/tensorflow_datasets")
  c.source.augment.rotation = c.target.augment.rotation = rotation
  for method in (c.mean_teacher, c.daml):
    method.view.rotation = 180.0 if keypoint_set == "hand21" else 60.0  # UDAPE: hands 180, body/animals 60
  if variant == "regda":
    c.method = "regda"
    c.epochs = regda_epochs
  elif variant in ("mean_teacher", "daml"):
    c.method = variant
    c.epochs = 30
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' (source only), 'regda', 'mean_teacher' or 'daml'")
  return c


def animal_task_config(config_file, animals, source, target, keypoint_set, variant):
  """UDAPE's animal tasks: ``variant`` = 'ANIMAL', 'ANIMAL,METHOD', 'METHOD' or ''; ``animals`` maps a
  variant animal ('' = UDAPE's ``--animal all``) to its (source, target) builder suffixes. UDAPE trains
  animals with rotation 60 and heatmap sigma 1."""
  tokens = [t for t in variant.split(",") if t]
  named, methods = [t for t in tokens if t in animals], [t for t in tokens if t not in animals]
  choices = sorted(a for a in animals if a)
  if len(named) > 1 or len(methods) > 1:
    raise ValueError(f"unknown variant {variant!r} of {config_file}; expected one of {choices}, optionally "
                     "followed by a method, e.g. ',regda'")
  source_animal, target_animal = animals[named[0] if named else ""]
  try:
    c = task_config(f"{source}_{source_animal}", f"{target}_{target_animal}", keypoint_set, rotation=60.0,
                    variant=methods[0] if methods else "")
  except ValueError as error:
    raise ValueError(f"{error}; {config_file} also takes an animal of {choices}, "
                     f"e.g. ':{choices[0]},regda'") from None
  c.sigma = 1.0
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
  for method in (c.mean_teacher, c.daml):
    # From scratch, stage 1 needs the source-only demo's Adam 1e-3 (the reference starts from ImageNet);
    # the EMA's time constant is scaled to the short stage 2 (reference: 1000 of 15000 steps).
    method.update(pretrain_epochs=3, pretrain_select_on="source", lr_milestones=(4,), ema=0.98,
                  occlude_size=5)
    method.pretrain.update(lr=1e-3, lr_milestones=(3,))
  # AdaIN network (dapose_jax.style_training): quarter width, random frozen encoder cut at relu2_1 (a random
  # encoder to relu4_1 cannot be inverted by a decoder trained for a few hundred steps), ~4 min on 2 CPU cores
  c.style.update(width=0.25, depth=2, steps=300, lr=3e-4, batch_size=8, log_every=25)

  if variant == "smoke":
    shrink(c, image_size=64, heatmap_size=16, features=32, render_size=64, test_size=64, batch_size=8,
           iters_per_epoch=10, log_every=5)
    c.regda.pretrain_epochs = 1
    for method in (c.mean_teacher, c.daml):
      method.update(pretrain_epochs=1, occlude_size=2)
    c.style.update(width=0.0625, steps=10, log_every=5)
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/demo.py; expected '' or 'smoke'")
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
