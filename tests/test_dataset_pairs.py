"""Pair indices of the built video data sets (``dapose_jax.data.pairs``): Human3.6M and raw-release SURREAL read
with ``make_source(..., pairs=True)``, on tiny releases in the real formats."""

import json

import cv2
import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax import errors
from dapose_jax.commands import build
from dapose_jax.config import defaults
from dapose_jax.data import pairs, pipeline, sources
from dapose_jax.data.builders import human36m, surreal
from dapose_jax.pose import skeletons
from tests.test_body_datasets import BODY16_FROM_H36M, H36M17, write_processed_release, write_surreal_clip

FRAME_SIZE = (160, 120)  # (width, height) of the fixture's frames
DEPTH = 3000.0  # mm; every joint at one depth, so 2D midpoints are 3D midpoints
# Human3.6M's joints are world joints per (action, subaction, frame), seen by every camera. R = I for both cameras:
# camera 1 is the world frame; camera 2 is shifted by t = 300 mm along x and has a shorter focal length, so it sees
# camera 1's pixel uv at c + 0.7 (uv - c) + (7, 0): the same pose, smaller and to the right.
CAMERAS = {1: {"R": np.eye(3).tolist(), "t": [0.0, 0.0, 0.0], "f": [100.0, 100.0], "c": [80.0, 60.0]},
           2: {"R": np.eye(3).tolist(), "t": [300.0, 0.0, 0.0], "f": [70.0, 70.0], "c": [80.0, 60.0]}}
MAX_SIDE = 48  # the build's MAX_SIDE: crops wider than 48 px are shrunk, others kept
# (action, subaction, frame) -> the centre and half extent (x, y) of the Body16 joints in camera 1's pixels; the
# crop side is round(1.5 x the longer extent).
POSES = {(2, 1, 0): ((60, 58), (25, 28)), (2, 1, 10): ((78, 60), (22, 26)), (2, 1, 20): ((95, 62), (30, 35)),
         (3, 2, 5): ((80, 60), (12, 14))}
# Stored samples of the train subject 1, in stored order: (action, subaction, camera), frame.
H36M_TRAIN = [
    ((2, 1, 1), 20),  # 0  sequence A, crop side 105
    ((2, 1, 2), 0),  # 1  sequence B (A's action and subaction, camera 2), side 59
    ((2, 1, 1), 0),  # 2  A, side 84
    ((3, 2, 1), 5),  # 3  sequence C, alone, side 42: not shrunk
    ((2, 1, 1), 10),  # 4  A, side 78
    ((2, 1, 2), 10),  # 5  B, side 55
]
# By hand: A is stored at frames 0 (sample 2), 10 (4), 20 (0), B at 0 (1), 10 (5); the last frame pairs back.
EXPECTED_DRIVING = [4, 5, 4, 3, 0, 1]
# Test subject 9: one sequence at frames 0 and 10, drawn TEST_SIZE times with replacement.
H36M_TEST = [((2, 1, 1), 0), ((2, 1, 1), 10)]
TEST_SIZE = 40


def config(name, data_dir):
  return ConfigDict(dict(name=name, keypoint_set="body16", data_dir=str(data_dir)))


def pattern(frame):
  """A smooth grey (H, W, 3) uint8 image that moves with ``frame`` (grey: JPEG's chroma subsampling leaves it
  alone), value at pixel index (x, y): ``pattern_at``."""
  y, x = np.mgrid[:FRAME_SIZE[1], :FRAME_SIZE[0]].astype(np.float64)
  return np.repeat(np.round(pattern_at(frame, x, y))[..., None], 3, axis=-1).astype(np.uint8)


def pattern_at(frame, x, y):
  """Frame ``frame``'s pattern at pixel-index coordinates x, y."""
  return 128 + 90 * np.sin((x + 2 * frame) / 6) * np.cos((y - frame) / 5)


def world_joints(centre, half, rng):
  """(17, 3) H36M-17 world joints (mm) whose Body16 joints seen by camera 1 fill the box centre +- half: r_ankle
  at its top left, l_ankle at its bottom right, the others uniform inside."""
  centre, half = np.asarray(centre, np.float64), np.asarray(half, np.float64)
  uv16 = centre + rng.uniform(-1, 1, (16, 2)) * half * 0.9
  uv16[0], uv16[5] = centre - half, centre + half
  uv17 = centre + rng.uniform(-10, 10, (17, 2))  # torso and nose: not Body16 joints
  for name, h36m_name in BODY16_FROM_H36M.items():
    uv17[H36M17.index(h36m_name)] = uv16[skeletons.BODY16.names.index(name)]
  camera = CAMERAS[1]
  return np.concatenate([(uv17 - camera["c"]) / camera["f"] * DEPTH, np.full((17, 1), DEPTH)], axis=1)


def pixels(world, camera):
  """(17, 2) H36M-17 and (16, 2) Body16 pixels of world joints seen by ``camera`` (R = I): f (X + t) / Z + c; the
  Body16 thorax is the shoulders' midpoint."""
  parameters = CAMERAS[camera]
  points = world + parameters["t"]
  uv17 = points[:, :2] / points[:, 2:] * parameters["f"] + parameters["c"]
  names = skeletons.BODY16.names
  uv16 = np.array([uv17[H36M17.index(BODY16_FROM_H36M[n])] if n != "thorax" else (uv17[11] + uv17[14]) / 2
                   for n in names])
  return uv17, uv16


def write_h36m_sequences(root, subject, stored, seed):
  """Human36M_subject{S}_{data,camera,joint_3d}.json listing ``stored`` ((action, subaction, camera), frame) at
  every 5th place of data.json, each followed by four later frames of its sequence (skipped by the build, so their
  images are not written), the world joints of ``POSES``, and the stored frames as ``pattern`` images. Returns each
  stored sample's H36M-17 and Body16 pixels."""
  rng = np.random.default_rng(seed)
  world = {key: world_joints(*POSES[key], rng) for key in sorted(POSES)}
  images, joints, truth = [], {}, []
  for (action, subaction, camera), frame in stored:
    stem = f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{camera:02d}"
    for step in range(human36m.Human36m.FRAME_STRIDE):
      file_name = f"{stem}/{stem}_{frame + step + 1:06d}.jpg"
      images.append({"id": len(images), "file_name": file_name, "width": FRAME_SIZE[0], "height": FRAME_SIZE[1],
                     "subject": subject, "action_idx": action, "subaction_idx": subaction, "cam_idx": camera,
                     "frame_idx": frame + step})
      joints.setdefault(str(action), {}).setdefault(str(subaction), {})[str(frame + step)] = \
          world[action, subaction, frame].tolist()
    (root / "images" / stem).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / images[-human36m.Human36m.FRAME_STRIDE]["file_name"]), pattern(frame)[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 100])
    uv17, uv16 = pixels(world[action, subaction, frame], camera)
    truth.append({"uv16": uv16, "uv17": uv17})
  (root / "annotations").mkdir(exist_ok=True)
  for kind, content in (("data", {"images": images, "annotations": []}), ("camera", {str(c): v for c, v in
                        CAMERAS.items()}), ("joint_3d", joints)):
    (root / "annotations" / f"Human36M_subject{subject}_{kind}.json").write_text(json.dumps(content))
  return truth


@pytest.fixture(scope="module")
def h36m(tmp_path_factory):
  root = tmp_path_factory.mktemp("h36m_pairs")
  truth = {"train": write_h36m_sequences(root, 1, H36M_TRAIN, seed=1),
           "test": write_h36m_sequences(root, 9, H36M_TEST, seed=9)}
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(human36m.Human36m, "MAX_SIDE", MAX_SIDE)
    patch.setattr(human36m.Human36m, "TEST_SIZE", TEST_SIZE)
    build.build("human36m", root, root.parent / f"{root.name}_tfds")
  cfg = config("human36m", root.parent / f"{root.name}_tfds")
  return {"config": cfg, "truth": truth, "plain": sources.make_source(cfg, "train"),
          "paired": sources.make_source(cfg, "train", pairs=True)}


def sequence_and_frame(sample):
  return (sample["subject"], sample["action"], sample["subaction"], sample["camera"]), sample["frame"]


def test_h36m_pairs_a_frame_with_the_next_stored_frame_of_its_sequence(h36m):
  paired, plain = h36m["paired"], h36m["plain"]
  assert len(paired) == len(plain) == 6
  np.testing.assert_array_equal(paired.driving, EXPECTED_DRIVING)
  for i, j in enumerate(EXPECTED_DRIVING):
    pair = paired[i]
    (sequence, frame), (driving_sequence, driving_frame) = map(sequence_and_frame, (pair["base"], pair["driving"]))
    expected_frame = H36M_TRAIN[j][1]
    assert (sequence, frame) == ((1, *H36M_TRAIN[i][0]), H36M_TRAIN[i][1])
    assert driving_sequence == sequence and driving_frame == expected_frame
    assert (pair["driving"]["image_id"], pair["driving"]["name"]) == (plain[j]["image_id"], plain[j]["name"])


def test_h36m_base_of_pair_i_is_sample_i_byte_for_byte(h36m):
  paired, plain = h36m["paired"], h36m["plain"]
  for i in range(len(plain)):
    base, sample = paired[i]["base"], plain[i]
    assert set(base) == set(sample)
    for field, value in sample.items():
      if isinstance(value, np.ndarray):
        assert base[field].dtype == value.dtype and base[field].tobytes() == value.tobytes(), field
      else:
        assert base[field] == value, field


def test_h36m_driving_keypoints_are_the_driving_frame_projected_into_the_base_crop(h36m):
  paired, truth = h36m["paired"], h36m["truth"]["train"]
  shrunk = 0
  for i, j in enumerate(EXPECTED_DRIVING):
    pair = paired[i]
    base, driving = pair["base"], pair["driving"]
    x0, y0, side = (float(v) for v in base["crop_box"])
    h, w = base["image"].shape[:2]
    assert h == w == min(side, MAX_SIDE)
    shrunk += side > MAX_SIDE
    scale = w / side  # stored pixels per frame pixel of the base crop
    expected = (truth[j]["uv16"] - [x0, y0]) * scale
    np.testing.assert_allclose(driving["keypoints"], expected, atol=2e-3)
    np.testing.assert_allclose(driving["keypoints_h36m17"], (truth[j]["uv17"] - [x0, y0]) * scale, atol=2e-3)
    inside = np.all((expected >= 0) & (expected <= [w, h]), axis=-1)
    np.testing.assert_array_equal(driving["visible"], inside.astype(np.float32))
    # one camera crop: the base's intrinsics, which project the driving frame's own 3D joints onto its keypoints
    k = np.asarray(base["intrinsic_matrix"], np.float64)
    np.testing.assert_allclose(driving["intrinsic_matrix"], k, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(driving["keypoints3d"], h36m["plain"][j]["keypoints3d"])
    uvw = driving["keypoints3d"].astype(np.float64) @ k.T
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], expected, atol=2e-3)
    np.testing.assert_array_equal(driving["crop_box"], base["crop_box"])
    assert driving["image"].shape == base["image"].shape
  assert shrunk == 5  # crops of 105, 59, 84, 78 and 55 px shrunk to 48; C's 42 px crop kept


def test_h36m_driving_image_is_the_driving_frame_seen_through_the_base_crop(h36m):
  paired, zeros = h36m["paired"], 0
  for i, j in enumerate(EXPECTED_DRIVING):
    pair = paired[i]
    base, driving = pair["base"], pair["driving"]
    x0, y0, side = (float(v) for v in base["crop_box"])
    dx0, dy0, dside = (float(v) for v in h36m["plain"][j]["crop_box"])
    h, w = base["image"].shape[:2]
    # frame position (continuous) of every base-crop pixel centre
    row, col = np.mgrid[:h, :w].astype(np.float64)
    x, y = (col + 0.5) * side / w + x0, (row + 0.5) * side / h + y0
    margin = 4.0  # frame pixels: bilinear blending with the zeros outside the driving crop stays within this
    within = (x > dx0 + margin) & (x < dx0 + dside - margin) & (y > dy0 + margin) & (y < dy0 + dside - margin)
    outside = (x < dx0 - margin) | (x > dx0 + dside + margin) | (y < dy0 - margin) | (y > dy0 + dside + margin)
    expected = pattern_at(H36M_TRAIN[j][1], x - 0.5, y - 0.5)
    error = np.abs(driving["image"].astype(np.float64) - expected[..., None])[within]
    # measured: 1.6 at most; 2.9 to 6.5 with the map off by half a stored pixel
    assert within.sum() > 100 and error.mean() < 2, (i, within.sum(), error.mean())
    assert (driving["image"][outside] == 0).all()
    zeros += outside.sum()
  assert zeros > 1000  # base crops reach well beyond their driving crops


def test_h36m_a_lone_frame_pairs_with_itself_unchanged(h36m):
  pair = h36m["paired"][3]
  for field, value in pair["base"].items():
    np.testing.assert_array_equal(pair["driving"][field], value, err_msg=field)


def test_h36m_copies_of_a_frame_in_the_test_split_pair_with_the_other_frame(h36m):
  paired = sources.make_source(h36m["config"], "test", pairs=True)
  plain = sources.make_source(h36m["config"], "test")
  frames = np.array([plain[i]["frame"] for i in range(len(plain))])
  assert len(paired) == TEST_SIZE and set(frames) == {0, 10}
  first = {f: int(np.flatnonzero(frames == f)[0]) for f in (0, 10)}  # the lowest index of each frame
  np.testing.assert_array_equal(paired.driving, np.where(frames == 0, first[10], first[0]))


def test_h36m_train_iterator_batches_pairs_with_one_augmentation_per_pair(h36m):
  paired = h36m["paired"]
  augment = ConfigDict(defaults.augment(30.0))
  batch = next(pipeline.train_iterator(paired, batch_size=4, image_size=32, augment=augment, seed=3, pairs=True))
  assert set(batch) == {"base", "driving"}
  for part in batch.values():
    assert part["image"].shape == (4, 32, 32, 3) and part["keypoints"].shape == (4, 16, 2)
  stored = [paired[i] for i in range(len(paired))]
  for row in range(4):
    # the stream's sample: the pair whose base keypoints map onto the row's by one similarity
    fits = []
    for pair in stored:
      source = np.concatenate([pair["base"]["keypoints"], np.ones((16, 1), np.float32)], axis=1)
      affine, *_ = np.linalg.lstsq(source, batch["base"]["keypoints"][row], rcond=None)
      fits.append((np.abs(source @ affine - batch["base"]["keypoints"][row]).max(), affine, pair))
    residual, affine, pair = min(fits, key=lambda fit: fit[0])
    assert residual < 1e-3
    # the driving keypoints moved by the same map: both samples of a pair got the same draws
    driving = np.concatenate([pair["driving"]["keypoints"], np.ones((16, 1), np.float32)], axis=1) @ affine
    np.testing.assert_allclose(batch["driving"]["keypoints"][row], driving, atol=1e-3)


def test_a_data_set_without_an_index_refuses_pairs_before_reading_anything(tmp_path):
  for name in ("lsp", "rhd"):
    cfg = ConfigDict(dict(name=name, keypoint_set="body16", data_dir=str(tmp_path / "missing")))
    with pytest.raises(errors.ConfigError, match=f"pairs=True: data set '{name}' has no pair index yet"):
      sources.make_source(cfg, "train", pairs=True)
  assert not (tmp_path / "missing").exists()


def test_driving_indices_by_hand():
  ids = [("a", 20), ("b", 0), ("a", 0), ("c", 5), ("a", 10), ("b", 10), ("a", 0)]
  # a: frames 0 (lowest index 2), 10 (4), 20 (0); the copy of a's frame 0 at 6 pairs like index 2
  np.testing.assert_array_equal(pairs.driving_indices(ids), [4, 5, 4, 3, 0, 1, 4])
  assert pairs.driving_indices([]).shape == (0,)


# ----------------------------------------------------------------------------------------------------------------
# SURREAL

SURREAL_CLIPS = [("train", "01_01_c0001", 8, (150, 120)), ("train", "02_03_c0002", 6, (170, 110)),
                 ("test", "05_01_c0003", 4, (160, 120))]


def test_surreal_raw_pairs_frames_of_one_clip_in_the_base_crop(tmp_path):
  annotations = {}
  for k, (split, clip, frames, centre) in enumerate(SURREAL_CLIPS):
    sequence = clip[:5]
    joints2d, _ = write_surreal_clip(tmp_path / "release" / "cmu" / split / "run0" / sequence, clip, frames, centre,
                                     seed=k)
    annotations[f"cmu/{split}/run0/{sequence}/{clip}.mp4"] = joints2d
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(surreal.Surreal, "FRAME_STRIDE", 2)
    build.build("surreal", tmp_path / "release", tmp_path / "tfds")
  plain = sources.make_source(config("surreal", tmp_path / "tfds"), "train")
  paired = sources.make_source(config("surreal", tmp_path / "tfds"), "train", pairs=True)
  stored = [(str(plain[i]["name"], "utf-8"), int(plain[i]["frame"])) for i in range(len(plain))]
  # frames 0, 2, 4, 6 and 0, 2, 4 of the two train clips, shuffled by tllib's rule, int(0.2 x 7) = 1 cut off
  assert len(stored) == 6
  for i, (name, frame) in enumerate(stored):
    clip_frames = sorted(f for n, f in stored if n == name)
    k = clip_frames.index(frame)
    expected_frame = clip_frames[k + 1] if k + 1 < len(clip_frames) else clip_frames[k - 1]
    pair = paired[i]
    assert (str(pair["driving"]["name"], "utf-8"), pair["driving"]["frame"]) == (name, expected_frame)
    x0, y0, side = pair["base"]["crop_box"]
    assert pair["base"]["image"].shape[0] == side  # SURREAL crops (at most 240 px) are stored unscaled
    joints = annotations[name][expected_frame][list(surreal.BODY16_FROM_SMPL24)]
    np.testing.assert_allclose(pair["driving"]["keypoints"], joints - [x0, y0], atol=1e-3)
    np.testing.assert_allclose(pair["driving"]["keypoints_smpl24"], annotations[name][expected_frame] - [x0, y0],
                               atol=1e-3)


def test_surreal_processed_copy_has_no_pair_index(tmp_path):
  write_processed_release(tmp_path / "processed")
  build.build("surreal", tmp_path / "processed", tmp_path / "tfds")
  with pytest.raises(errors.ConfigError, match="stores no frame numbers.*raw release"):
    sources.make_source(config("surreal", tmp_path / "tfds"), "train", pairs=True)
