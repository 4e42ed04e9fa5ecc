"""TFDS builder for SURREAL (Varol et al., CVPR 2017), the body source domain, as tllib's ``SURREAL`` serves it.

Two release layouts are read (``Surreal.LAYOUT``); the builder detects which one MANUAL_DIR holds:

* the raw release: ``cmu/{train,test}/run{0,1,2}/<seq>/<clip>.mp4`` (320x240 videos) with ``<clip>_info.mat``
  (``joints2D`` 2x24xT pixels, ``joints3D`` 3x24xT world metres, ``camLoc``). Every ``FRAME_STRIDE``-th frame
  of each clip is cropped as tllib's processed copy was: a square of 1.5x the box of the 24 projected joints,
  clamped inside the frame (``common.square_box``).
* tllib's processed copy (its download links are dead): ``{train,test}/run{0,1,2}.json`` + the crops.

Each example stores the crop (JPEG, side at most ``MAX_SIDE``), the 24 SMPL joints and their Body16 selection in
pixels of the stored image, camera-frame 3D joints and the intrinsics of the stored image (so that projecting
``keypoints3d`` with ``intrinsic_matrix`` gives ``keypoints``), the crop box [x0, y0, side] in frame pixels and
the source (``name``: the video's path from ``cmu/`` on, or the processed crop's path; ``frame``). Processed
crops keep tllib's 3D and intrinsics as released; their crop box and frame are unknown and stored as -1.

Splits follow tllib: each release split's sample list (runs 0, 1, 2 concatenated) is shuffled by
``random.seed(42); random.shuffle`` and n = min(int(0.2 N), 3200) is cut off; pipeline 'train' is the release's
*train* list without its first n, pipeline 'test' the first n of the release's *test* list. The stored order is
that shuffled order. The release's val split is not read (tllib evaluates on 'test'). The raw layout lists its
samples by run, sequence and clip name, frames ascending; which frames tllib's processed copy holds, and in which
order, is not published, so a raw build follows the rule but cannot give tllib's exact sample lists.
"""

import collections
import logging
import pathlib

import cv2
import numpy as np

from dapose_jax import errors
from dapose_jax.data.builders import common

# SMPL-24 index for each Body16 keypoint (tllib surreal.py). SURREAL's saved joints have left and right
# exchanged relative to SMPL's names, hence SMPL "L_ankle" (7) for r_ankle. The shoulders are the SMPL
# *collar* joints 13, 14, as in tllib, not the SMPL shoulders 16, 17.
BODY16_FROM_SMPL24 = (7, 4, 1, 2, 5, 8, 0, 9, 12, 15, 20, 18, 13, 14, 19, 21)
NUM_SMPL_JOINTS = 24
# SURREAL's Blender camera (gulvarol/surreal datageneration/misc/3Dto2D): 60 mm lens on a 32 mm wide sensor at
# 320x240 gives a focal length of 600 px; the principal point is the frame centre.
INTRINSIC_MATRIX = np.array([[600.0, 0.0, 160.0], [0.0, 600.0, 120.0], [0.0, 0.0, 1.0]])
# World -> camera rotation, the same for every SURREAL clip (the Blender camera looks along world -x; the
# computer-vision camera has y down and z forward). Translation: -R @ camLoc.
WORLD_TO_CAMERA = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
UNKNOWN_CROP_BOX = (-1, -1, -1)

_RAW_ROOTS = ("cmu", "data/cmu", "SURREAL/data/cmu")
_RELEASE_SPLITS = ("train", "test")
_Clip = collections.namedtuple("_Clip", "video info num_frames")


class Surreal(common.EmptySplitsMixin, common.Builder, skip_registration=True):
  """SURREAL: synthetic SMPL bodies rendered on LSUN backgrounds, 24 joints, all marked visible (as tllib)."""

  # Raw layout only: keep frames 0, FRAME_STRIDE, 2 FRAME_STRIDE, ... of each clip. The videos run at 30 fps
  # (CMU mocap at 120 fps downsampled by 4) and consecutive frames are nearly the same pose on the same
  # background; every 10th frame (1/3 s apart) keeps ~10 distinct poses per 100-frame clip and gives roughly
  # half a million training crops, about what a RegDA run reads (30 epochs x 500 steps x 32). A subclass may
  # change it; the processed layout is read whole.
  FRAME_STRIDE = 10
  MAX_SIDE = common.MAX_SIDE  # crops are stored at their own size, shrunk to at most this side
  LAYOUT = (
      "  either the raw release (only the videos and _info.mat files are read; val is not used):\n"
      "    MANUAL_DIR/cmu/{train,test}/run{0,1,2}/<seq>/<seq>_c%04d.mp4   320x240 video\n"
      "    MANUAL_DIR/cmu/{train,test}/run{0,1,2}/<seq>/<seq>_c%04d_info.mat   joints2D (2, 24, T), joints3D "
      "(3, 24, T), camLoc (3, 1)\n"
      "    (MANUAL_DIR may also be the folder above cmu/: MANUAL_DIR/data/cmu or MANUAL_DIR/SURREAL/data/cmu)\n"
      "  or tllib's processed copy:\n"
      "    MANUAL_DIR/{train,test}/run{0,1,2}.json   [{name, keypoint2d (24, 2), keypoint3d (24, 3), "
      "intrinsic_matrix (3, 3)}, ...]\n"
      "    MANUAL_DIR/{train,test}/run{0,1,2}/<name>   the crops")
  HOMEPAGE = "https://www.di.ens.fr/willow/research/surreal/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request the SURREAL release at https://www.di.ens.fr/willow/research/surreal/data/ (licence: "
      "non-commercial research only) and download it with its download_surreal.sh (the *.mp4 and *_info.mat "
      "files of cmu/train and cmu/test are enough). tllib's processed copy (surreal_processed) is read too if "
      f"you have it. Expected layout:\n{LAYOUT}")
  CITATION = """@inproceedings{varol17_surreal,
  title = {Learning from Synthetic Humans},
  author = {Varol, G{\\"u}l and Romero, Javier and Martin, Xavier and Mahmood, Naureen and Black, Michael J.
            and Laptev, Ivan and Schmid, Cordelia},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  year = {2017}
}"""

  def _features(self):
    # frame: of the clip (raw layout); -1 for the processed layout
    return common.body_features(NUM_SMPL_JOINTS, "smpl24", frame=np.int32)

  def _split_generators(self, dl_manager):
    root = pathlib.Path(dl_manager.manual_dir)
    raw_root = next((root / r for r in _RAW_ROOTS if (root / r).is_dir()), None)
    if raw_root is not None:
      splits = {s: self._raw_split(raw_root, s) for s in _RELEASE_SPLITS}
    elif any((root / s).is_dir() for s in _RELEASE_SPLITS):
      splits = {s: self._processed_split(root, s) for s in _RELEASE_SPLITS}
    else:
      raise errors.MissingInputError(f"{root} holds neither SURREAL layout (no {root / 'cmu'} and no "
                                     f"{root / 'train'}); expected:\n{self.LAYOUT}")
    # Example keys: positions in tllib's shuffled, cut list.
    return self._present_splits({s: examples for s, (count, examples) in splits.items() if count},
                                lambda split: f"the release's {split} split gives no samples")

  # -- raw release ---------------------------------------------------------------------------------------------

  def _raw_split(self, cmu, split):
    """(number of examples, generator) of one release split of the raw layout."""
    split_dir = common.require(cmu / split, self.LAYOUT)
    clips = _list_clips(split_dir, self.LAYOUT)
    samples = [(c, f) for c, clip in enumerate(clips) for f in range(0, clip.num_frames, self.FRAME_STRIDE)]
    keep = _tllib_keep(len(samples), split)
    wanted = collections.defaultdict(dict)  # clip index -> {frame: key}
    for key, position in enumerate(keep):
      clip_index, frame = samples[position]
      wanted[clip_index][frame] = key
    jobs = [(clips[c], wanted[c], cmu.parent) for c in sorted(wanted)]
    return len(keep), self._generate_raw(jobs)

  def _generate_raw(self, jobs):
    for examples in common.bounded_map(self._raw_clip_examples, jobs):
      yield from examples

  def _raw_clip_examples(self, job):
    clip, frames, base = job
    joints2d, _, camera = read_info(clip.info)
    name = clip.video.relative_to(base).as_posix()
    examples = []
    for frame, image in _read_frames(clip.video, sorted(frames)):
      box = common.square_box(common.keypoint_box(joints2d[frame]), image.shape[1], image.shape[0])
      jpeg, factor = common.crop_to_jpeg(image, box, self.MAX_SIDE)
      intrinsics = common.crop_intrinsics(INTRINSIC_MATRIX, box[0], box[1], factor)
      keypoints24 = common.to_crop(joints2d[frame], box, factor)
      examples.append((frames[frame], _example(jpeg, keypoints24, camera[frame], intrinsics, box, name, frame)))
    if len(examples) < len(frames):
      logging.warning("%s has fewer frames than the %d that %s annotates: %d sampled frames skipped", clip.video,
                      clip.num_frames, clip.info.name, len(frames) - len(examples))
    return examples

  # -- tllib's processed copy ----------------------------------------------------------------------------------

  def _processed_split(self, root, split):
    entries = []
    for run in range(3):
      path = root / split / f"run{run}.json"
      for entry in common.read_json(path, self.LAYOUT):
        _check_processed_entry(path, entry)
        entries.append((path, run, entry))
    keep = _tllib_keep(len(entries), split)
    chosen = [(key, entries[position]) for key, position in enumerate(keep)]
    for key, (path, run, entry) in chosen:
      image_path = root / split / f"run{run}" / entry["name"]
      if not image_path.exists():
        raise common.missing_file(image_path, self.LAYOUT, f" (listed in {path})")
    return len(chosen), self._generate_processed(root, split, chosen)

  def _generate_processed(self, root, split, chosen):
    def one(item):
      key, (_, run, entry) = item
      relative = f"{split}/run{run}/{entry['name']}"
      image = self._read_image(f"entry {entry['name']!r} of {split}/run{run}.json", common.jpeg_file, root / relative,
                               self.MAX_SIDE)
      if image is None:
        return None
      jpeg, factor = image
      keypoints24 = common.to_crop(entry["keypoint2d"], (0, 0), factor)
      intrinsics = common.crop_intrinsics(entry["intrinsic_matrix"], 0, 0, factor)
      return key, _example(jpeg, keypoints24, np.asarray(entry["keypoint3d"], np.float64), intrinsics,
                           UNKNOWN_CROP_BOX, relative, -1)

    yield from (example for example in common.bounded_map(one, chosen) if example is not None)


def _tllib_keep(num_samples, split):
  """Positions, in a release split's list, of the samples tllib keeps from it, in tllib's order: the train part
  of the release's train list, the test part of its test list."""
  train, test = common.tllib_split(range(num_samples))
  return train if split == "train" else test


def _example(jpeg, keypoints24, camera24, intrinsics, box, name, frame):
  index = list(BODY16_FROM_SMPL24)
  return {
      "image": jpeg,
      "keypoints": keypoints24[index].astype(np.float32),
      "visible": np.ones(16, np.float32),  # tllib marks every SURREAL joint visible
      "keypoints3d": camera24[index].astype(np.float32),
      "intrinsic_matrix": intrinsics.astype(np.float32),
      "crop_box": np.asarray(box, np.int32),
      "keypoints_smpl24": keypoints24.astype(np.float32),
      "keypoints3d_smpl24": camera24.astype(np.float32),
      "name": name,
      "frame": frame,
  }


def _list_clips(split_dir, layout):
  """Every clip of a raw release split, in (run, sequence, clip) name order, with its annotated frame count."""
  clips = []
  for info in sorted(split_dir.glob("run*/*/*_info.mat")):
    video = info.with_name(info.name[:-len("_info.mat")] + ".mp4")
    if not video.exists():
      raise common.missing_file(video, layout, f" (the video of {info})")
    clips.append(_Clip(video, info, read_info_frame_count(info)))
  annotated = {clip.video for clip in clips}
  for video in sorted(split_dir.glob("run*/*/*.mp4")):
    if video not in annotated:
      info = video.with_name(video.stem + "_info.mat")
      raise common.missing_file(info, layout, f" (the annotation of {video})")
  return clips


def read_info_frame_count(path):
  """Frame count T of an ``_info.mat``, checking that joints2D is (2, 24, T) and joints3D (3, 24, T)."""
  shapes = common.mat_shapes(path, Surreal.LAYOUT)
  t2 = _joint_array_frames(path, shapes, "joints2D", 2)
  t3 = _joint_array_frames(path, shapes, "joints3D", 3)
  if t2 != t3:
    raise errors.CorruptInputError(f"{path}: joints2D has {t2} frames but joints3D {t3}")
  if int(np.prod(shapes.get("camLoc", (0,)))) != 3:
    raise errors.CorruptInputError(f"{path}: expected camLoc of 3 values, got shape {shapes.get('camLoc')}")
  return t2


def _joint_array_frames(path, shapes, name, dims):
  shape = shapes.get(name)
  if shape is None or len(shape) not in (2, 3) or shape[:2] != (dims, NUM_SMPL_JOINTS):
    raise errors.CorruptInputError(f"{path}: expected {name} of shape ({dims}, {NUM_SMPL_JOINTS}, T), got {shape}")
  return shape[2] if len(shape) == 3 else 1  # MATLAB drops a trailing singleton axis


def read_info(path):
  """An ``_info.mat`` as (joints2D (T, 24, 2) px, joints3D (T, 24, 3) world m, camera-frame joints (T, 24, 3))."""
  read_info_frame_count(path)
  info = common.read_mat(path, Surreal.LAYOUT, variable_names=("joints2D", "joints3D", "camLoc"))
  joints2d = np.asarray(info["joints2D"], np.float64).reshape(2, NUM_SMPL_JOINTS, -1).transpose(2, 1, 0)
  joints3d = np.asarray(info["joints3D"], np.float64).reshape(3, NUM_SMPL_JOINTS, -1).transpose(2, 1, 0)
  translation = -WORLD_TO_CAMERA @ np.asarray(info["camLoc"], np.float64).reshape(3)
  return joints2d, joints3d, joints3d @ WORLD_TO_CAMERA.T + translation


def _read_frames(video, frames):
  """Yields (frame index, BGR image) for the sorted ``frames`` of a video, decoding only what it needs."""
  capture = cv2.VideoCapture(str(video))
  if not capture.isOpened():
    raise errors.CorruptInputError(f"{video} cannot be opened as a video")
  try:
    wanted, index = iter(frames), 0
    target = next(wanted, None)
    while target is not None:
      if index < target:
        if not capture.grab():
          return
      else:
        ok, image = capture.read()
        if not ok:
          return
        yield index, image
        target = next(wanted, None)
      index += 1
  finally:
    capture.release()


def _check_processed_entry(path, entry):
  for field, shape in (("keypoint2d", (NUM_SMPL_JOINTS, 2)), ("keypoint3d", (NUM_SMPL_JOINTS, 3)),
                       ("intrinsic_matrix", (3, 3))):
    value = np.asarray(entry.get(field), dtype=object)
    if value.shape != shape:
      raise errors.CorruptInputError(f"{path}: entry {entry.get('name')!r} has {field} of shape {value.shape}, "
                                     f"expected {shape}")

