"""What the TFDS builders share: the builder base, file reading with errors that name the file and the expected
layout, the square crops of tllib and UDAPE, their split rules, and the build machinery of the body builders.

Crops are made once, at build time, as the reference code makes them at load time:

* tllib (body and hand builders): a square of 1.5x the keypoint box, at most the shorter image side and moved
  inside the image (``square_box``). The body builders shrink it to at most ``MAX_SIDE`` (``crop_to_jpeg``); the
  hand builders keep tllib's one-pixel-narrower crop and mirror right hands (``crop_hand``).
* UDAPE (animal builders): a square of 1.25x a box, zero outside the image, shrunk to at most ``MAX_SIDE``
  (``udape_box``, ``udape_sample``); UDAPE also shrinks a crop of 512 px or more before its final resize.

A builder that crops records the square as ``crop_box`` = [x0, y0, side] in original pixels and stores keypoints
in pixels of the stored image = (original - (x0, y0)) * stored side / side (``to_crop``). JPEGs are written at
quality 95: the pipeline resizes (and augments) every image, so the loss does not matter.

Every image file is decoded whole during the build, including those stored byte for byte, so a truncated or
corrupt file fails the build (``CorruptImageError``, naming the file and the sample) instead of a training run.
A builder made with ``skip_corrupt=True`` leaves such samples out instead and lists them in ``skipped``.
"""

import abc
import collections
import concurrent.futures
import contextlib
import io
import logging
import os
import pathlib
import random

import cv2
import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from dapose_jax import errors
from dapose_jax.config import datasets
from dapose_jax.data import pickles
from dapose_jax.storage import workdirs

JPEG_QUALITY = 95
MAX_SIDE = 512  # stored crops are shrunk to at most this side
TLLIB_CROP_FACTOR = 1.5
TLLIB_SEED = 42  # tllib's random.seed(42) before it shuffles or draws a split
TLLIB_MAX_TEST = 3200

UDAPE_REPO = "https://github.com/VisionLearningGroup/UDA_PoseEstimation"
CACHED_DATA_NOTE = (
    f"The split files come from UDAPE's repository ({UDAPE_REPO}, folder cached_data/): copy or link that "
    "folder to MANUAL_DIR/cached_data.")
UDAPE_CROP_FACTOR = 1.25


# -- builders ----------------------------------------------------------------------------------------------------


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders. Each stores its examples in the reference order (tllib's or UDAPE's sample lists),
  keyed by position, so TFDS must not shuffle them."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # Stored split read for each pipeline split.
  SPLITS = {"train": "train", "test": "test"}
  LAYOUT: str  # MANUAL_DIR's expected layout, quoted by every error about a missing file
  HOMEPAGE: str
  # For a release that annotates a person or animal box per sample: a function of a stored example -> the box
  # [x0, y0, x1, y1] in pixels of the stored image (the sources add it to each sample as ``box``); None for the
  # others, whose PCK-bbox normalises by the keypoints' box.
  annotated_box = None

  @classmethod
  def keypoint_set(cls):
    """The keypoint set (``skeletons`` name) of the stored keypoints, as ``config.datasets`` gives it."""
    return datasets.keypoint_set(cls.name)
  CITATION: str

  def __init__(self, *, skip_corrupt=False, **kwargs):
    super().__init__(**kwargs)
    self.skip_corrupt = skip_corrupt
    self.skipped = []  # {'sample', 'file', 'error'} of each sample that skip_corrupt left out of this build

  @abc.abstractmethod
  def _features(self):
    """The example's features (``features``: the image, keypoints, visible, then the builder's own)."""

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(self._features()), homepage=self.HOMEPAGE, citation=self.CITATION,
        disable_shuffling=True)

  def _read_image(self, sample, read, path, *args, **kwargs):
    """``read(path, *args, **kwargs)`` with one of the readers below (``jpeg_file``, ``read_rgb``, ``crop_hand``),
    which decode the image file ``path`` whole; ``sample`` says which sample of the release needs it (e.g.
    "sample 2 (image_id 3)"). A corrupt or truncated file raises ``CorruptImageError`` naming the file and the
    sample; with ``skip_corrupt`` it is logged and listed in ``skipped`` instead, and None is returned: the
    caller leaves the sample out."""
    try:
      return read(path, *args, **kwargs)
    except CorruptImageError as error:
      if not self.skip_corrupt:
        raise CorruptImageError(error.path, error.cause, f"{sample} of {self.name}") from error.__cause__
      logging.warning("skipping %s of %s: %s cannot be decoded (%s)", sample, self.name, error.path, error.cause)
      self.skipped.append({"sample": sample, "file": str(error.path), "error": error.cause})
      return None


class AnimalBuilder(Builder, skip_registration=True):
  """Base of UDAPE's animal builders: each split holds the split's samples of every animal of ``ANIMALS``, animal
  after animal (sorted); keys count across animals."""

  ANIMALS: tuple[str, ...]

  @abc.abstractmethod
  def _animal_samples(self, root, animal):
    """{'train': samples, 'test': samples} of one animal in MANUAL_DIR ``root``, in UDAPE's order."""

  @abc.abstractmethod
  def _example(self, animal, sample):
    """The example of one sample of ``_animal_samples``; None leaves the sample out (``_read_image``)."""

  def _split_generators(self, dl_manager):
    samples = {"train": [], "test": []}
    for animal in sorted(self.ANIMALS):
      for split, items in self._animal_samples(dl_manager.manual_dir, animal).items():
        samples[split] += [(animal, item) for item in items]
    return {split: self._generate_examples(items) for split, items in samples.items()}

  def _generate_examples(self, samples):
    for key, (animal, sample) in enumerate(samples):
      example = self._example(animal, sample)
      if example is not None:
        yield key, example


class EmptySplitsMixin:
  """For builders whose release may lack a split's samples: TFDS cannot store a split without examples, so such a
  split is left out of the build (with a warning) and read back here as an empty sequence."""

  def as_data_source(self, split=None, **kwargs):
    if isinstance(split, str) and split in set(self.SPLITS.values()) and split not in self.info.splits:
      return ()
    return super().as_data_source(split=split, **kwargs)

  def _present_splits(self, splits, reason):
    """Split generators for ``splits`` (split -> its examples, only the splits that have samples); logs a warning
    saying ``reason(split)`` for each stored split left out."""
    for split in dict.fromkeys(self.SPLITS.values()):
      if split not in splits:
        logging.warning("%s: %s; make_source returns an empty %s split", self.name, reason(split), split)
    return {split: self._generate_examples(examples) for split, examples in splits.items()}

  def _generate_examples(self, examples):
    """(key, example) pairs made by the split's reader."""
    yield from examples


def features(num_keypoints, **extra):
  """Every builder's features, in this order: the JPEG image, ``keypoints`` (K, 2) in its pixels, ``visible``
  (K,), then ``extra`` (name -> feature)."""
  return {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      "keypoints": tensor(num_keypoints, 2),
      "visible": tensor(num_keypoints),
      **extra,
  }


def tensor(*shape, dtype=np.float32):
  """A fixed-shape tensor feature."""
  return tfds.features.Tensor(shape=shape, dtype=dtype)


def crop_box_feature():
  """[x0, y0, side] of the stored square in original pixels."""
  return tensor(3, dtype=np.int32)


def body_features(num_raw_joints, raw_name, **extra):
  """``features`` of the body builders (SURREAL, Human3.6M): Body16 keypoints, camera-frame 3D joints, the
  intrinsics of the stored image, the crop box, the release's own joints (2D and 3D), the source name."""
  return features(
      16,
      keypoints3d=tensor(16, 3),
      intrinsic_matrix=tensor(3, 3),
      crop_box=crop_box_feature(),
      **{f"keypoints_{raw_name}": tensor(num_raw_joints, 2), f"keypoints3d_{raw_name}": tensor(num_raw_joints, 3)},
      name=tfds.features.Text(),
      **extra)


# -- files -------------------------------------------------------------------------------------------------------


def missing_file(path, layout, context=""):
  """The error for a missing ``path`` (``context``, e.g. " (listed in X)", says why it is needed)."""
  return errors.MissingInputError(f"{path} is missing{context}; expected layout:\n{layout}")


def require(path, layout):
  """``path`` as a ``pathlib.Path`` if it exists; else raises ``missing_file``."""
  path = pathlib.Path(path)
  if not path.exists():
    raise missing_file(path, layout)
  return path


def require_all(paths, layout, what):
  """Raises a FileNotFoundError counting the missing ``paths`` and naming the first; ``what`` says what they are
  (e.g. "of the 2000 images that joints.mat annotates")."""
  missing = [p for p in paths if not p.exists()]
  if missing:
    raise errors.MissingInputError(f"{len(missing)} {what} are missing, first {missing[0]}; expected layout:\n{layout}")


def read_json(path, layout):
  """The JSON value in the release's file ``path``: ``missing_file`` if there is none, one line naming it if it cannot
  be read."""
  return workdirs.read_json(require(path, layout), "JSON file", pickles.REPLACE, kind=None)


def read_mat(path, layout, variable_names=None):
  """The variables of the release's MATLAB file ``path`` (``scipy.io.loadmat``; all, or those named)."""
  return _mat(scipy.io.loadmat, path, layout, variable_names=variable_names)


def mat_shapes(path, layout):
  """{name: shape} of the variables of the release's MATLAB file ``path``, without reading them."""
  return {name: shape for name, shape, _ in _mat(scipy.io.whosmat, path, layout)}


def _mat(read, path, layout, **options):
  """``read(path, **options)``: ``missing_file`` if there is no such file, one line naming it if it is no MATLAB
  file."""
  path = require(path, layout)
  try:
    return read(path, **options)
  except Exception as error:  # noqa: BLE001  whatever scipy makes of a file that is not MATLAB's
    raise errors.CorruptInputError(f"{path} is not a readable MATLAB file ({errors.one_line(error)}); "
                                   f"{pickles.REPLACE}") from None


def read_rgb(path, layout):
  """An image file as (H, W, 3) uint8 RGB; an alpha channel is dropped (as UDAPE does, ``[:, :, :3]``)."""
  with _open_image(require(path, layout)) as image:
    return np.asarray(image.convert("RGB"))


def jpeg_file(path, max_side=None):
  """(JPEG bytes, scale) of an image file: the file's own bytes when it is an RGB JPEG of side <= ``max_side``,
  else its RGB pixels, shrunk to at most ``max_side`` and encoded. scale = stored pixels per file pixel. The file
  is decoded whole either way (``_open_image``)."""
  path = pathlib.Path(path)
  with _open_image(path) as image:
    if image.format == "JPEG" and image.mode == "RGB" and (max_side is None or max(image.size) <= max_side):
      return path.read_bytes(), 1.0
    rgb = np.asarray(image.convert("RGB"))
  h, w = rgb.shape[:2]
  factor = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
  if factor < 1.0:
    rgb = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
  return _encode_jpeg(rgb), factor


def _encode_jpeg(rgb):
  """(H, W, 3) uint8 RGB -> JPEG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()


class CorruptImageError(errors.CorruptInputError):
  """An image file of the release that cannot be decoded whole: truncated, corrupt or not an image."""

  def __init__(self, path, cause, sample=None):
    self.path, self.cause = pathlib.Path(path), str(cause)
    image_of = f" (the image of {sample})" if sample else ""
    super().__init__(f"{path}{image_of} cannot be decoded: {cause}; replace it with the file from the release and "
                     "build again, or build with --skip_corrupt to leave out such samples")


@contextlib.contextmanager
def _open_image(path):
  """``PIL.Image.open(path)``, decoded whole: a corrupt or truncated file (which OpenCV may decode in part, or
  the pipeline's decoder reject in training) raises ``CorruptImageError``."""
  with contextlib.ExitStack() as stack:
    try:
      image = stack.enter_context(Image.open(path))
      image.load()  # raises on a truncated file (PIL's default ImageFile.LOAD_TRUNCATED_IMAGES = False)
    except OSError as error:
      if error.errno is not None:  # the file system's error (missing file, no permission), not the image's
        raise
      raise CorruptImageError(path, error) from error
    yield image


# -- tllib's crops -----------------------------------------------------------------------------------------------


def keypoint_box(keypoints):
  """(left, upper, right, lower): the extent of all the (K, 2) keypoints, visible or not."""
  return keypoints[:, 0].min(), keypoints[:, 1].min(), keypoints[:, 0].max(), keypoints[:, 1].max()


def square_box(box, width, height):
  """tllib's ``scale_box``: the square 1.5x ``box`` (left, upper, right, lower), moved inside a width x height
  image, as integer (left, upper, side); side = round(1.5 * longer side of ``box``), at most the shorter image side
  (and at least 1)."""
  left, upper, right, lower = box
  side = max(int(min(round(TLLIB_CROP_FACTOR * max(right - left, lower - upper)), width, height)), 1)
  left = min(max(int(round((left + right) / 2 - side / 2)), 0), width - side)
  upper = min(max(int(round((upper + lower) / 2 - side / 2)), 0), height - side)
  return left, upper, side


def crop_to_jpeg(image, box, max_side):
  """Crops the (left, upper, side) square of an (H, W, 3) uint8 BGR (OpenCV) image, shrinks it to at most
  ``max_side`` and encodes it; returns (JPEG bytes, scale: stored pixels per image pixel)."""
  left, upper, side = box
  crop = image[upper:upper + side, left:left + side]
  out = min(side, max_side)
  if out != side:
    crop = cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA)
  ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
  if not ok:
    raise ValueError(f"could not encode a {crop.shape} crop as JPEG")
  return encoded.tobytes(), out / side


def crop_hand(path, keypoints, flip):
  """tllib's hand crop of an image file: the square 1.5x keypoint box, one pixel narrower than the box (as tllib
  crops it), mirrored if ``flip``.

  Returns (JPEG bytes, (K, 2) float32 keypoints in crop pixels, int32 [x0, y0, side]).
  """
  with _open_image(path) as image:
    left, upper, side = square_box(keypoint_box(keypoints), *image.size)
    side -= 1
    if side < 1:
      raise errors.CorruptInputError(f"{path}: the keypoints span no area (box {keypoint_box(keypoints)}), nothing "
                                     "to crop")
    crop = np.asarray(image.convert("RGB").crop((left, upper, left + side, upper + side)))
  points = keypoints.astype(np.float64) - [left, upper]
  if flip:
    crop = crop[:, ::-1]
    points[:, 0] = side - 1 - points[:, 0]
  return _encode_jpeg(np.ascontiguousarray(crop)), points.astype(np.float32), np.array([left, upper, side], np.int32)


def to_crop(points, box, scale):
  """(K, 2) original pixels -> float32 pixels of the stored crop of ``box`` [x0, y0, ...] scaled by ``scale``."""
  return ((np.asarray(points, np.float64) - np.asarray(box[:2], np.float64)) * scale).astype(np.float32)


def crop_intrinsics(intrinsic_matrix, left, upper, factor):
  """Intrinsics of the crop at (left, upper) scaled by ``factor``: projecting with them gives stored pixels."""
  k = np.array(intrinsic_matrix, np.float64)
  k[0, 2] -= left
  k[1, 2] -= upper
  k[:2] *= factor
  return k


# -- UDAPE's crops -----------------------------------------------------------------------------------------------


def udape_box(x_min, y_min, x_max, y_max):
  """UDAPE's square around a box (``util.crop_ori``: ``s = max(w, h) / 200 * 1.25``, side ``200 s``): same
  centre, side 1.25 x the longer edge, not moved inside the image -> int32 [x0, y0, side]."""
  side = max(1, _round_half_up(UDAPE_CROP_FACTOR * max(x_max - x_min, y_max - y_min)))
  x0 = _round_half_up((x_min + x_max) / 2 - side / 2)
  y0 = _round_half_up((y_min + y_max) / 2 - side / 2)
  return np.array([x0, y0, side], np.int32)


def udape_sample(image, box, points):
  """Cuts the square ``box`` out of an (H, W, 3) uint8 RGB image, zeros outside the image, shrunk to at most
  ``MAX_SIDE`` -> (JPEG bytes, ``points`` in stored pixels)."""
  x0, y0, side = (int(v) for v in box)
  h, w = image.shape[:2]
  out = np.zeros((side, side, 3), np.uint8)
  left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
  if right > left and bottom > top:
    out[top - y0:bottom - y0, left - x0:right - x0] = image[top:bottom, left:right]
  scale = 1.0
  if side > MAX_SIDE:
    out = np.asarray(Image.fromarray(out).resize((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR))
    scale = MAX_SIDE / side
  return _encode_jpeg(out), to_crop(points, box, scale)


def udape_stored_box(box, crop_box, stored_side):
  """A box [x0, y0, x1, y1] in original pixels -> float32 pixels of the stored ``udape_sample`` square of
  ``crop_box`` [x0, y0, side], stored ``stored_side`` pixels wide."""
  return to_crop(np.reshape(box, (2, 2)), crop_box, stored_side / crop_box[2]).reshape(4)


def _round_half_up(value):
  return int(np.floor(value + 0.5))


# -- splits ------------------------------------------------------------------------------------------------------


def tllib_split(samples):
  """tllib's (train, test) lists: ``samples`` shuffled by ``random.seed(42); random.shuffle``, 'test' the first
  min(int(0.2 N), 3200) of them and 'train' the rest."""
  samples = list(samples)
  random.Random(TLLIB_SEED).shuffle(samples)  # the same permutation as random.seed(42); random.shuffle(samples)
  num_test = min(int(len(samples) * 0.2), TLLIB_MAX_TEST)
  return samples[num_test:], samples[:num_test]


def load_indices(path, size, layout):
  """A 1-D integer index file (UDAPE's cached split) whose entries index a list of ``size`` samples."""
  indices = pickles.read_npy(require(path, layout))
  if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
    raise errors.CorruptInputError(f"{path}: expected a 1-D integer index array, got {indices.dtype} {indices.shape}")
  if indices.size and (indices.min() < 0 or indices.max() >= size):
    raise errors.CorruptInputError(f"{path}: indices {indices.min()}..{indices.max()} outside the {size} samples "
                                   f"found; expected layout:\n{layout}")
  return indices.astype(np.int64)


# -- build machinery ---------------------------------------------------------------------------------------------


def bounded_map(function, items):
  """``map(function, items)`` in a thread pool, in order, with at most 4 results per thread pending (decoding and
  encoding in OpenCV release the GIL)."""
  workers = min(8, os.cpu_count() or 1)
  lookahead = 4 * workers
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(function, item))
      if len(pending) >= lookahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
