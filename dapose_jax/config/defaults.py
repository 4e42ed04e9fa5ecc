"""Reference defaults shared by every config file (tllib / UDAPE hyper-parameters)."""

from ml_collections import ConfigDict

from dapose_jax import errors, methods
from dapose_jax.config import datasets


DOMAINS = ("source", "target")  # a config's two data sets, config.source and config.target
# the evaluator types of config.evals (``evaluators.TYPES``' keys) and the heatmap decoders of the coordinate
# evaluators' and predict's ``decoding`` (``pose.decoding.keypoints_in_cells``): here, without JAX, for --help
EVALUATOR_TYPES = ("pck", "pck_bbox", "pck_auc", "epe", "evalpose", "pose_bins", "pseudo_labels", "confidence",
                   "view_agreement", "head_agreement", "keypoint_confusion")
DECODERS = ("argmax", "quarter", "dark")


def leaves(config, prefix="config"):
  """(KEY, value) of every leaf of ``config`` (a ConfigDict or dict), KEY as ``--KEY=VALUE`` overrides it, e.g.
  config.source_only.lr."""
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from leaves(value, f"{prefix}.{key}")
    else:
      yield f"{prefix}.{key}", value


def augment(rotation, resize_pad=False, enabled=True):
  """tllib's RegDA/ERM training transform: rotation -> random resized crop -> colour jitter -> blur.

  on_device: the host only decodes and resizes (``transforms.resize_pad``) and the train step augments the batch
  (``dapose_jax.augment.device_augment``: one bilinear warp per sample, then jitter and blur).
  """
  return dict(enabled=enabled, rotation=rotation, scale_min=0.6, scale_max=1.3, color=0.25, blur=0.8,
              resize_pad=resize_pad, on_device=False)


def domain(name, **fields):
  """One data set: ``name`` plus its own fields; ``resize_pad`` selects the test transform,
  ``keypoint_set`` is the one the data set declares and ``pairs`` makes each training sample a base/driving pair
  (``sources.make_source``: the renderer and the video data sets with a pair index, ``data/pairs.py``).

  LSP gets tllib's fixed transform: tllib's LSP ignores the transform argument and only resizes and
  zero-pads to a square, also for target training.
  """
  keypoint_set = datasets.keypoint_set(name)
  if keypoint_set is None:
    raise errors.ConfigError(f"unknown data set {name!r}: the data sets are {', '.join(datasets.known_names())}")
  if fields.pop("keypoint_set", keypoint_set) != keypoint_set:
    raise errors.ConfigError(f"data set {name!r} stores {keypoint_set} keypoints; leave keypoint_set out of its config")
  fields.setdefault("pairs", False)
  if name == "lsp":
    return ConfigDict(dict(name=name, keypoint_set=keypoint_set, resize_pad=True,
                           augment=augment(30.0, resize_pad=True, enabled=False), **fields))
  return ConfigDict(dict(name=name, keypoint_set=keypoint_set, resize_pad=False, augment=augment(30.0), **fields))


# A file key that a task config leaves for the user to name (config.model.init, config.style.encoder): a run
# stops before writing anything until it names the file, or "none" (random weights on purpose; "" is the same).
REQUIRED = "required"
NONE = "none"
# torchvision's ImageNet weights (IMAGENET1K_V1, what the references' ``models.resnetN(pretrained=True)`` loads): the
# files of torchvision >= 0.9; older releases name the same weights resnet101-5d3b4d8f.pth etc. in torch's legacy
# format, which only torch reads
TORCHVISION_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
                     "resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}
TORCHVISION_URL = "https://download.pytorch.org/models/"
ADAIN_ENCODER = "vgg_normalised.pth"


def named_file(value):
  """The path a file key names, "" for none ("" or "none")."""
  return "" if value in ("", NONE) else value


def check_named_files(recorded):
  """One line for the first file key of ``recorded`` (a run's recorded config) left at ``REQUIRED``."""
  for key, value in leaves(recorded):
    if value != REQUIRED:
      continue
    if key == "config.model.init":
      name = TORCHVISION_FILES.get(recorded["model"]["backbone"], "the torchvision ImageNet file of the backbone")
      what = (f"the references start {recorded['model']['backbone']} from torchvision's ImageNet weights: download "
              f"{name} ({TORCHVISION_URL}{name}) and pass --config.model.init=PATH/{name}")
    elif key == "config.style.encoder":
      what = (f"the references' AdaIN network uses the released VGG encoder {ADAIN_ENCODER} (pytorch-AdaIN's "
              f"release, UDAPE's adain/pretrain/{ADAIN_ENCODER}): pass --config.style.encoder=PATH/{ADAIN_ENCODER}")
    else:
      what = f"pass --{key[len('config.'):]}=PATH"
    raise errors.ConfigError(f"{key} is required: {what}, or {key}={NONE} to start from random weights on purpose")


def pck_eval(domain, split="test"):
  """PCK@0.05 per keypoint group of ``config[domain]``'s ``split``, aggregated over the split as tllib's
  ``validate`` does (``aggregation="udape"``: per keypoint first, as UDAPE and DAML do)."""
  return dict(type="pck", domain=domain, split=split, threshold=0.05, aggregation="tllib")


def base_config():
  c = ConfigDict()
  c.method = "source_only"
  c.seed = 0
  # init: the backbone's starting weights, a torchvision ResNet state dict (.pth, .safetensors or .npz; e.g.
  # resnet101-63fe2227.pth) loaded at a run's first stage (source-only, each method's stage 1); "" or "none": random
  c.model = dict(backbone="resnet101", upsampling_features=256, dtype="float32", init="")
  c.image_size = 256
  c.heatmap_size = 64
  c.sigma = 2.0
  c.batch_size = 32
  c.eval_batch_size = 32
  c.epochs = 70
  c.iters_per_epoch = 500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  # Evaluators (dapose_jax/evaluators) by name, run every eval_every steps. select_on names the value that picks
  # the best checkpoint: "NAME/KEY", or "NAME" for that evaluator's headline value (PCK: "all"). The reference
  # selects on the target test split.
  c.evals = dict(target=pck_eval("target"), source=pck_eval("source"))
  c.select_on = "target"
  c.eval_pictures = 4  # samples drawn (truth vs prediction, heatmaps) to TensorBoard per domain at each evaluation
  # workers: Grain worker processes per training pipeline, -1 = from the host's cores (pipeline.worker_count);
  # device_prefetch: global batches put on the devices ahead of the step that uses them (2 = double buffering)
  c.data = dict(num_threads=2, prefetch=4, workers=-1, device_prefetch=2)
  # Dua et al.'s pose VAE (dapose_jax/auxiliary/pose_vae.py, `dapose-jax pose_vae`): an MLP VAE on the normalised source
  # training keypoints, trained with Adam; its reconstruction error scores each sample's difficulty. kl_weight is
  # the seed's lambda; widths are the encoder's hidden layers (the decoder mirrors them).
  c.pose_vae = dict(latent=8, widths=(256, 256), kl_weight=0.1, steps=3000, lr=1e-3, batch_size=256, log_every=250,
                    seed=0)
  # How the source training stream draws its samples (dapose_jax/data/sampling.py): "uniform" (a shuffled pass per
  # epoch), "cl" (curriculum over the difficulty bins) or "hm" (hard mining); the last two read the scores file of
  # `dapose-jax pose_vae` (WORKDIR/pose_vae/scores.json). bins: equal-width bins over the scores' range;
  # upper_quantile < 1: the bins end at that quantile of the scores (the rest go to the last bin), not at their
  # maximum; cl_fraction: the share of the run's steps over which the curriculum grows from bin 1 to all bins;
  # hm_alpha: bin b is drawn with weight b ** hm_alpha.
  c.sampling = dict(name="uniform", scores="", bins=25, upper_quantile=1.0, cl_fraction=0.5, hm_alpha=1.0)
  # 2D -> 3D lifting for the 3D pseudo-labels (dapose_jax/auxiliary/lifting.py): Martinez et al.'s residual MLP (theirs:
  # width 1024, 2 blocks) trained with Adam on the source's 2D / 3D keypoints, each input keypoint hidden with p
  # input_drop; angle_percentiles: the source percentiles that bound each joint angle; tau2d: M2D's heatmap-peak
  # threshold (< 0: the mean teacher's batch median); tau3d: M3D's reprojection tolerance as a fraction of the 2D
  # box's longer side; overlap_threshold: |M2D n M3D| / |M2D u M3D| from which M2D u M3D supervises both;
  # poses: how many of the source's first training samples the lifter is trained on (0: all).
  c.lifting = dict(width=256, blocks=2, steps=2000, lr=1e-3, batch_size=256, input_drop=0.2, seed=0,
                   angle_percentiles=(1.0, 99.0), tau2d=-1.0, tau3d=0.05, overlap_threshold=0.8, poses=20_000)
  c.update(methods.default_sections())  # each method's own section: dapose_jax/methods/defaults
  return c

