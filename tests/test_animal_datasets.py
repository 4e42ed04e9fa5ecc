import json
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from ml_collections import ConfigDict
from PIL import Image

from dapose_jax.commands import build
from dapose_jax.data import pipeline, sources
from dapose_jax.data.builders import common
from dapose_jax.pose import skeletons

REPO = Path(__file__).resolve().parents[1]
REAL_ANIMALPOSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "animalpose"
H, W = 48, 64  # fixture frames (the releases have 480 x 640 renders and larger photos)

# Written out from datasets.md 1.12, independently of the builder's tables.
SYN_VERTICES = {
    "horse": [1718, 1684, 1271, 1634, 1650, 1643, 1659, 925, 392, 564, 993, 726, 1585, 1556, 427, 1548, 967, 877],
    "tiger": [2753, 2679, 2032, 1451, 1287, 3085, 1632, 229, 1441, 1280, 2201, 1662, 266, 158, 270, 152, 219, 129],
    "hound": [2028, 2580, 878, 977, 1541, 1734, 799, 1575, 1446, 602, 780, 1580, 466, 631],
    "sheep": [2046, 1944, 1875, 1900, 1868, 1894, 173, 1829, 1422, 821, 622, 575, 1370, 716],
}
# Animal-Pose release order (datasets.md 1.10) and the release name of each Animal14 keypoint.
POSE20 = ["left_eye", "right_eye", "nose", "left_ear", "right_ear", "left_front_elbow", "right_front_elbow",
          "left_back_elbow", "right_back_elbow", "left_front_knee", "right_front_knee", "left_back_knee",
          "right_back_knee", "left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw", "throat",
          "withers", "tailbase"]


def pose20_name(animal14_name):
  side, *rest = animal14_name.split("_")
  side = {"l": "left", "r": "right"}[side]
  return "_".join([side] + [{"hoof": "paw"}.get(r, r) for r in rest])


# TigDog tiger landmark row (0-based) of each Animal18 keypoint group (datasets.md 1.11: [1..8, 15..18, 13, 14,
# 9..12] - 1): knees come from rows 14-17, shoulders from 12-13, elbows from 8-11.
TIGER_ROW = dict(enumerate(range(8))) | {8: 14, 9: 15, 10: 16, 11: 17, 12: 12, 13: 13, 14: 8, 15: 9, 16: 10, 17: 11}


def source(name, data_dir, split, keypoint_set):
  return sources.make_source(ConfigDict(dict(name=name, keypoint_set=keypoint_set, data_dir=str(data_dir))), split)


def dots(points, height=H, width=W):
  """A black RGB frame with a bright 3x3 dot centred on each (x, y) pixel that lies inside."""
  image = np.zeros((height, width, 3), np.uint8)
  for x, y in np.asarray(points, np.float64):
    col, row = int(np.floor(x)), int(np.floor(y))
    if 0 <= col < width and 0 <= row < height:
      image[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2] = 255
  return image


def assert_on_dots(sample, min_level=150):
  image = sample["image"].astype(np.float64).mean(axis=-1)
  for (x, y), v in zip(sample["keypoints"], sample["visible"]):
    if v > 0:
      assert image[int(np.floor(y)), int(np.floor(x))] > min_level, (x, y)


def save_jpeg(path, image):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path, quality=95)


# --- SynAnimal -------------------------------------------------------------------------------------------------


def write_synanimal(root, animal, train_idxs, valid_idxs, n=5, seed=0):
  """n renders <i>_img.png (RGBA, like the release's PNGs) with <i>_kpts.npy, plus UDAPE's split files.

  Render i has every vertex inside x in [10, 50 - i], y in [6, 30] (its extremes are vertices 0 and 1), keypoint
  vertices on whole pixels with a dot each; render 0's keypoint 1 lies left of the frame (x = -3).
  """
  rng = np.random.default_rng(seed)
  folder = root / "synthetic_animal" / f"{animal}_combineds5r5_texture"
  folder.mkdir(parents=True)
  rows = max(SYN_VERTICES[animal]) + 1
  written = []
  for i in range(n):
    vertices = np.zeros((rows, 3))
    vertices[:, 0] = rng.uniform(11, 49 - i, rows)
    vertices[:, 1] = rng.uniform(7, 29, rows)
    vertices[0, :2], vertices[1, :2] = (10, 6), (50 - i, 30)
    ids = SYN_VERTICES[animal]
    vertices[ids, 0] = rng.integers(11, 49 - i, len(ids))
    vertices[ids, 1] = rng.integers(7, 29, len(ids))
    if i == 0:
      vertices[ids[1], :2] = (-3, 20)
    vertices[ids, 2] = 7.0  # the release's 3rd column is not used
    rgba = np.concatenate([dots(vertices[ids, :2]), np.full((H, W, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(folder / f"{i:04d}_img.png")
    np.save(folder / f"{i:04d}_kpts.npy", vertices)
    written.append(vertices)
  cached = root / "cached_data" / "synthetic_animal" / f"{animal}_combineds5r5_texture"
  cached.mkdir(parents=True)
  np.save(cached / "train_idxs.npy", np.array(train_idxs))
  np.save(cached / "valid_idxs.npy", np.array(valid_idxs))
  return written


@pytest.fixture(scope="module")
def synanimal(tmp_path_factory):
  root = tmp_path_factory.mktemp("animal_data")
  vertices = {"horse": write_synanimal(root, "horse", [3, 0, 4], [2, 1], seed=1),
              "tiger": write_synanimal(root, "tiger", [1], [0, 4], seed=2)}
  data_dir = tmp_path_factory.mktemp("tfds")
  build.build("synanimal_horse_tiger", root, data_dir)
  return root, data_dir, vertices


def test_synanimal_splits_follow_udape_index_files_animal_after_animal(synanimal):
  _, data_dir, _ = synanimal
  train = source("synanimal_horse_tiger", data_dir, "train", "animal18")
  test = source("synanimal_horse_tiger", data_dir, "test", "animal18")
  assert [(s["animal"], s["image_index"]) for s in (train[i] for i in range(len(train)))] == [
      (b"horse", 3), (b"horse", 0), (b"horse", 4), (b"tiger", 1)]
  assert [(s["animal"], s["image_index"]) for s in (test[i] for i in range(len(test)))] == [
      (b"horse", 2), (b"horse", 1), (b"tiger", 0), (b"tiger", 4)]


def test_synanimal_keypoints_are_the_udape_mesh_vertices_on_the_cropped_render(synanimal):
  _, data_dir, vertices = synanimal
  train = source("synanimal_horse_tiger", data_dir, "train", "animal18")
  for i in range(len(train)):
    sample = train[i]
    animal, index = sample["animal"].decode(), int(sample["image_index"])
    expected = vertices[animal][index][SYN_VERTICES[animal], :2]
    np.testing.assert_allclose(sample["keypoints_original"], expected)
    box = sample["crop_box"]
    assert sample["image"].shape == (box[2], box[2], 3)  # small squares are stored unscaled
    np.testing.assert_allclose(sample["keypoints"], expected - box[:2])
    assert_on_dots(sample)


def test_synanimal_crop_is_udape_square_around_all_vertices_with_zero_padding(synanimal):
  _, data_dir, _ = synanimal
  sample = source("synanimal_horse_tiger", data_dir, "train", "animal18")[1]  # horse render 0
  assert sample["image_index"] == 0
  # vertices span x -3..50 (clipped to 0..50) and y 6..30: 50 x 24 px, centre (25, 18);
  # side 1.25 * 50 = 62.5 -> 63, x0 = 25 - 31.5 = -6.5 -> -6, y0 = 18 - 31.5 = -13.5 -> -13
  np.testing.assert_array_equal(sample["crop_box"], [-6, -13, 63])
  np.testing.assert_allclose(sample["bbox"], [-3, 50, 6, 30])  # UDAPE's [x_min, x_max, y_min, y_max]
  np.testing.assert_allclose(sample["box"], [-3 + 6, 6 + 13, 50 + 6, 30 + 13])  # [x0, y0, x1, y1] in the crop
  assert sample["image"][:13].max() <= 8 and sample["image"][:, :6].max() <= 8  # above and left of the frame


def test_synanimal_visibility_is_one_except_outside_the_render(synanimal):
  _, data_dir, _ = synanimal
  train = source("synanimal_horse_tiger", data_dir, "train", "animal18")
  visible = np.stack([train[i]["visible"] for i in range(len(train))])
  expected = np.ones_like(visible)
  expected[1, 1] = 0  # horse render 0 (train index 1) has r_eye at x = -3
  np.testing.assert_array_equal(visible, expected)


def test_synanimal_hound_and_sheep_use_animal14(tmp_path):
  vertices = write_synanimal(tmp_path / "m", "sheep", [0, 1, 2], [3, 4], seed=3)
  build.build("synanimal_sheep", tmp_path / "m", tmp_path / "tfds")
  test = source("synanimal_sheep", tmp_path / "tfds", "test", "animal14")
  assert len(test) == 2 and test[0]["keypoints"].shape == (14, 2)
  np.testing.assert_allclose(test[1]["keypoints_original"], vertices[4][SYN_VERTICES["sheep"], :2])
  assert len(source("synanimal_sheep", tmp_path / "tfds", "train", "animal14")) == 3


def test_large_crops_are_shrunk_with_their_keypoints(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "MAX_SIDE", 21)
  vertices = write_synanimal(tmp_path / "m", "horse", [2], [3], seed=4)
  build.build("synanimal_horse", tmp_path / "m", tmp_path / "tfds")
  sample = source("synanimal_horse", tmp_path / "tfds", "train", "animal18")[0]
  box = sample["crop_box"]
  assert box[2] > 21 and sample["image"].shape == (21, 21, 3)
  expected = (vertices[2][SYN_VERTICES["horse"], :2] - box[:2]) * 21 / box[2]
  np.testing.assert_allclose(sample["keypoints"], expected, rtol=1e-5)
  image = sample["image"].mean(axis=-1)
  for x, y in expected:  # the shrunk dot is still the brightest thing next to its keypoint
    row, col = int(y), int(x)
    assert image[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].max() > 80


def test_synanimal_too_few_vertex_rows_names_the_file(tmp_path):
  write_synanimal(tmp_path, "tiger", [0], [1])
  bad = tmp_path / "synthetic_animal" / "tiger_combineds5r5_texture" / "0001_kpts.npy"
  np.save(bad, np.zeros((3000, 3)))  # tiger needs vertex 3085
  with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*3086 rows"):
    build.build("synanimal_tiger", tmp_path, tmp_path / "tfds")


def test_synanimal_missing_split_file_names_it_and_the_layout(tmp_path):
  write_synanimal(tmp_path, "hound", [0], [1])
  missing = tmp_path / "cached_data" / "synthetic_animal" / "hound_combineds5r5_texture" / "valid_idxs.npy"
  missing.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + "(.|\n)*MANUAL_DIR/cached_data"):
    build.build("synanimal_hound", tmp_path, tmp_path / "tfds")


def test_split_index_beyond_the_renders_names_the_file(tmp_path):
  write_synanimal(tmp_path, "horse", [0, 5], [1])
  with pytest.raises(ValueError, match=re.escape(str(tmp_path / "cached_data")) + ".*train_idxs.npy.*5 samples"):
    build.build("synanimal_horse", tmp_path, tmp_path / "tfds")


# --- TigDog ----------------------------------------------------------------------------------------------------


def tigdog_landmarks(shift):
  """19 landmark rows [x, y] and flags of one frame; the first 18 are used.

  Row r sits at (20 + 4 (r % 7) + shift, 12 + 9 (r // 7)); row 5 is moved to y = 0 (flag 1), row 9 is
  unannotated (0, 0, flag 0), row 17 is annotated but flagged 0 and row 18 (ignored) is far away.
  """
  r = np.arange(19)
  coords = np.stack([20 + 4 * (r % 7) + shift, 12 + 9 * (r // 7)], axis=1).astype(np.float64)
  flags = np.ones(19)
  coords[5] = (40 + shift, 0)
  coords[9], flags[9] = (0, 0), 0
  flags[17] = 0
  coords[18] = (63, 47)
  return coords, flags


def write_tigdog(root, animal, train_idxs, valid_idxs, rows=19):
  """Shots 7 (frames 100-102), 9 (no landmark file: left out) and 4 (frames 50-51): frames 100, 101, 102, 50, 51.

  Frame number f is shifted by its position in that list, and written with dots at its 18 used landmarks.
  """
  base = root / "behaviorDiscovery2.0"
  (base / "ranges" / animal).mkdir(parents=True)
  (base / "landmarks" / animal).mkdir(parents=True)
  scipy.io.savemat(base / "ranges" / animal / "ranges.mat",
                   {"ranges": np.array([[7, 100, 102], [9, 200, 201], [4, 50, 51]], np.float64)})
  written, position = {}, 0
  for shot, frames in ((7, (100, 101, 102)), (4, (50, 51))):
    cells = np.empty((len(frames), 1), dtype=object)
    for j, frame in enumerate(frames):
      coords, flags = tigdog_landmarks(shift=position)
      cells[j, 0] = {"coords": coords[:rows], "visible": flags[:rows, None]}
      save_jpeg(base / animal / f"{frame:08d}.jpg", dots(coords[:18]))
      written[frame] = np.concatenate([coords, flags[:, None]], axis=1)
      position += 1
    scipy.io.savemat(base / "landmarks" / animal / f"{shot}.mat", {"landmarks": cells})
  cached = root / "cached_data" / "real_animal" / animal
  cached.mkdir(parents=True)
  np.save(cached / "train_idxs_by_video.npy", np.array(train_idxs))
  np.save(cached / "valid_idxs_by_video.npy", np.array(valid_idxs))
  return written


@pytest.fixture(scope="module")
def tigdog(tmp_path_factory):
  root = tmp_path_factory.mktemp("animal_data")
  written = {"horse": write_tigdog(root, "horse", [4, 0, 2], [1, 3]),
             "tiger": write_tigdog(root, "tiger", [3], [0])}
  data_dir = tmp_path_factory.mktemp("tfds")
  build.build("tigdog_horse_tiger", root, data_dir)
  return data_dir, written


def test_tigdog_frames_are_listed_shot_by_shot_skipping_shots_without_landmarks(tigdog):
  data_dir, _ = tigdog
  train = source("tigdog_horse_tiger", data_dir, "train", "animal18")
  test = source("tigdog_horse_tiger", data_dir, "test", "animal18")
  got = [(s["animal"], s["shot_id"], s["frame"]) for s in (train[i] for i in range(len(train)))]
  assert got == [(b"horse", 4, 51), (b"horse", 7, 100), (b"horse", 7, 102), (b"tiger", 4, 50)]
  got = [(s["animal"], s["frame"]) for s in (test[i] for i in range(len(test)))]
  assert got == [(b"horse", 101), (b"horse", 50), (b"tiger", 100)]


def test_tigdog_keypoints_are_the_first_18_landmarks_with_tiger_reordered(tigdog):
  data_dir, written = tigdog
  train = source("tigdog_horse_tiger", data_dir, "train", "animal18")
  for i in range(len(train)):
    sample = train[i]
    animal, rows = sample["animal"].decode(), written[sample["animal"].decode()][int(sample["frame"])]
    order = [TIGER_ROW[k] for k in range(18)] if animal == "tiger" else list(range(18))
    np.testing.assert_allclose(sample["landmarks"], rows[order])
    np.testing.assert_allclose(sample["keypoints"], rows[order, :2] - sample["crop_box"][:2])
    assert_on_dots(sample)
  tiger = train[3]
  names = skeletons.ANIMAL18.names
  rows = written["tiger"][50]
  np.testing.assert_allclose(tiger["landmarks"][names.index("l_front_knee"), :2], rows[14, :2])
  np.testing.assert_allclose(tiger["landmarks"][names.index("r_back_elbow"), :2], rows[11, :2])


def test_tigdog_visibility_is_the_flag_and_zero_at_y_0(tigdog):
  data_dir, _ = tigdog
  sample = source("tigdog_horse_tiger", data_dir, "test", "animal18")[0]
  expected = np.ones(18)
  expected[[5, 9, 17]] = 0  # y = 0; unannotated; flagged 0
  np.testing.assert_array_equal(sample["visible"], expected)


def test_tigdog_crop_is_the_landmark_extent_widened_by_15_px(tigdog):
  data_dir, _ = tigdog
  test = source("tigdog_horse_tiger", data_dir, "test", "animal18")
  # frame 101 (shift 1): positive x 21..45 -> 6..60, positive y 12..30 -> 0..45 (clipped): 54 x 45 px, centre
  # (33, 22.5); side 1.25 * 54 = 67.5 -> 68, x0 = 33 - 34 = -1, y0 = 22.5 - 34 = -11.5 -> -11
  np.testing.assert_array_equal(test[0]["crop_box"], [-1, -11, 68])
  # frame 50 (shift 3): the same 2 px further right
  np.testing.assert_array_equal(test[1]["crop_box"], [1, -11, 68])


def test_tigdog_feeds_the_eval_pipeline(tigdog):
  data_dir, _ = tigdog
  test = source("tigdog_horse_tiger", data_dir, "test", "animal18")
  batch = next(pipeline.eval_batches(test, batch_size=4, image_size=64, resize_pad=False))
  assert batch["image"].shape == (4, 64, 64, 3) and batch["keypoints"].shape == (4, 18, 2)
  np.testing.assert_array_equal(batch["mask"], [1, 1, 1, 0])
  # a visible keypoint of a 68 px crop lands at 64/68 of its stored position
  np.testing.assert_allclose(batch["keypoints"][0], test[0]["keypoints"] * 64 / 68, rtol=1e-5)
  # TigDog annotates no box (UDAPE's is the landmark extent): PCK-bbox falls back to the keypoints' box
  assert not test.annotated_boxes and "box" not in test[0] and "box" not in batch


def test_tigdog_short_landmark_rows_name_the_file(tmp_path):
  write_tigdog(tmp_path, "horse", [0], [1], rows=10)
  with pytest.raises(ValueError, match=re.escape(str(tmp_path / "behaviorDiscovery2.0" / "landmarks" / "horse"
                                                     / "7.mat")) + ".*at least 18 rows"):
    build.build("tigdog_horse", tmp_path, tmp_path / "tfds")


def test_tigdog_missing_frame_names_the_file(tmp_path):
  write_tigdog(tmp_path, "tiger", [0, 4], [1])
  missing = tmp_path / "behaviorDiscovery2.0" / "tiger" / "00000051.jpg"
  missing.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + "(.|\n)*ranges.mat"):
    build.build("tigdog_tiger", tmp_path, tmp_path / "tfds")


def test_missing_manual_dir_shows_the_expected_layout(tmp_path):
  with pytest.raises(AssertionError, match=re.escape("MANUAL_DIR/behaviorDiscovery2.0/<animal>/%08d.jpg")):
    build.build("tigdog_horse", tmp_path / "nowhere", tmp_path / "tfds")


# --- AnimalPose ------------------------------------------------------------------------------------------------


def pose_annotation(image_id, category_id, bbox, shift, hide=()):
  """A release annotation: keypoint j of the 20 at (12 + 2 j + shift, 8 + j), v = 1; left_ear at y = 0;
  the keypoints named in ``hide`` unannotated (0, 0, 0)."""
  keypoints = [[12 + 2 * j + shift, 8 + j, 1] for j in range(20)]
  keypoints[POSE20.index("left_ear")][1] = 0
  for name in hide:
    keypoints[POSE20.index(name)] = [0, 0, 0]
  return {"image_id": image_id, "bbox": bbox, "keypoints": keypoints, "num_keypoints": 20 - len(hide),
          "category_id": category_id}


def write_animal_pose(root, cached):
  """keypoints.json, images/<name> with a dot on each annotated keypoint, and UDAPE's cached annotation
  files: ``cached`` = {animal: {split: [annotation, ...]}}."""
  annotations = [a for splits in cached.values() for split in splits.values() for a in split]
  images = {str(a["image_id"]): f"img_{a['image_id']}.jpg" for a in annotations}
  for a in annotations:
    points = [(x, y) for x, y, v in a["keypoints"] if v > 0]
    save_jpeg(root / "animal-pose" / "images" / images[str(a["image_id"])], dots(points))
  categories = [{"supercategory": "animal", "id": i, "name": n, "keypoints": POSE20}
                for i, n in ((1, "dog"), (2, "cat"), (3, "sheep"), (4, "horse"), (5, "cow"))]
  with open(root / "animal-pose" / "keypoints.json", "w") as f:
    json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
  for animal, splits in cached.items():
    folder = root / "cached_data" / "real_animal_pose" / animal
    folder.mkdir(parents=True)
    for split, items in splits.items():
      array = np.empty(len(items), dtype=object)
      array[:] = items
      np.save(folder / f"{split}_anno.npy", array, allow_pickle=True)


@pytest.fixture(scope="module")
def animal_pose(tmp_path_factory):
  root = tmp_path_factory.mktemp("animal_data")
  cached = {
      "dog": {"train": [pose_annotation(11, 1, [10, 6, 50, 30], 0, hide=["right_back_paw"]),
                        pose_annotation(12, 1, [14, 0, 54, 28], 3)],
              "test": [pose_annotation(13, 1, [0, 0, 63, 47], 1)]},
      "sheep": {"train": [pose_annotation(21, 3, [10, 6, 50, 30], 2)],
                "test": [pose_annotation(22, 3, [5, 5, 30, 20], 4), pose_annotation(23, 3, [5, 5, 30, 20], 5)]},
  }
  write_animal_pose(root, cached)
  data_dir = tmp_path_factory.mktemp("tfds")
  build.build("animal_pose_dog_sheep", root, data_dir)
  return root, data_dir, cached


def test_animal_pose_splits_are_udape_cached_annotations_dog_then_sheep(animal_pose):
  _, data_dir, _ = animal_pose
  train = source("animal_pose_dog_sheep", data_dir, "train", "animal14")
  test = source("animal_pose_dog_sheep", data_dir, "test", "animal14")
  assert [(s["animal"], s["image_id"], s["category_id"]) for s in (train[i] for i in range(len(train)))] == [
      (b"dog", 11, 1), (b"dog", 12, 1), (b"sheep", 21, 3)]
  assert [s["image_id"] for s in (test[i] for i in range(len(test)))] == [13, 22, 23]


def test_animal_pose_keeps_the_14_named_keypoints_on_the_cropped_image(animal_pose):
  _, data_dir, cached = animal_pose
  train = source("animal_pose_dog_sheep", data_dir, "train", "animal14")
  annotations = cached["dog"]["train"] + cached["sheep"]["train"]
  for i, annotation in enumerate(annotations):
    sample = train[i]
    raw = np.array(annotation["keypoints"], np.float64)
    np.testing.assert_allclose(sample["joints20"], raw)
    for k, name in enumerate(skeletons.ANIMAL14.names):
      np.testing.assert_allclose(sample["keypoints"][k], raw[POSE20.index(pose20_name(name)), :2]
                                 - sample["crop_box"][:2])
    assert_on_dots(sample)
  # bbox [10, 6, 50, 30]: 40 x 24 px, centre (30, 18); side 50, x0 = 5, y0 = -7
  np.testing.assert_array_equal(train[0]["crop_box"], [5, -7, 50])
  assert train[0]["image"].shape == (50, 50, 3) and train[0]["image"][:7].max() <= 8


def test_animal_pose_box_is_the_release_bbox_on_the_cropped_image_and_through_the_eval_pipeline(animal_pose):
  _, data_dir, _ = animal_pose
  train = source("animal_pose_dog_sheep", data_dir, "train", "animal14")
  assert train.annotated_boxes
  np.testing.assert_array_equal(train[0]["bbox"], [10, 6, 50, 30])  # the release's, in image pixels
  np.testing.assert_allclose(train[0]["box"], [10 - 5, 6 + 7, 50 - 5, 30 + 7])  # in the crop at (5, -7)
  test = source("animal_pose_dog_sheep", data_dir, "test", "animal14")
  # bbox [0, 0, 63, 47]: centre (31.5, 23.5), side 1.25 * 63 = 78.75 -> 79, x0 = -8, y0 = -16
  np.testing.assert_array_equal(test[0]["crop_box"], [-8, -16, 79])
  np.testing.assert_allclose(test[0]["box"], [8, 16, 71, 63])
  batch = next(pipeline.eval_batches(test, batch_size=4, image_size=64, resize_pad=False))
  np.testing.assert_allclose(batch["box"][0], np.array([8, 16, 71, 63]) * 64 / 79, rtol=1e-5)
  np.testing.assert_allclose(batch["box"][0] * np.tile(batch["scale"][0], 2), [8, 16, 71, 63], rtol=1e-5)


def test_a_box_on_a_crop_shrunk_to_max_side_scales_with_it():
  crop_box = common.udape_box(0, 0, 800, 400)  # side 1.25 * 800 = 1000 around (400, 200): stored at 512 px
  np.testing.assert_array_equal(crop_box, [-100, -300, 1000])
  np.testing.assert_allclose(common.udape_stored_box([0, 0, 800, 400], crop_box, 512),
                             np.array([100, 300, 900, 700]) * 0.512, rtol=1e-6)


def test_animal_pose_visibility_is_v_and_zero_at_y_0(animal_pose):
  _, data_dir, _ = animal_pose
  sample = source("animal_pose_dog_sheep", data_dir, "train", "animal14")[0]
  names = skeletons.ANIMAL14.names
  assert [names[k] for k in np.flatnonzero(sample["visible"] == 0)] == ["r_back_hoof"]
  # left_ear has y = 0 but is not one of the 14; check the rule on a kept keypoint
  assert sample["keypoints"].shape == (14, 2)


def test_animal_pose_keypoint_at_y_0_is_invisible(tmp_path):
  annotation = pose_annotation(5, 3, [10, 6, 50, 30], 0)
  annotation["keypoints"][POSE20.index("right_front_knee")][1] = 0
  write_animal_pose(tmp_path, {"sheep": {"train": [annotation], "test": [annotation]}})
  build.build("animal_pose_sheep", tmp_path, tmp_path / "tfds")
  sample = source("animal_pose_sheep", tmp_path / "tfds", "test", "animal14")[0]
  names = skeletons.ANIMAL14.names
  assert [names[k] for k in np.flatnonzero(sample["visible"] == 0)] == ["r_front_knee"]


def test_animal_pose_wrong_category_fails_naming_the_files(tmp_path):
  cat = pose_annotation(5, 2, [10, 6, 50, 30], 0)
  write_animal_pose(tmp_path, {"dog": {"train": [cat], "test": [cat]}})
  with pytest.raises(ValueError, match=re.escape(str(tmp_path / "cached_data" / "real_animal_pose" / "dog"))
                     + ".*'cat', not 'dog'"):
    build.build("animal_pose_dog", tmp_path, tmp_path / "tfds")


def test_animal_pose_wrong_joint_count_names_the_file(tmp_path):
  short = pose_annotation(5, 1, [10, 6, 50, 30], 0)
  short["keypoints"] = short["keypoints"][:17]
  write_animal_pose(tmp_path, {"dog": {"train": [pose_annotation(6, 1, [1, 1, 9, 9], 0)], "test": [short]}})
  path = tmp_path / "cached_data" / "real_animal_pose" / "dog" / "test_anno.npy"
  with pytest.raises(ValueError, match=re.escape(str(path)) + ".*17 keypoints"):
    build.build("animal_pose_dog", tmp_path, tmp_path / "tfds")


def test_animal_pose_missing_image_names_the_file(tmp_path):
  a = pose_annotation(5, 1, [10, 6, 50, 30], 0)
  write_animal_pose(tmp_path, {"dog": {"train": [a], "test": [a]}})
  missing = tmp_path / "animal-pose" / "images" / "img_5.jpg"
  missing.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + "(.|\n)*keypoints.json"):
    build.build("animal_pose_dog", tmp_path, tmp_path / "tfds")


def test_animal_pose_coco_style_json_is_refused(tmp_path):
  a = pose_annotation(5, 1, [10, 6, 50, 30], 0)
  write_animal_pose(tmp_path, {"dog": {"train": [a], "test": [a]}})
  (tmp_path / "animal-pose" / "keypoints.json").write_text(json.dumps({"images": [{"id": 5}]}))
  with pytest.raises(ValueError, match="'images' to be a dict"):
    build.build("animal_pose_dog", tmp_path, tmp_path / "tfds")


@pytest.mark.skipif(not (REAL_ANIMALPOSE / "test_animalpose.json").exists(), reason="no real AnimalPose sample")
def test_real_animal_pose_images_crop_and_map_like_the_release(tmp_path):
  """The 2 real images with their real keypoints, rewritten from mmpose's reordered COCO-style json into the
  release's format by keypoint name (mmpose: L_Eye, R_Eye, L_EarBase, ..., L_F_Paw; release: left_eye, ...)."""
  mmpose = json.loads((REAL_ANIMALPOSE / "test_animalpose.json").read_text())
  mm_names = mmpose["categories"][0]["keypoints"]
  rename = {"EarBase": "ear", "F": "front", "B": "back", "L": "left", "R": "right"}

  def release_name(mm):
    return "_".join(rename.get(p, p.lower()) for p in mm.split("_"))

  assert sorted(release_name(n) for n in mm_names) == sorted(POSE20)
  files = {im["id"]: im["file_name"] for im in mmpose["images"]}
  animals = {"ca110.jpeg": ("cat", 2), "ho105.jpeg": ("horse", 4)}
  cached, originals = {}, {}
  for a in mmpose["annotations"]:
    by_name = {release_name(n): a["keypoints"][3 * j:3 * j + 3] for j, n in enumerate(mm_names)}
    keypoints = [[x, y, int(v > 0)] for x, y, v in (by_name[n] for n in POSE20)]
    x, y, w, h = a["bbox"]
    animal, category = animals[files[a["image_id"]]]
    annotation = {"image_id": a["image_id"], "bbox": [x, y, x + w, y + h], "keypoints": keypoints,
                  "num_keypoints": a["num_keypoints"], "category_id": category}
    cached[animal] = {"train": [annotation], "test": [annotation]}
    originals[animal] = np.asarray(Image.open(REAL_ANIMALPOSE / files[a["image_id"]]).convert("RGB"))
  (tmp_path / "animal-pose" / "images").mkdir(parents=True)
  for image_id, name in files.items():
    (tmp_path / "animal-pose" / "images" / name).write_bytes((REAL_ANIMALPOSE / name).read_bytes())
  for animal, splits in cached.items():
    folder = tmp_path / "cached_data" / "real_animal_pose" / animal
    folder.mkdir(parents=True)
    for split, items in splits.items():
      array = np.empty(1, dtype=object)
      array[:] = items
      np.save(folder / f"{split}_anno.npy", array, allow_pickle=True)
  with open(tmp_path / "animal-pose" / "keypoints.json", "w") as f:
    json.dump({"images": {str(k): v for k, v in files.items()},
               "categories": [{"id": 2, "name": "cat"}, {"id": 4, "name": "horse"}]}, f)

  names = skeletons.ANIMAL14.names
  for animal, hidden in (("cat", {"r_back_hoof", "r_back_knee", "r_back_elbow"}),
                         ("horse", {"r_front_hoof", "r_back_hoof", "r_back_knee", "r_front_elbow",
                                    "r_back_elbow"})):
    build.build(f"animal_pose_{animal}", tmp_path, tmp_path / "tfds")
    sample = source(f"animal_pose_{animal}", tmp_path / "tfds", "test", "animal14")[0]
    assert {names[k] for k in np.flatnonzero(sample["visible"] == 0)} == hidden
    x0, y0, side = sample["crop_box"]
    original = originals[animal]
    # the stored square is the original image around the box (JPEG-recompressed), black outside it
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + side, original.shape[0]), min(x0 + side, original.shape[1])
    inner = sample["image"][top - y0:bottom - y0, left - x0:right - x0].astype(float)
    assert np.abs(inner - original[top:bottom, left:right]).mean() < 4
    # the release's box on the crop: cat bbox x, y, w, h = 13, 36, 284, 192, crop at (-22, -45); horse 23, 9,
    # 256, 240, crop at (-9, -31); its max(w, h) is the PCK-bbox normaliser
    expected = {"cat": [13 + 22, 36 + 45, 297 + 22, 228 + 45], "horse": [23 + 9, 9 + 31, 279 + 9, 249 + 31]}[animal]
    np.testing.assert_array_equal(sample["crop_box"][:2], {"cat": [-22, -45], "horse": [-9, -31]}[animal])
    np.testing.assert_allclose(sample["box"], expected)
    assert sample["image"][:max(top - y0 - 2, 0)].mean() < 3
    # the eyes are above every visible paw, on the real animal
    kp, vis = sample["keypoints"], sample["visible"] > 0
    eye_y = kp[:2, 1][vis[:2]].max()
    assert all(kp[k, 1] > eye_y + 50 for k in range(2, 6) if vis[k])
  cat = source("animal_pose_cat", tmp_path / "tfds", "test", "animal14")[0]
  # cat box [13, 36, 297, 228] (x, y, w, h = 13, 36, 284, 192): centre (155, 132), side 355, x0 = -22.5 -> -22,
  # y0 = -45.5 -> -45; its left eye (117, 95) is stored at (139, 140)
  np.testing.assert_array_equal(cat["crop_box"], [-22, -45, 355])
  np.testing.assert_allclose(cat["keypoints"][0], [139, 140])


# --- keypoint sets and configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("keypoint_set", [skeletons.ANIMAL18, skeletons.ANIMAL14])
def test_animal_flip_pairs_swap_left_and_right_names(keypoint_set):
  names = keypoint_set.names
  paired = set()
  for a, b in keypoint_set.flip_pairs:
    assert names[a].startswith("l_") and names[b] == "r_" + names[a][2:]
    paired |= {a, b}
  unpaired = [n for i, n in enumerate(names) if i not in paired]
  assert all(not n.startswith(("l_", "r_")) for n in unpaired)
  perm = keypoint_set.flip_permutation()
  assert all(perm[perm[i]] == i for i in range(len(names)))
  for a, b in keypoint_set.edges:  # a limb never joins the two sides
    assert {names[a][:2], names[b][:2]} != {"l_", "r_"} or {names[a], names[b]} == {"l_eye", "r_eye"}


def test_animal_groups_are_udapes():
  assert skeletons.get("animal18").groups == {
      "eye": (0, 1), "chin": (2,), "hoof": (3, 4, 5, 6), "hip": (7,), "knee": (8, 9, 10, 11),
      "shoulder": (12, 13), "elbow": (14, 15, 16, 17), "all": tuple(range(18))}
  assert skeletons.get("Animal14").groups == {
      "eye": (0, 1), "hoof": (2, 3, 4, 5), "knee": (6, 7, 8, 9), "elbow": (10, 11, 12, 13), "all": tuple(range(14))}
  for keypoint_set in (skeletons.ANIMAL18, skeletons.ANIMAL14):
    assert list(keypoint_set.groups)[-1] == "all"
    for group, indices in keypoint_set.groups.items():
      if group != "all":  # a group's keypoints carry its name
        assert all(keypoint_set.names[i].endswith(group) for i in indices), group


def test_every_animal_builder_declares_its_keypoint_set_and_splits():
  from dapose_jax.data import builders

  animal = {n: b for n, b in builders.REGISTRY.items() if n.startswith(("synanimal_", "tigdog_", "animal_pose_"))}
  assert len(animal) == 15
  for name, builder in animal.items():
    assert builder.name == name and builder.SPLITS == {"train": "train", "test": "test"}
    expected = "animal18" if name in ("synanimal_horse", "synanimal_tiger", "synanimal_horse_tiger") \
        or name.startswith("tigdog_") else "animal14"
    assert builder.keypoint_set() == expected


def load_config(file, variant):
  return runpy.run_path(str(REPO / "configs" / file))["get_config"](variant)


@pytest.mark.parametrize("file, variant, source_name, target_name, method", [
    ("synanimal_tigdog.py", "", "synanimal_horse_tiger", "tigdog_horse_tiger", "source_only"),
    ("synanimal_tigdog.py", "horse", "synanimal_horse", "tigdog_horse", "source_only"),
    ("synanimal_tigdog.py", "tiger,regda", "synanimal_tiger", "tigdog_tiger", "regda"),
    ("synanimal_animalpose.py", "regda", "synanimal_hound_sheep", "animal_pose_dog_sheep", "regda"),
    ("synanimal_animalpose.py", "dog", "synanimal_hound", "animal_pose_dog", "source_only"),
    ("synanimal_animalpose.py", "sheep", "synanimal_sheep", "animal_pose_sheep", "source_only"),
])
def test_animal_task_configs(file, variant, source_name, target_name, method, tmp_path):
  c = load_config(file, variant)
  assert (c.source.name, c.target.name, c.method) == (source_name, target_name, method)
  keypoint_set = "animal18" if "tigdog" in file else "animal14"
  assert c.source.keypoint_set == c.target.keypoint_set == keypoint_set
  assert c.source.augment.rotation == c.target.augment.rotation == 60.0 and c.sigma == 1.0
  c.target.data_dir = str(tmp_path)
  with pytest.raises(sources.MissingDatasetError, match=f"--dataset {target_name} --manual_dir"):
    sources.make_source(c.target, "test")


def test_animal_task_config_rejects_an_unknown_animal():
  with pytest.raises(ValueError, match="cat"):
    load_config("synanimal_tigdog.py", "cat")
  with pytest.raises(ValueError, match="horse"):
    load_config("synanimal_animalpose.py", "horse")
