"""TFDS builders for TigDog (behaviorDiscovery2.0; Del Pero et al.), the real target of UDAPE's animal tasks.

As UDAPE reads it (``real_animal_all.py``, the loader of JitengMu/Learning-from-Synthetic-Animals):

- frames are listed shot after shot in the order of ``ranges.mat`` (rows shot id, first frame, last frame,
  both included); a shot without a landmark file is left out. UDAPE's cached ``train_idxs_by_video.npy`` /
  ``valid_idxs_by_video.npy`` index that list and give the stored 'train' / 'test' splits, in the files'
  order (horse 8380 / 1772, tiger 6523 / 1765), animal after animal (sorted);
- a frame's keypoints are the first 18 landmarks, [x, y] and visibility; tiger's are reordered to the horse
  order (``TIGER_ORDER``). Visibility is the landmark's flag, and 0 where y <= 0 (UDAPE skips those);
- the crop square is centred on the extent of the landmarks with positive coordinates, widened by 15 px
  and clipped to the frame, side 1.25 x its longer edge (``common.udape_box``).

One builder per animal, plus horse + tiger (UDAPE's ``--animal all``).
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data.builders import common

NUM_KEYPOINTS = 18
# Tiger landmark row of each Animal18 keypoint (UDAPE: [1..8, 15..18, 13, 14, 9..12] - 1).
TIGER_ORDER = (0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17, 12, 13, 8, 9, 10, 11)
MARGIN = 15  # pixels added around the landmark extent

LAYOUT = (
    "  MANUAL_DIR/behaviorDiscovery2.0/ranges/<animal>/ranges.mat       'ranges': rows (shot id, first frame, "
    "last frame)\n"
    "  MANUAL_DIR/behaviorDiscovery2.0/landmarks/<animal>/<shot id>.mat 'landmarks': one cell per frame of the shot, "
    "holding [x, y] and visibility per landmark\n"
    "  MANUAL_DIR/behaviorDiscovery2.0/<animal>/%08d.jpg                frames by global frame number\n"
    "  MANUAL_DIR/cached_data/real_animal/<animal>/train_idxs_by_video.npy, valid_idxs_by_video.npy")


class _TigDog(common.AnimalBuilder, skip_registration=True):
  """Shared reader; subclasses name the animals. Splits: UDAPE's train_idxs_by_video and valid_idxs_by_video."""

  LAYOUT = LAYOUT
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download the TigDog dataset (behaviorDiscovery2.0, http://calvin-vision.net/datasets/tigdog/) and "
      f"unpack it into MANUAL_DIR. {common.CACHED_DATA_NOTE} Expected layout:\n{LAYOUT}")
  HOMEPAGE = "http://calvin-vision.net/datasets/tigdog/"
  CITATION = """@article{DelPero17,
  title = {Behavior Discovery and Alignment of Articulated Object Classes from Unstructured Video},
  author = {Del Pero, Luca and Ricco, Susanna and Sukthankar, Rahul and Ferrari, Vittorio},
  journal = {International Journal of Computer Vision},
  volume = {121},
  number = {2},
  pages = {303--325},
  year = {2017}
}"""

  def _features(self):
    # Raw annotation: the 18 landmarks [x, y, visibility] in frame pixels (tiger reordered), the crop square
    # [x0, y0, side] in frame pixels, the shot and global frame number.
    return common.features(
        NUM_KEYPOINTS, landmarks=common.tensor(NUM_KEYPOINTS, 3), crop_box=common.crop_box_feature(),
        animal=tfds.features.Text(), shot_id=np.int32, frame=np.int32)

  def _animal_samples(self, root, animal):
    frames = _list_frames(root, animal)
    cells = {}  # landmark file -> its 'landmarks' cells (small: kept for the whole build), shared by the samples
    cached = root / "cached_data" / "real_animal" / animal
    return {split: [(frames[i], cells) for i in common.load_indices(cached / file_name, len(frames), LAYOUT)]
            for split, file_name in (("train", "train_idxs_by_video.npy"), ("test", "valid_idxs_by_video.npy"))}

  def _example(self, animal, sample):
    (shot_id, frame, frame_in_shot, landmark_path, image_path), cells = sample
    if landmark_path not in cells:
      cells[landmark_path] = _load_landmarks(landmark_path)
    landmarks = _frame_landmarks(cells[landmark_path], frame_in_shot, landmark_path)
    if animal == "tiger":
      landmarks = landmarks[list(TIGER_ORDER)]
    image = self._read_image(f"{animal} shot {shot_id} frame {frame}", common.read_rgb, image_path, LAYOUT)
    if image is None:
      return None
    h, w = image.shape[:2]
    x, y, flag = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    if not (x > 0).any() or not (y > 0).any():
      raise errors.CorruptInputError(f"{landmark_path}: frame {frame} (index {frame_in_shot} of shot {shot_id}) has no "
                                     "landmark with positive coordinates to place the crop")
    box = common.udape_box(max(x[x > 0].min() - MARGIN, 0.0), max(y[y > 0].min() - MARGIN, 0.0),
                           min(x[x > 0].max() + MARGIN, w), min(y[y > 0].max() + MARGIN, h))
    visible = ((flag > 0) & (y > 0)).astype(np.float32)
    encoded, keypoints = common.udape_sample(image, box, landmarks[:, :2])
    return {"image": encoded, "keypoints": keypoints, "visible": visible, "landmarks": landmarks.astype(np.float32),
            "crop_box": box, "animal": animal, "shot_id": int(shot_id), "frame": int(frame)}


def _list_frames(root, animal):
  """UDAPE's frame list: (shot id, global frame, frame index in the shot, landmark file, image) per frame."""
  base = root / "behaviorDiscovery2.0"
  ranges_path = base / "ranges" / animal / "ranges.mat"
  ranges = common.read_mat(ranges_path, LAYOUT).get("ranges")
  if ranges is None or ranges.ndim != 2 or ranges.shape[1] != 3:
    raise errors.CorruptInputError(f"{ranges_path}: expected an array 'ranges' of shape (N, 3) = (shot id, first "
                                   f"frame, last frame), got {None if ranges is None else ranges.shape}")
  frames = []
  for shot_id, first, last in ranges.astype(np.int64):
    landmark_path = base / "landmarks" / animal / f"{shot_id}.mat"
    if not landmark_path.exists():  # UDAPE leaves such shots out
      continue
    frames += [(shot_id, frame, frame - first, landmark_path, base / animal / f"{frame:08d}.jpg")
               for frame in range(first, last + 1)]
  return frames


def _load_landmarks(path):
  cells = common.read_mat(path, LAYOUT).get("landmarks")
  if cells is None:
    raise errors.CorruptInputError(f"{path}: no 'landmarks' array; expected layout:\n{LAYOUT}")
  return cells


def _frame_landmarks(cells, frame_in_shot, path):
  """(18, 3) [x, y, visibility] of one frame: cell ``frame_in_shot`` holds a record ([x, y] rows, flags)."""
  try:
    record = cells[frame_in_shot][0][0][0]
    coords = np.asarray(record[0], np.float64)
    flags = np.asarray(record[1], np.float64).reshape(-1)
  except (IndexError, TypeError, ValueError, KeyError):
    raise errors.CorruptInputError(f"{path}: no landmarks for frame {frame_in_shot} of the shot; expected "
                                   "'landmarks' with one cell per frame, each a record of [x, y] rows and visibility "
                                   "flags") from None
  if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] < NUM_KEYPOINTS or len(flags) != len(coords):
    raise errors.CorruptInputError(f"{path}: frame {frame_in_shot} of the shot has landmarks of shape "
                                   f"{coords.shape} with {len(flags)} flags; expected at least {NUM_KEYPOINTS} rows of "
                                   "[x, y] and one flag each")
  return np.concatenate([coords, flags[:, None]], axis=1)[:NUM_KEYPOINTS]


class TigDogHorse(_TigDog, skip_registration=True):
  name = "tigdog_horse"
  ANIMALS = ("horse",)


class TigDogTiger(_TigDog, skip_registration=True):
  name = "tigdog_tiger"
  ANIMALS = ("tiger",)


class TigDogHorseTiger(_TigDog, skip_registration=True):
  """UDAPE's ``--animal all``."""

  name = "tigdog_horse_tiger"
  ANIMALS = ("horse", "tiger")


BUILDERS = {b.name: b for b in (TigDogHorse, TigDogTiger, TigDogHorseTiger)}
