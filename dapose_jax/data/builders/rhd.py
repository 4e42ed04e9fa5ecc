"""TFDS builder for the Rendered Hand Pose dataset (RHD), stored as the hand crops tllib makes.

tllib's ``RenderedHandPose`` turns each rendered image into up to two samples, one per hand, and crops each
at load time. This builder does the same work once, at build time, with the same rules:

- Each hand's 21 keypoints are reordered from RHD's native order (wrist, then per finger tip -> MCP) to Hand21
  (wrist, then per finger MCP -> tip). Points 0-20 of an annotation are the left hand, 21-41 the right one.
- A hand is kept only if (a) the side of its square 1.5x box (``common.square_box``), minus one, is larger than
  64 px, (b) more than 16 of its 21 keypoints are visible and (c) the other hand's keypoint box covers less
  than 30 % of its 1.5x box. The filter assumes RHD's 320x320 frames, as tllib does.
- The stored image is the 1.5x square crop around the keypoints (``common.crop_hand``). Like tllib, the crop is
  one pixel narrower than the box (``side`` = box side - 1). Right hands are then mirrored, so every stored hand
  looks like a left hand. ``keypoints`` are in pixels of the stored crop.
- ``crop_box`` = [x0, y0, side] in pixels of the original frame, and ``flipped``, record what was done. The
  original label is x = x0 + (side - 1 - u if flipped else u), y = y0 + v for a stored keypoint (u, v).

Splits: 'train' is RHD's training set and 'test' its evaluation set, in the order of the annotation pickle
(left hand before right hand). ``visible`` is RHD's own visibility flag (``uv_vis[:, 2]``), as tllib uses it.

Encoding: JPEG at quality 95. The pipeline resizes every crop to 256 px (and augments training crops), so the
small loss does not matter. A typical crop takes 3-7 KB; as PNG (the release's format) it would take three to
four times as much and be slower to decode.
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data import pickles
from dapose_jax.data.builders import common

# RHD native index of each Hand21 keypoint (the right hand adds 21).
HAND21_FROM_RHD = (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17)
FRAME_SIZE = 320  # every RHD frame is 320x320; the hand filter uses this size, as tllib does
MIN_SIDE = 64  # a kept hand's crop is larger than this
MIN_VISIBLE = 16  # a kept hand has more than this many visible keypoints
MAX_OVERLAP = 0.3  # the other hand covers less than this fraction of a kept hand's 1.5x box


def box_area(left, upper, right, lower):
  """Pixels in a box whose right and lower edges are inclusive (0 if empty)."""
  return max(right - left + 1, 0) * max(lower - upper + 1, 0)


def overlap_fraction(box, other):
  """Fraction of ``box``'s area that ``other`` covers."""
  inner = (max(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]), min(box[3], other[3]))
  return box_area(*inner) / box_area(*box)


def select_hands(annotations, path):
  """The hands tllib keeps from one annotation pickle, as (sample id, is_left) in tllib's order."""
  kept = []
  for sample_id, anno in annotations.items():
    uv_vis = _array(anno, "uv_vis", (42, 3), path, sample_id)
    hands = [uv_vis[list(HAND21_FROM_RHD)], uv_vis[[i + 21 for i in HAND21_FROM_RHD]]]
    boxes = [common.keypoint_box(hand[:, :2]) for hand in hands]
    for this, other, is_left in ((0, 1, True), (1, 0, False)):
      left, upper, side = common.square_box(boxes[this], FRAME_SIZE, FRAME_SIZE)
      scaled = (left, upper, left + side - 1, upper + side - 1)  # right and lower edges inclusive, as tllib's
      if (side - 1 > MIN_SIDE
          and hands[this][:, 2].sum() > MIN_VISIBLE
          and overlap_fraction(scaled, boxes[other]) < MAX_OVERLAP):
        kept.append((sample_id, is_left))
  return kept


def _array(anno, key, shape, path, sample_id):
  value = anno.get(key) if isinstance(anno, dict) else None
  if value is None:
    raise errors.CorruptInputError(f"{path}: sample {sample_id}: no {key!r} in {anno!r:.200}")
  value = np.asarray(value)
  if value.shape != shape or not np.issubdtype(value.dtype, np.number):
    note = " (21 keypoints of the left hand, then 21 of the right)" if shape[0] == 42 else ""
    raise errors.CorruptInputError(f"{path}: sample {sample_id}: expected {key!r} of shape {shape}{note}, got shape "
                                   f"{value.shape}")
  return value


def load_pickle(path, layout):
  """The annotations of one set: the dict in the pickle ``path``, read without running anything it holds."""
  data = pickles.read_pickle(common.require(path, layout))
  if not isinstance(data, dict):
    raise errors.CorruptInputError(f"{path}: expected a dict sample_id -> annotation, got {type(data).__name__}")
  return data


class Rhd(common.Builder, skip_registration=True):
  """Rendered Hand Pose: one sample per kept hand, cropped at 1.5x its box, right hands mirrored."""

  SETS = {"train": "training", "test": "evaluation"}  # the stored split made of each of RHD's sets
  LAYOUT = (
      "  MANUAL_DIR/RHD_published_v2/training/anno_training.pickle  dict sample_id -> {'uv_vis': (42, 3) "
      "[u, v, visible], 'xyz': (42, 3), 'K': (3, 3)}\n"
      "  MANUAL_DIR/RHD_published_v2/training/color/00000.png ...   320x320 frames, named by sample id\n"
      "  MANUAL_DIR/RHD_published_v2/evaluation/anno_evaluation.pickle\n"
      "  MANUAL_DIR/RHD_published_v2/evaluation/color/00000.png ...\n"
      "  (mask/ and depth/ are not read; MANUAL_DIR may also be the RHD_published_v2 folder itself)")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download RHD_v1-1.zip (about 11 GB), the Rendered Hand Pose dataset (Zimmermann & Brox, ICCV 2017), "
      "from https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html and "
      f"unzip it so that:\n{LAYOUT}")
  HOMEPAGE = "https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html"
  CITATION = """@inproceedings{Zimmermann17,
  title = {Learning to Estimate 3D Hand Pose from Single RGB Images},
  author = {Zimmermann, Christian and Brox, Thomas},
  booktitle = {Proceedings of the IEEE International Conference on Computer Vision (ICCV)},
  year = {2017}
}"""

  def _features(self):
    return common.features(
        21,
        keypoints3d=common.tensor(21, 3),  # 'xyz', Hand21 order
        intrinsic_matrix=common.tensor(3, 3),  # 'K'
        image_id=np.int32,  # the sample id: color/%05d.png
        image_file=tfds.features.Text(),  # e.g. training/color/00042.png
        is_left=np.bool_,  # the hand (keypoints 0-20 of the release) or the right one (21-41)
        flipped=np.bool_,  # mirrored after cropping (the right hands)
        crop_box=common.crop_box_feature())

  def _root(self, manual_dir):
    return manual_dir / "RHD_published_v2" if (manual_dir / "RHD_published_v2").exists() else manual_dir

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager.manual_dir)
    generators = {}
    for split, subset in self.SETS.items():
      path = root / subset / f"anno_{subset}.pickle"
      annotations = load_pickle(path, self.LAYOUT)
      hands = select_hands(annotations, path)
      for sample_id in annotations:
        for key, shape in (("xyz", (42, 3)), ("K", (3, 3))):
          _array(annotations[sample_id], key, shape, path, sample_id)
      common.require_all(dict.fromkeys(root / subset / "color" / f"{i:05d}.png" for i, _ in hands), self.LAYOUT,
                         f"images of kept hands in {root / subset / 'color'}")
      generators[split] = self._generate_examples(root, subset, annotations, hands)
    return generators

  def _generate_examples(self, root, subset, annotations, hands):
    for key, (sample_id, is_left) in enumerate(hands):
      anno = annotations[sample_id]
      index = [i + (0 if is_left else 21) for i in HAND21_FROM_RHD]
      uv_vis = np.asarray(anno["uv_vis"])[index]
      name = f"{subset}/color/{sample_id:05d}.png"
      hand = self._read_image(f"{subset} sample {sample_id} ({'left' if is_left else 'right'} hand)",
                              common.crop_hand, root / name, uv_vis[:, :2], flip=not is_left)
      if hand is None:
        continue
      jpeg, keypoints, crop_box = hand
      yield key, {
          "image": jpeg, "keypoints": keypoints, "visible": uv_vis[:, 2].astype(np.float32),
          "keypoints3d": np.asarray(anno["xyz"])[index].astype(np.float32),
          "intrinsic_matrix": np.asarray(anno["K"], np.float32), "image_id": int(sample_id),
          "image_file": name, "is_left": is_left, "flipped": not is_left, "crop_box": crop_box,
      }
