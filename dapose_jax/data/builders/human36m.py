"""TFDS builder for Human3.6M (Ionescu et al., TPAMI 2014), a body target domain, as tllib's ``Human36M`` serves it.

It reads the release in the I2L-MeshNet / 3DMPPE annotation format (``Human36M.LAYOUT``) and does what tllib's
``preprocess`` does, subject by subject: every 5th entry of ``data.json['images']`` (list order), the 17 joints
mapped to Body16 with the thorax replaced by the midpoint of the two shoulders (in 3D, before projecting),
world -> camera with (R, t), pinhole projection with (f, c) (no lens distortion), and a square crop of 1.5x the
box of the 16 projected joints, clamped inside the image. tllib resizes every crop to 512x512; here crops are
shrunk to at most ``MAX_SIDE`` = 512 and never enlarged (H3.6M crops are almost always larger).

Splits: 'train' holds subjects 1, 5, 6, 7, 8 (subject by subject, list order). 'test' reproduces tllib's draw
from subjects 9 and 11: ``random.seed(42); random.choices(samples, k=3200)``, i.e. *with replacement*; example
i is draw i, and a sample drawn twice is stored twice, so every reader sees the duplicates. Any subset of the
subjects may be present (a fixture or partial download); the draw is then made from the test subjects present,
and a split with no subject present reads back empty.

Each example stores the crop (JPEG), Body16 and all 17 joints in pixels of the stored image, the camera-frame
3D joints (mm), the intrinsics of the stored image (projecting ``keypoints3d`` with ``intrinsic_matrix`` gives
``keypoints``; tllib instead keeps the uncropped principal point and moves the 3D points), the crop box and ids.
"""

import pathlib
import random

import cv2
import numpy as np

from dapose_jax import errors
from dapose_jax.data.builders import common

# H36M-17 index for each Body16 keypoint (tllib human36m.py). Index 7 (thorax, here H36M's L_Shoulder) is then
# replaced by the midpoint of the two shoulders, Body16 12 (H36M R_Shoulder) and 13 (H36M L_Shoulder).
BODY16_FROM_H36M17 = (3, 2, 1, 4, 5, 6, 0, 11, 8, 10, 16, 15, 14, 11, 12, 13)
THORAX, R_SHOULDER, L_SHOULDER = 7, 12, 13
NUM_H36M_JOINTS = 17
SUBJECTS = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
_ANNOTATIONS = ("data", "camera", "joint_3d")
_IDS = ("image_id", "subject", "action", "subaction", "camera", "frame")  # the columns of a subject's "ids"


def to_body16(joints17):
  """(..., 17, 3) H36M-17 world joints -> (..., 16, 3) Body16 with the thorax at the shoulders' midpoint."""
  body = np.array(np.asarray(joints17)[..., BODY16_FROM_H36M17, :], np.float64)
  body[..., THORAX, :] = 0.5 * (body[..., R_SHOULDER, :] + body[..., L_SHOULDER, :])
  return body


class Human36m(common.EmptySplitsMixin, common.Builder, skip_registration=True):
  """Human3.6M, subjects 1, 5, 6, 7, 8 (train) and 9, 11 (test), 16 Body16 joints, all marked visible."""

  FRAME_STRIDE = 5  # tllib: every 5th entry of each subject's data.json image list
  TEST_SIZE = 3200  # draws (with replacement) from the test subjects
  MAX_SIDE = common.MAX_SIDE
  LAYOUT = (
      "  MANUAL_DIR/annotations/Human36M_subject{S}_data.json       {'images': [{id, file_name, width, height, "
      "action_idx, subaction_idx, cam_idx, frame_idx, ...}], ...}\n"
      "  MANUAL_DIR/annotations/Human36M_subject{S}_camera.json     {cam_idx: {R (3, 3), t (3,) mm, f (2,), c (2,)}}\n"
      "  MANUAL_DIR/annotations/Human36M_subject{S}_joint_3d.json   {action_idx: {subaction_idx: {frame_idx: "
      "17 x [x, y, z] world mm}}}\n"
      "  MANUAL_DIR/images/<file_name>   e.g. s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg\n"
      "  for S in 1, 5, 6, 7, 8 (train) and 9, 11 (test); subjects may be missing, but each present subject needs "
      "all three files")
  HOMEPAGE = "http://vision.imar.ro/human3.6m/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Get Human3.6M from http://vision.imar.ro/human3.6m/ (registration; licence: non-commercial research "
      "only) in the format of I2L-MeshNet / 3DMPPE_POSENET_RELEASE (github.com/mks0601: extracted images and "
      f"the annotation jsons; see tllib issues #142, #157, #198). Expected layout:\n{LAYOUT}")
  CITATION = """@article{h36m_pami,
  title = {Human3.6M: Large Scale Datasets and Predictive Methods for 3D Human Sensing in Natural Environments},
  author = {Ionescu, Catalin and Papava, Dragos and Olaru, Vlad and Sminchisescu, Cristian},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume = {36},
  number = {7},
  pages = {1325--1339},
  year = {2014}
}"""

  def _features(self):
    return common.body_features(NUM_H36M_JOINTS, "h36m17", **dict.fromkeys(_IDS, np.int32))

  def _split_generators(self, dl_manager):
    root = pathlib.Path(dl_manager.manual_dir)
    present = [s for s in SUBJECTS["train"] + SUBJECTS["test"] if self._subject_present(root, s)]
    if not present:
      raise common.missing_file(_annotation_path(root, 1, "data"), self.LAYOUT,
                                ", and so is every other subject's annotation")
    samples = {s: self._load_subject(root, s) for s in present}
    train = [samples[s] for s in SUBJECTS["train"] if s in samples]
    test = [samples[s] for s in SUBJECTS["test"] if s in samples]
    # Example keys: train, the position in the subjects' lists; test, the draw.
    splits = {}
    if train:
      splits["train"] = self._examples(root, _concatenate(train), range(sum(len(t["name"]) for t in train)))
    if test:
      test = _concatenate(test)
      # = random.seed(42); random.choices
      draws = random.Random(common.TLLIB_SEED).choices(range(len(test["name"])), k=self.TEST_SIZE)
      splits["test"] = self._examples(root, test, draws)
    return self._present_splits(splits, lambda split: f"none of the {split} subjects {SUBJECTS[split]} is in {root}")

  def _subject_present(self, root, subject):
    paths = [_annotation_path(root, subject, kind) for kind in _ANNOTATIONS]
    exists = [p.exists() for p in paths]
    if any(exists) and not all(exists):
      raise common.missing_file(paths[exists.index(False)], self.LAYOUT,
                                f" (subject {subject} has its other annotation files)")
    return all(exists)

  def _load_subject(self, root, subject):
    """Every FRAME_STRIDE-th image of a subject with its Body16 / H36M-17 camera joints, projections and K."""
    data_path = _annotation_path(root, subject, "data")
    images = common.read_json(data_path, self.LAYOUT).get("images")
    if not isinstance(images, list):
      raise errors.CorruptInputError(f"{data_path}: expected a dict with an 'images' list")
    images = images[::self.FRAME_STRIDE]
    camera_path = _annotation_path(root, subject, "camera")
    cameras = common.read_json(camera_path, self.LAYOUT)
    joints_path = _annotation_path(root, subject, "joint_3d")
    joints = common.read_json(joints_path, self.LAYOUT)

    count = len(images)
    world17 = np.zeros((count, NUM_H36M_JOINTS, 3))
    rotation, translation, intrinsics = np.zeros((count, 3, 3)), np.zeros((count, 3)), np.zeros((count, 3, 3))
    ids = np.zeros((count, 6), np.int64)
    names = []
    for i, image in enumerate(images):
      key = (str(image["action_idx"]), str(image["subaction_idx"]), str(image["frame_idx"]))
      try:
        pose = joints[key[0]][key[1]][key[2]]
      except (KeyError, TypeError):
        raise errors.CorruptInputError(f"{joints_path} has no joints for action {key[0]}, subaction {key[1]}, frame "
                                       f"{key[2]} ({image['file_name']} in {data_path.name})") from None
      pose = np.asarray(pose, np.float64)
      if pose.shape != (NUM_H36M_JOINTS, 3):
        raise errors.CorruptInputError(f"{joints_path}: action {key[0]}, subaction {key[1]}, frame {key[2]} has "
                                       f"joints of shape {pose.shape}, expected ({NUM_H36M_JOINTS}, 3)")
      world17[i] = pose
      camera = cameras.get(str(image["cam_idx"]))
      if camera is None:
        raise errors.CorruptInputError(f"{camera_path} has no camera {image['cam_idx']} (used by {image['file_name']})")
      rotation[i] = np.asarray(camera["R"], np.float64).reshape(3, 3)
      translation[i] = np.asarray(camera["t"], np.float64).reshape(3)
      fx, fy = np.asarray(camera["f"], np.float64).reshape(2)
      cx, cy = np.asarray(camera["c"], np.float64).reshape(2)
      intrinsics[i] = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
      ids[i] = (image.get("id", -1), subject, image["action_idx"], image["subaction_idx"], image["cam_idx"],
                image["frame_idx"])
      names.append(image["file_name"])
    del joints, cameras

    missing = next((n for n in names if not (root / "images" / n).exists()), None)
    if missing is not None:
      raise common.missing_file(root / "images" / missing, self.LAYOUT, f" (listed in {data_path})")
    camera16 = project_to_camera(to_body16(world17), rotation, translation)
    camera17 = project_to_camera(world17, rotation, translation)
    return {"name": names, "ids": ids, "intrinsics": intrinsics, "camera16": camera16, "camera17": camera17,
            "uv16": project(camera16, intrinsics), "uv17": project(camera17, intrinsics)}

  def _examples(self, root, samples, draws):
    """Examples keyed by position in ``draws`` (sample indices; a repeated index is stored once per draw)."""
    keys = {}
    for key, index in enumerate(draws):
      keys.setdefault(index, []).append(key)

    def one(index):
      image_id, subject = samples["ids"][index][:2]
      rgb = self._read_image(f"image id {image_id} of subject {subject}", common.read_rgb,
                             root / "images" / samples["name"][index], self.LAYOUT)
      if rgb is None:
        return []
      image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # = cv2.imread's pixels, as crop_to_jpeg takes them
      box = common.square_box(common.keypoint_box(samples["uv16"][index]), image.shape[1], image.shape[0])
      jpeg, factor = common.crop_to_jpeg(image, box, self.MAX_SIDE)
      example = {
          "image": jpeg,
          "keypoints": common.to_crop(samples["uv16"][index], box, factor),
          "visible": np.ones(16, np.float32),  # tllib marks every H3.6M joint visible
          "keypoints3d": samples["camera16"][index].astype(np.float32),
          "intrinsic_matrix": common.crop_intrinsics(samples["intrinsics"][index], box[0], box[1], factor)
                              .astype(np.float32),
          "crop_box": np.asarray(box, np.int32),
          "keypoints_h36m17": common.to_crop(samples["uv17"][index], box, factor),
          "keypoints3d_h36m17": samples["camera17"][index].astype(np.float32),
          "name": samples["name"][index],
          **{field: int(value) for field, value in zip(_IDS, samples["ids"][index])},
      }
      return [(key, example) for key in keys[index]]

    for examples in common.bounded_map(one, sorted(keys)):
      yield from examples


def project_to_camera(world, rotation, translation):
  """(N, J, 3) world points -> camera frame with per-sample R (N, 3, 3) and t (N, 3): R X + t."""
  return np.einsum("nij,nkj->nki", rotation, world) + translation[:, None, :]


def project(camera, intrinsics):
  """(N, J, 3) camera points -> (N, J, 2) pixels with per-sample K (N, 3, 3)."""
  uvw = np.einsum("nij,nkj->nki", intrinsics, camera)
  return uvw[..., :2] / uvw[..., 2:]


def _annotation_path(root, subject, kind):
  return root / "annotations" / f"Human36M_subject{subject}_{kind}.json"


def _concatenate(parts):
  return {k: (sum((p[k] for p in parts), []) if k == "name" else np.concatenate([p[k] for p in parts]))
          for k in parts[0]}
