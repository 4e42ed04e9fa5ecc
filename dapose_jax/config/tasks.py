"""Configs of the seed papers' benchmark tasks: reference hyper-parameters on the real data sets."""

from dapose_jax.config import defaults, variants

# epochs of the method's own stage in the task configs (stage 1 has its own, in its config section)
UDAPE_EPOCHS = 30
UDAPE_METHODS = ("mean_teacher", "daml", "geometric")  # the mean teacher and the methods built on it


def task_config(source, target, rotation, variant, config_file, regda_epochs=30):
  """``source`` -> ``target``; ``variant``: '' (source-only ERM, 70 epochs), 'regda' (stage 1 + ``regda_epochs``
  of stage 2), 'mean_teacher' / 'daml' / 'geometric' (UDAPE's 40 stylised source-only epochs + 30 epochs of
  stage 2)."""
  return _task(source, target, rotation, variants.parse(variant, config_file).method, regda_epochs)


def _task(source, target, rotation, method, regda_epochs=30):
  c = defaults.base_config()
  c.source = defaults.domain(source, data_dir="~/tensorflow_datasets")
  c.target = defaults.domain(target, data_dir="~/tensorflow_datasets")
  c.source.augment.rotation = c.target.augment.rotation = rotation
  for section in (c.mean_teacher, c.daml, c.geometric):
    section.view.rotation = 180.0 if c.source.keypoint_set == "hand21" else 60.0  # UDAPE: hands 180, others 60
  c.model.init = c.style.encoder = defaults.REQUIRED  # as the references run: ImageNet ResNet, released VGG
  if method in UDAPE_METHODS:  # UDAPE and DAML pool each keypoint's accuracy over the split (train_human.py)
    for spec in c.evals.values():
      spec.aggregation = "udape"
  c.reconstruction.driving = "view"  # the real sources have no pair index: the generator learns from two views
  epochs = {"regda": regda_epochs, **dict.fromkeys(UDAPE_METHODS, UDAPE_EPOCHS)}.get(method)
  return variants.with_method(c, method, epochs)


def animal_task_config(config_file, animals, source, target, variant):
  """UDAPE's animal tasks: ``variant`` = 'ANIMAL', 'ANIMAL,METHOD', 'METHOD' or ''; ``animals`` maps a
  variant animal ('' = UDAPE's ``--animal all``) to its (source, target) builder suffixes. UDAPE trains
  animals with rotation 60 and heatmap sigma 1."""
  chosen = variants.parse(variant, config_file, animal=tuple(animals))
  source_animal, target_animal = animals[chosen.animal]
  c = _task(f"{source}_{source_animal}", f"{target}_{target_animal}", rotation=60.0, method=chosen.method)
  c.sigma = 1.0
  if chosen.method in UDAPE_METHODS:
    # UDAPE's animal targets: a fixed crop (real_animal_all_mt.py, animal_pose_mt.py: r = 0, no random crop; a
    # base crop of area 1 is the whole square image) and views without colour jitter (train_animal.py: affine, then
    # ToTensor)
    c.target.augment.update(scale_min=1.0, scale_max=1.0)
    c[chosen.method].view.color = 0.0
  return c
