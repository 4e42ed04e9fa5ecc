"""SURREAL and Human3.6M builders: tiny releases in the real formats, plus the real samples when present."""

import json
import pickle
import random
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from ml_collections import ConfigDict

from dapose_jax.commands import build
from dapose_jax.data import pipeline, sources
from dapose_jax.data.builders import human36m, surreal
from dapose_jax.pose import skeletons

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_SURREAL = SHARED / "samples" / "surreal"
REAL_H36M = SHARED / "samples" / "h36m"

SMPL24 = ("pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
          "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow",
          "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand")
# Body16 name -> SMPL name, as tllib maps SURREAL: left and right exchanged, the collars serve as shoulders.
BODY16_FROM_SMPL = dict(
    r_ankle="l_ankle", r_knee="l_knee", r_hip="l_hip", l_hip="r_hip", l_knee="r_knee", l_ankle="r_ankle",
    pelvis="pelvis", thorax="spine3", upper_neck="neck", head_top="head", r_wrist="l_wrist", r_elbow="l_elbow",
    r_shoulder="l_collar", l_shoulder="r_collar", l_elbow="r_elbow", l_wrist="r_wrist")
H36M17 = ("pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "torso", "neck", "nose", "head",
          "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist")
# Body16 name -> H36M-17 name; the thorax is the shoulders' midpoint.
BODY16_FROM_H36M = {name: name for name in skeletons.BODY16.names if name in H36M17}
BODY16_FROM_H36M.update(upper_neck="neck", head_top="head")
K_SURREAL = np.array([[600.0, 0, 160], [0, 600, 120], [0, 0, 1]])


def config(name, data_dir):
  return ConfigDict(dict(name=name, keypoint_set="body16", data_dir=str(data_dir)))


def body16_index(table, names):
  return [names.index(table[name]) for name in skeletons.BODY16.names]


def bright_near(image, points, radius=2, threshold=128):
  """For each (x, y): is there a bright pixel within ``radius`` of the pixel holding it?"""
  gray = image.max(axis=-1)
  out = []
  for x, y in points:
    col, row = int(np.floor(x)), int(np.floor(y))
    window = gray[max(row - radius, 0):row + radius + 1, max(col - radius, 0):col + radius + 1]
    out.append(window.size > 0 and window.max() > threshold)
  return np.array(out)


def draw_dots(frame, points):
  """3x3 white dots on the pixels holding ``points`` (x, y)."""
  h, w = frame.shape[:2]
  for x, y in points:
    col, row = int(np.floor(x)), int(np.floor(y))
    frame[max(row - 1, 0):min(row + 2, h), max(col - 1, 0):min(col + 2, w)] = 255
  return frame


def name_of(sample):
  return str(sample["name"], "utf-8") if isinstance(sample["name"], bytes) else sample["name"]


def stored_points(source):
  return [(name_of(source[i]), int(source[i]["frame"])) for i in range(len(source))]


# ----------------------------------------------------------------------------------------------------------------
# SURREAL, raw release


def surreal_world(camera_points, cam_loc):
  """Camera-frame points -> SURREAL world points for a camera at ``cam_loc``."""
  return camera_points @ surreal.WORLD_TO_CAMERA + cam_loc  # R orthogonal: X = R^T (Xc - t), t = -R camLoc


def write_surreal_clip(directory, clip, num_frames, centre, seed, joints2d=None, joints3d=None, cam_loc=None):
  """A clip in the raw format: a 320x240 mp4v video with white dots at the joints, and its _info.mat. Without
  ``joints2d``, random poses around ``centre`` are projected with SURREAL's camera (joints2D = rounded)."""
  directory.mkdir(parents=True, exist_ok=True)
  if joints2d is None:
    rng = np.random.default_rng(seed)
    cam_loc = np.array([7.0, -1.0, 0.5]) + rng.normal(0, 0.1, 3)
    uv = np.asarray(centre) + rng.uniform([-35, -70], [35, 70], (num_frames, 24, 2))
    z = rng.uniform(6.3, 6.7, (num_frames, 24, 1))
    camera = np.concatenate([(uv - [160, 120]) * z / 600, z], axis=-1)
    joints3d = surreal_world(camera, cam_loc).astype(np.float32)
    camera = joints3d.astype(np.float64) @ surreal.WORLD_TO_CAMERA.T - surreal.WORLD_TO_CAMERA @ cam_loc
    projected = camera @ K_SURREAL.T
    joints2d = np.round(projected[..., :2] / projected[..., 2:]).astype(np.float32)
  writer = cv2.VideoWriter(str(directory / f"{clip}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
  for t in range(num_frames):
    writer.write(draw_dots(np.zeros((240, 320, 3), np.uint8), joints2d[t]))
  writer.release()
  scipy.io.savemat(directory / f"{clip}_info.mat", {
      "joints2D": joints2d.transpose(2, 1, 0), "joints3D": joints3d.transpose(2, 1, 0),
      "camLoc": np.asarray(cam_loc, np.float32).reshape(3, 1), "sequence": clip, "zrot": np.zeros((num_frames, 1))})
  return joints2d, joints3d


# (release split, run, sequence, clip, frames, 2D centre); the centre at x = 45 puts the crop against the border.
SURREAL_CLIPS = [
    ("train", "run0", "01_01", "01_01_c0001", 12, (160, 120)),
    ("train", "run0", "01_01", "01_01_c0002", 8, (45, 125)),
    ("train", "run2", "07_04", "07_04_c0001", 10, (200, 110)),
    ("test", "run1", "05_01", "05_01_c0003", 14, (150, 130)),
    ("test", "run0", "03_02", "03_02_c0001", 11, (170, 115)),
]
STRIDE = 3


def expected_surreal_lists(clips, stride):
  """tllib's rule written out: per release split, (video, frame) sorted by run/seq/clip, shuffled with seed 42."""
  lists = {}
  for split in ("train", "test"):
    samples = [(f"cmu/{s}/{run}/{seq}/{clip}.mp4", f) for s, run, seq, clip, n, _ in sorted(clips)
               if s == split for f in range(0, n, stride)]
    random.seed(42)
    random.shuffle(samples)
    n_test = min(int(0.2 * len(samples)), 3200)
    lists[split] = samples[n_test:] if split == "train" else samples[:n_test]
  return lists


@pytest.fixture(scope="module")
def surreal_raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("surreal_raw")
  annotations = {}
  for i, (split, run, seq, clip, n, centre) in enumerate(SURREAL_CLIPS):
    annotations[f"cmu/{split}/{run}/{seq}/{clip}.mp4"] = write_surreal_clip(
        root / "cmu" / split / run / seq, clip, n, centre, seed=i)
  # val is not read: a clip there changes nothing
  write_surreal_clip(root / "cmu" / "val" / "run0" / "09_09", "09_09_c0001", 4, (160, 120), seed=99)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(surreal.Surreal, "FRAME_STRIDE", STRIDE)
    build.build("surreal", root, root.parent / f"{root.name}_tfds")
  cfg = config("surreal", root.parent / f"{root.name}_tfds")
  return {split: sources.make_source(cfg, split) for split in ("train", "test")}, annotations


def test_surreal_raw_split_rule_counts_and_order(surreal_raw):
  source, _ = surreal_raw
  expected = expected_surreal_lists(SURREAL_CLIPS, STRIDE)
  # train: 4 + 3 + 4 = 11 sampled frames, n_test = 2 cut off; test: 5 + 4 = 9 frames, the first 1 kept
  assert len(source["train"]) == len(expected["train"]) == 9
  assert len(source["test"]) == len(expected["test"]) == 1
  assert stored_points(source["train"]) == expected["train"]
  assert stored_points(source["test"]) == expected["test"]


def test_surreal_raw_frame_subsampling(surreal_raw):
  source, _ = surreal_raw
  frames = {f for _, f in stored_points(source["train"])}
  assert frames <= {0, 3, 6, 9} and 9 in frames  # every 3rd frame, the last of a 12-frame clip included
  assert surreal.Surreal.FRAME_STRIDE == 10  # the default, restored


def test_surreal_raw_keypoints_land_on_the_dots_after_the_crop(surreal_raw):
  source, annotations = surreal_raw
  for split in ("train", "test"):
    for i in range(len(source[split])):
      sample = source[split][i]
      joints2d, _ = annotations[name_of(sample)]
      x0, y0, side = sample["crop_box"]
      h, w = sample["image"].shape[:2]
      assert h == w == side <= 240  # the frame is 240 high: crops are never enlarged
      # the crop is tllib's square: 1.5 x the longer side of the 24-joint box, clamped in the frame
      box = joints2d[sample["frame"]]
      assert side == min(round(1.5 * max(np.ptp(box[:, 0]), np.ptp(box[:, 1]))), 240)
      assert 0 <= x0 <= 320 - side and 0 <= y0 <= 240 - side
      np.testing.assert_allclose(sample["keypoints_smpl24"], box - [x0, y0], atol=1e-4)
      assert bright_near(sample["image"], sample["keypoints"]).all()
      np.testing.assert_array_equal(sample["visible"], np.ones(16))
  crop_lefts = [source["train"][i]["crop_box"][0] for i in range(len(source["train"]))
                if "c0002" in name_of(source["train"][i])]
  assert crop_lefts and all(left == 0 for left in crop_lefts)  # the person near the left edge: clamped


def test_surreal_collars_are_the_shoulders_and_left_right_follow_tllib(surreal_raw):
  source, _ = surreal_raw
  index = body16_index(BODY16_FROM_SMPL, SMPL24)
  assert index == list(surreal.BODY16_FROM_SMPL24)
  sample = source["train"][0]
  np.testing.assert_array_equal(sample["keypoints"], sample["keypoints_smpl24"][index])
  np.testing.assert_array_equal(sample["keypoints3d"], sample["keypoints3d_smpl24"][index])
  r, l = skeletons.BODY16.names.index("r_shoulder"), skeletons.BODY16.names.index("l_shoulder")
  np.testing.assert_array_equal(sample["keypoints"][[r, l]], sample["keypoints_smpl24"][[13, 14]])  # collars


def test_surreal_raw_projection_and_stored_intrinsics(surreal_raw):
  source, annotations = surreal_raw
  for i in range(len(source["train"])):
    sample = source["train"][i]
    joints2d, joints3d = annotations[name_of(sample)]
    x0, y0, _ = sample["crop_box"]
    k = np.asarray(sample["intrinsic_matrix"], np.float64)
    np.testing.assert_allclose(k, K_SURREAL - [[0, 0, x0], [0, 0, y0], [0, 0, 0]], atol=1e-4)
    camera = np.asarray(sample["keypoints3d_smpl24"], np.float64)
    assert (camera[:, 2] > 6).all()  # in front of the camera, metres
    uv = camera @ k.T
    # joints2D is the rounded projection: projecting the stored 3D with the stored K lands within half a pixel
    assert np.abs(uv[:, :2] / uv[:, 2:] - sample["keypoints_smpl24"]).max() <= 0.5 + 1e-3


def test_surreal_bad_releases_name_the_file(tmp_path):
  root = tmp_path / "release"
  for split in ("train", "test"):
    write_surreal_clip(root / "cmu" / split / "run0" / "01_01", "01_01_c0001", 2, (160, 120), seed=0)
  info = root / "cmu" / "train" / "run0" / "01_01" / "01_01_c0001_info.mat"
  video = info.with_name("01_01_c0001.mp4")
  moved = shutil.move(video, tmp_path / "video.mp4")
  with pytest.raises(FileNotFoundError, match=re.escape(str(video))):
    build.build("surreal", root, tmp_path / "tfds")
  shutil.move(moved, video)
  info_bytes = info.read_bytes()
  info.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(info)) + "(.|\n)*MANUAL_DIR/cmu"):
    build.build("surreal", root, tmp_path / "tfds")
  info.write_bytes(info_bytes)
  scipy.io.savemat(info, {"joints2D": np.zeros((2, 16, 2)), "joints3D": np.zeros((3, 16, 2)),
                          "camLoc": np.zeros((3, 1))})
  with pytest.raises(ValueError, match=re.escape(str(info)) + ".*joints2D"):
    build.build("surreal", root, tmp_path / "tfds")
  (tmp_path / "not_a_release").mkdir()
  (tmp_path / "not_a_release" / "README.txt").write_text("no SURREAL here")
  with pytest.raises(FileNotFoundError, match=re.escape("MANUAL_DIR/{train,test}/run{0,1,2}.json")):
    build.build("surreal", tmp_path / "not_a_release", tmp_path / "tfds")


# ----------------------------------------------------------------------------------------------------------------
# SURREAL, tllib's processed copy

PROCESSED_RUNS = {"train": (3, 3, 4), "test": (3, 2, 2)}


def write_processed_release(root, big=None):
  """{train,test}/run{k}.json + crops; ``big`` = (split, run, entry) stored as a 600x600 PNG."""
  rng = np.random.default_rng(5)
  entries = {}
  for split, runs in PROCESSED_RUNS.items():
    for run, count in enumerate(runs):
      (root / split / f"run{run}").mkdir(parents=True)
      listed = []
      for j in range(count):
        png = big == (split, run, j)
        size = 600 if png else 48
        name = f"img_{run}_{j:03d}." + ("png" if png else "jpg")
        keypoint2d = rng.uniform(4, size - 4, (24, 2))
        image = draw_dots(np.zeros((size, size, 3), np.uint8), keypoint2d)
        cv2.imwrite(str(root / split / f"run{run}" / name), image)
        listed.append({"name": name, "keypoint2d": keypoint2d.tolist(),
                       "keypoint3d": rng.uniform(-1, 1, (24, 3)).tolist(),
                       "intrinsic_matrix": [[300.0, 0, size / 2], [0, 300, size / 2], [0, 0, 1]]})
        entries[f"{split}/run{run}/{name}"] = listed[-1]
      (root / split / f"run{run}.json").write_text(json.dumps(listed))
  return entries


def test_surreal_processed_layout_split_rule_and_joint_map(tmp_path):
  entries = write_processed_release(tmp_path / "processed", big=("train", 1, 2))
  build.build("surreal", tmp_path / "processed", tmp_path / "tfds")
  index = body16_index(BODY16_FROM_SMPL, SMPL24)
  for split in ("train", "test"):
    source = sources.make_source(config("surreal", tmp_path / "tfds"), split)
    names = [f"{split}/run{run}/img_{run}_{j:03d}.{'png' if (split, run, j) == ('train', 1, 2) else 'jpg'}"
             for run, count in enumerate(PROCESSED_RUNS[split]) for j in range(count)]
    random.seed(42)
    random.shuffle(names)
    n_test = min(int(0.2 * len(names)), 3200)
    expected = names[n_test:] if split == "train" else names[:n_test]
    assert [name for name, _ in stored_points(source)] == expected
    assert len(source) == (8 if split == "train" else 1)
    for i in range(len(source)):
      sample = source[i]
      name = expected[i]
      entry = entries[name]
      factor = 512 / 600 if name.endswith(".png") else 1.0
      assert sample["image"].shape == ((512, 512, 3) if factor < 1 else (48, 48, 3))
      if factor == 1:
        on_disk = cv2.imread(str(tmp_path / "processed" / name))[..., ::-1]
        np.testing.assert_array_equal(sample["image"], on_disk)  # the crop's own JPEG bytes
      np.testing.assert_allclose(sample["keypoints"], np.array(entry["keypoint2d"])[index] * factor, rtol=1e-5)
      np.testing.assert_allclose(sample["keypoints3d"], np.array(entry["keypoint3d"])[index], rtol=1e-5)
      np.testing.assert_allclose(sample["intrinsic_matrix"][:2], np.array(entry["intrinsic_matrix"])[:2] * factor,
                                 rtol=1e-5)
      np.testing.assert_array_equal(sample["crop_box"], [-1, -1, -1])  # unknown for processed crops
      assert sample["frame"] == -1
      assert bright_near(sample["image"], sample["keypoints"]).all()


def test_surreal_processed_bad_files_are_named(tmp_path):
  root = tmp_path / "processed"
  write_processed_release(root)
  run2 = root / "test" / "run2.json"
  text = run2.read_text()
  run2.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(run2))):
    build.build("surreal", root, tmp_path / "tfds")
  listed = json.loads(text)
  listed[0]["keypoint2d"] = listed[0]["keypoint2d"][:16]
  run2.write_text(json.dumps(listed))
  with pytest.raises(ValueError, match=re.escape(str(run2)) + ".*keypoint2d"):
    build.build("surreal", root, tmp_path / "tfds")


# ----------------------------------------------------------------------------------------------------------------
# Human3.6M

H36M_FRAMES = {1: 7, 9: 6, 11: 11}  # images per subject in data.json: every 5th gives 2, 2 and 3 samples
H36M_SIZE = (80, 64)  # (width, height) of the fixture frames


def rotation_y(degrees):
  a = np.radians(degrees)
  return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def write_h36m_subject(root, subject, num_images, seed):
  """Human36M_subject{S}_{data,camera,joint_3d}.json in I2L-MeshNet's format plus frames with dots at the joints."""
  rng = np.random.default_rng(seed)
  cameras, images, joints, truth = {}, [], {}, []
  for cam in (1, 2):
    rotation = rotation_y(10 * cam + subject)
    # the person's centre sits 3 m in front of the camera
    cameras[str(cam)] = {"R": rotation.tolist(), "t": [20.0 * cam, -10.0, 3000.0], "f": [110.0, 112.0],
                         "c": [41.0, 30.5]}
  for i in range(num_images):
    cam, action, subaction, frame = 1 + i % 2, 2 + i // 4, 1 + (i // 2) % 2, 7 * i
    camera = np.concatenate([rng.uniform(-300, 300, (17, 2)), rng.uniform(-200, 200, (17, 1))], axis=1)
    camera[[11, 14], 2] = rng.uniform(-200, 200)  # the shoulders at one depth: their 2D midpoint is the thorax
    camera += [0, 0, 3000]
    parameters = cameras[str(cam)]
    world = (camera - parameters["t"]) @ np.array(parameters["R"])  # R X + t = camera
    joints.setdefault(str(action), {}).setdefault(str(subaction), {})[str(frame)] = world.tolist()
    file_name = f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam:02d}/" \
                f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam:02d}_{frame + 1:06d}.jpg"
    images.append({"id": 1000 * subject + i, "file_name": file_name, "width": H36M_SIZE[0],
                   "height": H36M_SIZE[1], "subject": subject, "action_name": "x", "action_idx": action,
                   "subaction_idx": subaction, "cam_idx": cam, "frame_idx": frame, "cam_param": {}})
    uv = camera[:, :2] / camera[:, 2:] * parameters["f"] + parameters["c"]
    body16 = uv[[H36M17.index(BODY16_FROM_H36M[n]) if n != "thorax" else 11 for n in skeletons.BODY16.names]]
    body16[7] = (uv[11] + uv[14]) / 2
    frame_image = draw_dots(np.zeros((H36M_SIZE[1], H36M_SIZE[0], 3), np.uint8), body16)
    (root / "images" / file_name).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / file_name), frame_image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    truth.append({"name": file_name, "camera17": camera, "uv16": body16, "id": 1000 * subject + i})
  (root / "annotations").mkdir(exist_ok=True)
  for kind, content in (("data", {"images": images, "annotations": []}), ("camera", cameras),
                        ("joint_3d", joints)):
    (root / "annotations" / f"Human36M_subject{subject}_{kind}.json").write_text(json.dumps(content))
  return truth


@pytest.fixture(scope="module")
def h36m_fixture(tmp_path_factory):
  root = tmp_path_factory.mktemp("h36m")
  truth = {s: write_h36m_subject(root, s, n, seed=s) for s, n in H36M_FRAMES.items()}
  build.build("human36m", root, root.parent / f"{root.name}_tfds")
  cfg = config("human36m", root.parent / f"{root.name}_tfds")
  return {split: sources.make_source(cfg, split) for split in ("train", "test")}, truth


def test_h36m_train_is_every_5th_image_of_the_train_subjects(h36m_fixture):
  source, truth = h36m_fixture
  assert [name_of(source["train"][i]) for i in range(len(source["train"]))] == \
      [t["name"] for t in truth[1][::5]]
  sample = source["train"][1]
  assert (sample["subject"], sample["image_id"], sample["frame"]) == (1, 1005, 35)


def test_h36m_test_draws_3200_with_replacement_like_random_choices(h36m_fixture):
  source, truth = h36m_fixture
  pool = [t["name"] for t in truth[9][::5] + truth[11][::5]]  # S9 then S11, every 5th image: 2 + 3
  state = random.getstate()
  random.seed(42)
  expected = random.choices(pool, k=3200)
  random.setstate(state)
  assert len(source["test"]) == 3200
  names = [name_of(source["test"][i]) for i in range(0, 3200)]
  assert names == expected
  assert len(set(names)) == 5  # every sample drawn, each about 640 times


def test_h36m_joint_map_thorax_projection_and_crop(h36m_fixture):
  source, truth = h36m_fixture
  by_name = {t["name"]: t for s in truth.values() for t in s}
  index = [H36M17.index(BODY16_FROM_H36M[n]) if n != "thorax" else 0 for n in skeletons.BODY16.names]
  for split, count in (("train", 2), ("test", 40)):
    for i in range(count):
      sample = source[split][i]
      t = by_name[name_of(sample)]
      camera16 = np.asarray(sample["keypoints3d"], np.float64)
      np.testing.assert_allclose(np.delete(camera16, 7, 0), np.delete(t["camera17"][index], 7, 0), atol=1e-3)
      np.testing.assert_allclose(camera16[7], (t["camera17"][11] + t["camera17"][14]) / 2, atol=1e-3)
      np.testing.assert_allclose(sample["keypoints3d_h36m17"], t["camera17"], atol=1e-3)
      x0, y0, side = sample["crop_box"]
      assert sample["image"].shape == (side, side, 3)
      assert side == min(round(1.5 * max(np.ptp(t["uv16"][:, 0]), np.ptp(t["uv16"][:, 1]))), 64)
      np.testing.assert_allclose(sample["keypoints"], t["uv16"] - [x0, y0], atol=1e-3)
      thorax, (r, l) = sample["keypoints"][7], sample["keypoints"][[12, 13]]
      np.testing.assert_allclose(thorax, (r + l) / 2, atol=1e-3)  # shoulders at one depth
      k = np.asarray(sample["intrinsic_matrix"], np.float64)
      uv = camera16 @ k.T
      np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], sample["keypoints"], atol=1e-3)
      assert bright_near(sample["image"], sample["keypoints"]).all()
      np.testing.assert_array_equal(sample["visible"], np.ones(16))


def test_h36m_fixture_feeds_the_eval_pipeline(h36m_fixture):
  source, _ = h36m_fixture
  batch = next(pipeline.eval_batches(source["test"], batch_size=4, image_size=32, resize_pad=False))
  assert batch["image"].shape == (4, 32, 32, 3) and batch["keypoints"].shape == (4, 16, 2)


def test_h36m_without_test_subjects_has_an_empty_test_split(tmp_path):
  write_h36m_subject(tmp_path / "h36m", 5, 6, seed=0)
  build.build("human36m", tmp_path / "h36m", tmp_path / "tfds")
  assert len(sources.make_source(config("human36m", tmp_path / "tfds"), "train")) == 2
  assert len(sources.make_source(config("human36m", tmp_path / "tfds"), "test")) == 0


def test_h36m_bad_releases_name_the_file(tmp_path):
  root = tmp_path / "h36m"
  truth = write_h36m_subject(root, 9, 6, seed=0)
  camera = root / "annotations" / "Human36M_subject9_camera.json"
  text = camera.read_text()
  camera.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(camera)) + "(.|\n)*MANUAL_DIR/annotations"):
    build.build("human36m", root, tmp_path / "tfds")
  camera.write_text(text)
  image = root / "images" / truth[5]["name"]
  image.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(image))):
    build.build("human36m", root, tmp_path / "tfds")
  joints_path = root / "annotations" / "Human36M_subject9_joint_3d.json"
  joints = json.loads(joints_path.read_text())
  action = next(iter(joints))
  subaction = next(iter(joints[action]))
  frame = next(iter(joints[action][subaction]))
  joints[action][subaction][frame] = joints[action][subaction][frame][:16]
  joints_path.write_text(json.dumps(joints))
  with pytest.raises(ValueError, match=re.escape(str(joints_path)) + ".*17, 3"):
    build.build("human36m", root, tmp_path / "tfds")
  (tmp_path / "not_a_release" / "images").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="Human36M_subject1_data.json(.|\n)*MANUAL_DIR/images"):
    build.build("human36m", tmp_path / "not_a_release", tmp_path / "tfds")


# ----------------------------------------------------------------------------------------------------------------
# Real samples (skipped without /work/shared/data)

REAL_INFOS = sorted(REAL_SURREAL.glob("*_info.mat")) if REAL_SURREAL.exists() else []
needs_surreal = pytest.mark.skipif(len(REAL_INFOS) != 3, reason=f"no real SURREAL _info.mat files in {REAL_SURREAL}")
needs_h36m = pytest.mark.skipif(not (REAL_H36M / "cameras.pkl").exists(), reason=f"no real H3.6M samples in {REAL_H36M}")


@needs_surreal
def test_real_surreal_info_projection_frame_and_bones():
  for path in REAL_INFOS:
    joints2d, joints3d, camera = surreal.read_info(path)
    assert joints2d.shape == (100, 24, 2) and camera.shape == (100, 24, 3)
    assert (joints2d >= 0).all() and (joints2d[..., 0] <= 320).all() and (joints2d[..., 1] <= 240).all()
    uv = camera @ K_SURREAL.T
    # SURREAL's own check (datageneration/misc/3Dto2D): round(K [R|t] X) == joints2D, for every joint and frame
    np.testing.assert_array_equal(np.round(uv[..., :2] / uv[..., 2:]), joints2d)
    assert (camera[..., 2] > 4).all()
    # The Body16 table picks rigid bones of one side each: their lengths do not change over the 100 frames.
    body = joints3d[:, list(surreal.BODY16_FROM_SMPL24)]
    names = skeletons.BODY16.names
    for a, b in (("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"),
                 ("r_elbow", "r_wrist"), ("l_elbow", "l_wrist")):
      length = np.linalg.norm(body[:, names.index(a)] - body[:, names.index(b)], axis=-1)
      assert 0.2 < length.mean() < 0.5 and length.std() < 1e-3, (path.name, a, b)
    # The collars, used as shoulders, sit nearer the neck than SMPL's shoulders do.
    neck = joints3d[:, 12]
    collar = np.linalg.norm(joints3d[:, [13, 14]] - neck[:, None], axis=-1)
    shoulder = np.linalg.norm(joints3d[:, [16, 17]] - neck[:, None], axis=-1)
    assert (collar < shoulder).all()


@needs_surreal
def test_real_surreal_annotations_build_with_synthetic_videos(tmp_path):
  root = tmp_path / "release"
  clips = {}
  for path, (split, run) in zip(REAL_INFOS, (("train", "run0"), ("train", "run1"), ("test", "run0"))):
    sequence = re.search(r"(\d+_\d+)_c\d+_info\.mat$", path.name).group(1)
    clip = path.name[-len("01_01_c0001_info.mat"):-len("_info.mat")]
    info = scipy.io.loadmat(path)
    joints2d = info["joints2D"].transpose(2, 1, 0)
    write_surreal_clip(root / "cmu" / split / run / sequence, clip, joints2d.shape[0], None, 0, joints2d=joints2d,
                       joints3d=info["joints3D"].transpose(2, 1, 0), cam_loc=info["camLoc"].reshape(3))
    clips[f"cmu/{split}/{run}/{sequence}/{clip}.mp4"] = joints2d
  build.build("surreal", root, tmp_path / "tfds")
  train = sources.make_source(config("surreal", tmp_path / "tfds"), "train")
  test = sources.make_source(config("surreal", tmp_path / "tfds"), "test")
  assert (len(train), len(test)) == (16, 2)  # 2 x 10 frames minus int(0.2 x 20); int(0.2 x 10) of 10
  for source in (train, test):
    for i in range(len(source)):
      sample = source[i]
      joints2d = clips[name_of(sample)][sample["frame"]]
      assert sample["frame"] % 10 == 0
      x0, y0, side = sample["crop_box"]
      np.testing.assert_allclose(sample["keypoints"], joints2d[list(surreal.BODY16_FROM_SMPL24)] - [x0, y0])
      assert bright_near(sample["image"], sample["keypoints"]).all()


def real_h36m_release(root):
  """The 4 real frames as an I2L-MeshNet-style release: cameras.pkl (R camera->world, T camera centre in m) is
  turned into the format's world->camera R and t (mm), the json's world joints (m) into mm."""
  coco = json.loads((REAL_H36M / "h36m_coco.json").read_text())
  with open(REAL_H36M / "cameras.pkl", "rb") as f:
    cameras = pickle.load(f)
  camera_ids = ("54138969", "55011271", "58860488", "60457274")
  actions = dict(Directions=2, Greeting=5, SittingDown=10, WalkDog=15)
  truth = {}
  for number, (image, annotation) in enumerate(zip(coco["images"], coco["annotations"])):
    match = re.match(r"S(\d+)_([A-Za-z]+)(?:_(\d))?\.(\d+)_(\d+)\.jpg", image["file_name"])
    subject, action, camera = int(match.group(1)), actions[match.group(2)], match.group(4)
    cam_idx, subaction, frame = camera_ids.index(camera) + 1, int(match.group(3) or 1), int(match.group(5)) - 1
    parameters = cameras[(f"S{subject}", camera)]
    rotation = parameters["R"].T  # world -> camera
    translation = -rotation @ parameters["T"][:, 0] * 1000
    world = np.array(annotation["keypoints_3d"]).reshape(17, 4)[:, :3] * 1000
    stem = f"s_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam_idx:02d}"
    file_name = f"{stem}/{stem}_{frame + 1:06d}.jpg"
    (root / "images" / stem).mkdir(parents=True)
    shutil.copy(next(REAL_H36M.glob(f"S{subject}/*/{image['file_name']}")), root / "images" / file_name)
    (root / "annotations").mkdir(exist_ok=True)
    data = {"images": [{"id": number, "file_name": file_name, "width": image["width"], "height": image["height"],
                        "subject": subject, "action_idx": action, "subaction_idx": subaction, "cam_idx": cam_idx,
                        "frame_idx": frame}], "annotations": []}
    camera_json = {str(cam_idx): {"R": rotation.tolist(), "t": translation.tolist(),
                                  "f": parameters["f"][:, 0].tolist(), "c": parameters["c"][:, 0].tolist()}}
    joints = {str(action): {str(subaction): {str(frame): world.tolist()}}}
    for kind, content in (("data", data), ("camera", camera_json), ("joint_3d", joints)):
      (root / "annotations" / f"Human36M_subject{subject}_{kind}.json").write_text(json.dumps(content))
    truth[file_name] = {"uv17": np.array(annotation["keypoints"]).reshape(17, 3)[:, :2], "world17": world,
                        "original": image["file_name"], "subject": subject}
  return truth


@needs_h36m
def test_real_h36m_frames_project_onto_the_released_2d(tmp_path):
  truth = real_h36m_release(tmp_path / "h36m")
  assert sorted(t["subject"] for t in truth.values()) == [1, 5, 7, 8]  # train subjects only
  build.build("human36m", tmp_path / "h36m", tmp_path / "tfds")
  train = sources.make_source(config("human36m", tmp_path / "tfds"), "train")
  assert len(train) == 4 and len(sources.make_source(config("human36m", tmp_path / "tfds"), "test")) == 0
  index = [H36M17.index(BODY16_FROM_H36M[n]) if n != "thorax" else 0 for n in skeletons.BODY16.names]
  errors, sides = [], []
  for i in range(4):
    sample = train[i]
    t = truth[name_of(sample)]
    x0, y0, side = sample["crop_box"]
    stored = min(side, 512)  # tllib resizes every crop to 512 x 512; smaller crops are kept as they are here
    assert sample["image"].shape == (stored, stored, 3) and 300 < side <= 1000
    sides.append(int(side))
    original = sample["keypoints"] * side / stored + [x0, y0]
    released = t["uv17"][index]
    released[7] = (t["uv17"][11] + t["uv17"][14]) / 2
    errors.append(np.abs(original - released).max())
    # the crop holds the person: its pixels match the frame's region, shrunk
    frame = cv2.imread(str(tmp_path / "h36m" / "images" / name_of(sample)))[..., ::-1]
    region = cv2.resize(frame[y0:y0 + side, x0:x0 + side], (stored, stored), interpolation=cv2.INTER_AREA)
    assert np.abs(region.astype(int) - sample["image"]).mean() < 3
  # The released 2D includes the lens distortion that tllib's (and this) pinhole projection leaves out:
  # 1.2 to 2.4 px in the 1000 px frames.
  print("crop sides", sides, "max |stored - released 2D| per frame (px)", np.round(errors, 2))
  assert max(errors) < 3, errors
