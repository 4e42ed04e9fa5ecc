"""Base/driving pairs of the built video data sets: two stored frames of one sequence, shown in one camera crop.

Sequences (``SEQUENCES``): Human3.6M's samples of one (subject, action, subaction, camera); SURREAL's of one clip
(``name``, the video's path; raw-release builds only: tllib's processed copy stores no frame numbers and no crop
boxes, ``frame`` = -1, and is refused). A sample's place in its sequence is its ``frame`` (the video's frame
number). The other built data sets are single images and have no pair index.

Pair index: a split of N samples gives N pairs; pair i is (base i, driving ``driving[i]``). Let F be the distinct
frame numbers stored in sample i's sequence, ascending, and sample i's frame F[k]. Its driving sample is the
sample of frame F[k + 1] (the next stored frame), or of F[k - 1] where F[k] is the last; a sequence with one
stored frame pairs its samples with themselves (driving = base: no motion). Where a frame is stored more than once
(H3.6M's test split draws with replacement) "the sample of frame f" is the lowest index holding it, and copies
of one frame never pair with each other. Stored frames are those the build kept: H3.6M's train split keeps every
5th image of each subject's list (``Human36m.FRAME_STRIDE``), SURREAL every 10th frame of each clip
(``Surreal.FRAME_STRIDE``, 1/3 s at 30 fps) less those tllib's split rule leaves out, so a pair's frames are one
stored step apart or more.

Shared crop (``shared_crop``): the driving sample is shown in the base sample's crop, so the two images share one
camera crop and the motion between them is the person's own. In continuous pixel coordinates (pixel (row i,
column j) covers [j, j + 1) x [i, i + 1), as ``transforms``), a stored crop of ``crop_box`` [x0, y0, side] and
stored width w, height h maps frame point X to (X - (x0, y0)) * (w, h) / side. Driving-crop pixels go to frame
pixels and on to base-crop pixels by the affine map ``crop_to_crop`` (a scale s_b / s_d per axis and a
translation s_b (x0_d - x0_b, y0_d - y0_b), s = stored / crop side). The driving image is resampled through it
(``cv2.warpAffine``, bilinear) to the base image's size, zero where the base crop extends beyond the driving
crop; its 2D keypoints (``keypoints`` and the release's own ``keypoints_<joints>``) move by the same map, and its
``visible`` is set to 0 for keypoints outside the base image [0, w] x [0, h] (as
``methods.reconstruction.view_pair`` does for its views). Its ``intrinsic_matrix`` becomes M K_driving (M: the
map as a 3 x 3 matrix), which equals the base's (one sequence, one camera), so projecting the unchanged
``keypoints3d`` still gives ``keypoints``; its ``crop_box`` becomes the base's. Every other field (ids, ``name``,
3D joints) is the driving sample's own. The base is the stored sample i as ``make_source`` without pairs returns
it.

Cost: the index needs every sample's ids once, when the paired source is made. They are read without decoding
any image (``BuiltSplit.without_images``), but ArrayRecord stores an example as one record, so the whole split is
read from disk once (JPEG bytes included): measured 0.5 ms a sample for 120 KB records in the page cache
(decoding a sample whole takes 2.2 ms), about a minute per 100 000 samples, or the split's size over the disk's
read rate when the files are not cached. The index (N integers) is kept in memory by the ``PairedSplit`` (each
``make_source`` call builds its own) and written nowhere; each pair then decodes two samples (one where it pairs
with itself) and warps one image.
"""

import collections

import cv2
import numpy as np

from dapose_jax import errors

# The fields naming a sample's sequence, for each built data set with a pair index; ``FRAME`` orders a sequence.
SEQUENCES = {"human36m": ("subject", "action", "subaction", "camera"), "surreal": ("name",)}
FRAME = "frame"
_CHUNK = 1024  # records read per call while the ids are read


def has_index(name):
  """Whether the built data set ``name`` can be read as pairs (``SEQUENCES``)."""
  return name in SEQUENCES


class PairedSplit:
  """A built split (``sources.BuiltSplit``) of the data set ``name`` read as pairs: item i is dict(base=split[i],
  driving=``shared_crop`` of split[driving[i]] into the base's crop), ``driving`` from ``pair_index``."""

  def __init__(self, split, name):
    self.split = split
    self.keypoint_set = split.keypoint_set
    self.driving = pair_index(split, name)

  def __len__(self):
    return len(self.split)

  def __getitem__(self, index):
    base = self.split[index]
    j = int(self.driving[index])
    return {"base": base, "driving": shared_crop(base, base if j == index else self.split[j])}

  def __repr__(self):
    return f"PairedSplit({self.split!r})"


def pair_index(split, name):
  """(N,) int64: the driving index of each base index of ``split`` (the module's definition), from its ids read
  once without the images."""
  fields = SEQUENCES[name] + (FRAME,)
  records = split.without_images()
  if not len(records):
    return np.zeros(0, np.int64)
  if int(records[0][FRAME]) < 0:
    raise errors.ConfigError(
        f"pairs=True: this {name!r} build stores no frame numbers (frame = -1: tllib's processed copy, whose crops "
        "come without their clip's frame and crop box), so it has no pair index; build SURREAL from the raw "
        "release (cmu/.../*.mp4 and *_info.mat) or set its config's pairs=False")
  ids = []
  for start in range(0, len(records), _CHUNK):
    chunk = records.__getitems__(list(range(start, min(start + _CHUNK, len(records)))))
    ids += [(tuple(_hashable(sample[f]) for f in SEQUENCES[name]), int(sample[FRAME])) for sample in chunk]
  return driving_indices(ids)


def driving_indices(ids):
  """(N,) int64 driving index for each (sequence key, frame) of ``ids``, by the module's definition."""
  first = collections.defaultdict(dict)  # sequence -> {frame: lowest index storing it}
  for index, (sequence, frame) in enumerate(ids):
    first[sequence].setdefault(frame, index)
  frames = {sequence: sorted(by_frame) for sequence, by_frame in first.items()}
  rank = {sequence: {frame: k for k, frame in enumerate(ordered)} for sequence, ordered in frames.items()}
  driving = np.empty(len(ids), np.int64)
  for index, (sequence, frame) in enumerate(ids):
    ordered, k = frames[sequence], rank[sequence][frame]
    if len(ordered) == 1:
      driving[index] = index
    else:
      driving[index] = first[sequence][ordered[k + 1] if k + 1 < len(ordered) else ordered[k - 1]]
  return driving


def crop_to_crop(driving_box, driving_shape, base_box, base_shape):
  """(3, 3) float64 affine map from driving-crop to base-crop pixels (continuous coordinates) for the crop boxes
  [x0, y0, side] in frame pixels and the stored images' shapes (h, w, ...)."""
  (xd, yd, side_d), (xb, yb, side_b) = np.asarray(driving_box, np.float64), np.asarray(base_box, np.float64)
  scale_d = np.array([driving_shape[1], driving_shape[0]], np.float64) / side_d  # stored pixels per frame pixel
  scale_b = np.array([base_shape[1], base_shape[0]], np.float64) / side_b
  matrix = np.eye(3)
  matrix[[0, 1], [0, 1]] = scale_b / scale_d
  matrix[:2, 2] = scale_b * [xd - xb, yd - yb]
  return matrix


def shared_crop(base, driving):
  """The ``driving`` sample shown in the ``base`` sample's crop (the module's "shared crop"): a new dict."""
  matrix = crop_to_crop(driving["crop_box"], driving["image"].shape, base["crop_box"], base["image"].shape)
  h, w = base["image"].shape[:2]
  # cv2 maps pixel indices (pixel centres at integers): x_index = x - 0.5 on both sides of the map
  index_matrix = matrix[:2].copy()
  index_matrix[:, 2] += 0.5 * (matrix[[0, 1], [0, 1]] - 1)
  moved = dict(driving)
  moved["image"] = cv2.warpAffine(driving["image"], index_matrix, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  for field, value in driving.items():
    if field == "keypoints" or field.startswith("keypoints_"):
      points = np.asarray(value, np.float64)
      moved[field] = (points @ matrix[:2, :2].T + matrix[:2, 2]).astype(np.float32)
  inside = np.all((moved["keypoints"] >= 0) & (moved["keypoints"] <= [w, h]), axis=-1)
  moved["visible"] = (driving["visible"] * inside).astype(driving["visible"].dtype)
  moved["intrinsic_matrix"] = (matrix @ np.asarray(driving["intrinsic_matrix"], np.float64)).astype(np.float32)
  moved["crop_box"] = np.array(base["crop_box"])
  return moved


def _hashable(value):
  return value.item() if isinstance(value, np.ndarray) else value
