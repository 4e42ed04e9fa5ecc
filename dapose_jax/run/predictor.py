"""Keypoints of images from a trained run, in each image's own pixels: what ``dapose_jax.load`` returns and the
``predict`` command runs.

  import dapose_jax
  model = dapose_jax.load("runs/demo")                    # a run folder, its best/ folder or a step folder
  result = model.predict("photo.jpg")                     # or a uint8 (H, W, 3) array, a PIL image, or a list
  result.keypoints, result.confidence, model.keypoint_set.names
  picture = model.draw(image, result, threshold=0.3)

Each image is resized keeping its aspect ratio and zero-padded to the model's square input (tllib's ResizePad), the
images run in batches of ``config.eval_batch_size`` (the last one padded), each heatmap is decoded by ``decoding``
(``config.defaults.DECODERS``; ``dark`` by default) and the keypoints are mapped back to the image's pixels
(continuous coordinates: pixel (row i, column j) covers [j, j + 1) x [i, i + 1)). The model expects one subject
roughly centred in each image (there is no detector): crop each person, hand or animal first.
"""

import dataclasses
import pathlib

import cv2
import jax
import numpy as np
from PIL import Image, ImageOps

from dapose_jax import parallel
from dapose_jax.augment import transforms
from dapose_jax.plots import drawing
from dapose_jax.pose import decoding
from dapose_jax.run import finished
from dapose_jax.storage import workdirs


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The keypoints of one image: ``keypoints`` (K, 2) (x, y) in the image's pixels, ``confidence`` (K,) (each
  heatmap's maximum), ``names`` (K,) and, when asked for, ``heatmaps`` (h, w, K) of the model's square input."""
  keypoints: np.ndarray
  confidence: np.ndarray
  names: tuple
  heatmaps: np.ndarray = None


SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # PIL's modes of 16-bit (and 32-bit) grey images


def read_image(path):
  """The uint8 RGB (H, W, 3) pixels of an image file (``rgb8``)."""
  with Image.open(path) as image:
    return rgb8(image)


def rgb8(image):
  """The uint8 RGB (H, W, 3) pixels of a PIL image, turned as its EXIF orientation says and scaled by value range:
  16-bit grey (modes ``SIXTEEN_BIT_MODES``) from 0..65535 (x / 257, rounded; mode I clipped to that range), float
  grey (mode F) from 0..1, or from its own minimum..maximum when it has values outside [0, 1]; any other mode is
  8-bit and converted by PIL (palette, grey, CMYK, alpha dropped)."""
  image = ImageOps.exif_transpose(image)
  if image.mode not in SIXTEEN_BIT_MODES + ("F",):
    return np.asarray(image.convert("RGB"))
  values = np.asarray(image, np.float64)
  if image.mode in SIXTEEN_BIT_MODES:
    scaled = np.clip(values, 0, 65535) / 257
  else:
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if low < 0 or high > 1:
      values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.nan_to_num(np.clip(values, 0, 1)) * 255
  return np.repeat(np.round(scaled).astype(np.uint8)[..., None], 3, axis=-1)


def to_input(image, size):
  """(the model's input: ``image`` resized and padded to ``size`` x ``size``, the input positions of the
  original image's corners (0, 0) and (W, H)): what ``to_original`` inverts."""
  height, width = image.shape[:2]
  return transforms.resize_pad(image, np.array([[0.0, 0.0], [width, height]]), size)


def to_original(xy, corners, shape):
  """Input-pixel keypoints (K, 2) back in the pixels of the original image of ``shape`` (H, W, ...)."""
  height, width = shape[:2]
  return (np.asarray(xy, np.float64) - corners[0]) * [width, height] / (corners[1] - corners[0])


def keypoint_predictor(model, mesh, flip=False, decoder="dark"):
  """jit: (state, uint8 input images (B, S, S, 3)) -> (xy in input pixels (B, K, 2), confidence (B, K), heatmaps),
  decoded by ``decoder`` (one of ``config.defaults.DECODERS``); ``flip``: SimpleBaseline's flip test."""
  decoding.check_decoder(decoder)
  method = finished.flip_tested(model.method, model.keypoint_set) if flip else model.method

  def predict(state, images):
    heatmaps = method.eval_heatmaps(model.config, state, images)
    return (*decoding.keypoints_in_pixels(heatmaps, model.config.image_size, decoder, model.config.sigma), heatmaps)

  data = parallel.data_sharding(mesh)
  return jax.jit(predict, in_shardings=(parallel.replicated(mesh), data), out_shardings=(data, data, data))


def predict_batches(model, mesh, images, *, flip=False, decoder="dark"):
  """Yields (xy in each image's pixels (K, 2), confidence (K,), input heatmaps) of each (H, W, 3) uint8 image of
  the iterable ``images``, batched as the config says."""
  size, batch_size = model.config.image_size, model.config.eval_batch_size
  parallel.local_batch_size(batch_size, "config.eval_batch_size")
  predictor = keypoint_predictor(model, mesh, flip, decoder)
  pending = []

  def flush():
    inputs = np.zeros((batch_size, size, size, 3), np.uint8)
    for i, (_, square, _) in enumerate(pending):
      inputs[i] = square
    xy, confidence, heatmaps = map(np.asarray, predictor(model.state, inputs))
    done = [(to_original(xy[i], corners, image.shape), confidence[i], heatmaps[i])
            for i, (image, _, corners) in enumerate(pending)]
    pending.clear()
    return done

  for image in images:
    pending.append((image, *to_input(image, size)))
    if len(pending) == batch_size:
      yield from flush()
  if pending:
    yield from flush()


class PoseModel:
  """A trained run's model for use from Python (``dapose_jax.load``): ``predict`` images, ``draw`` the results;
  ``keypoint_set`` and ``config`` of the run, ``step`` of its checkpoint, ``restored`` (the ``finished.Model``) and
  the ``mesh`` it is replicated over."""

  def __init__(self, model, mesh):
    self.restored, self.mesh = model, mesh
    self.keypoint_set, self.config, self.step = model.keypoint_set, model.config, model.checkpoint.step

  def predict(self, images, *, decoding="dark", flip=False, heatmaps=False):
    """The ``Prediction`` of one image (a path, a PIL image or a uint8 (H, W, 3) array), or a list of them for a
    list of images or an (N, H, W, 3) array."""
    single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
    arrays = [_as_array(image) for image in ([images] if single else images)]
    results = [Prediction(xy, confidence, self.keypoint_set.names, maps if heatmaps else None)
               for xy, confidence, maps in predict_batches(self.restored, self.mesh, arrays, flip=flip,
                                                           decoder=decoding)]
    return results[0] if single else results

  def draw(self, image, prediction, *, threshold=0.0, labels=True):
    """``image`` (any form ``predict`` takes) with the skeleton of ``prediction`` drawn over it, keypoints of
    confidence <= ``threshold`` left out, named with their confidence (``labels``): a uint8 array, the image
    enlarged to a shorter side of ``READABLE_SIDE`` where it is smaller."""
    return draw(_as_array(image), prediction.keypoints, prediction.confidence, self.keypoint_set, threshold, labels)


READABLE_SIDE = 512  # the shorter side a drawing is enlarged to, so that its labels can be read


def draw(image, keypoints, confidence, keypoint_set, threshold=0.0, labels=True):
  """``image`` with the skeleton of ``keypoints`` drawn, those of confidence <= ``threshold`` left out, and with
  ``labels`` each drawn keypoint's name and confidence beside it; an image whose shorter side is below
  ``READABLE_SIDE`` is enlarged to it first (the keypoints with it)."""
  confidence = np.asarray(confidence, np.float64)
  shown = np.where(confidence > threshold, confidence, 0.0)
  factor = max(1.0, READABLE_SIDE / min(image.shape[:2]))
  if factor > 1:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_LINEAR)
  keypoints = np.asarray(keypoints, np.float64) * factor
  out = drawing.draw_keypoints(image, keypoints, keypoint_set, visible=shown)
  if labels:
    offset = max(4, round(min(out.shape[:2]) / 60))
    for i in np.flatnonzero((shown > 0) & np.isfinite(keypoints).all(axis=1)):
      x, y = keypoints[i]
      drawing.put_label(out, f"{keypoint_set.names[i]} {confidence[i]:.2f}", (round(x) + offset, round(y) - offset),
                        scale=0.4)
  return out


def _as_array(image):
  if isinstance(image, (str, pathlib.Path)):
    return read_image(image)
  if isinstance(image, Image.Image):
    return rgb8(image)
  array = np.asarray(image)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
    raise ValueError(f"expected an image path, a PIL image or a uint8 (H, W, 3) RGB array, got {array.dtype} "
                     f"{array.shape}")
  return array


def load(run_or_checkpoint, config=None):
  """The ``PoseModel`` of a run folder (its newest checkpoint), its ``best`` folder or one step folder, restored
  with ``config`` (a ConfigDict; default: the run's recorded config.json), replicated over every device."""
  checkpoint = finished.locate(run_or_checkpoint)
  if config is None:
    config = finished.read_config(checkpoint.run / workdirs.CONFIG)
  mesh = parallel.make_mesh()
  return PoseModel(finished.load(config, checkpoint, mesh), mesh)
