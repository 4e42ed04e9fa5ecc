"""RHD, H3D and FreiHAND builders: tiny releases in the real on-disk formats, built and read back."""

import json
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from dapose_jax.commands import build
from dapose_jax.data import sources
from dapose_jax.pose import skeletons

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
FINGERS = ("thumb", "index", "middle", "ring", "little")
# Hand21 name -> RHD native index, from the release's order: wrist, then per finger tip -> DIP -> PIP -> MCP.
RHD_NATIVE = {"wrist": 0, **{f"{finger}_{joint}": 1 + 4 * f + j for f, finger in enumerate(FINGERS)
                             for j, joint in enumerate(("tip", "dip", "pip", "mcp"))}}
HAND21_NAMES = skeletons.HAND21.names
WHITE = 255


def config(name, data_dir):
  return ConfigDict(dict(name=name, keypoint_set="hand21", data_dir=str(data_dir)))


def read_all(name, data_dir, split):
  source = sources.make_source(config(name, data_dir), split)
  return [source[i] for i in range(len(source))]


def hand_points(x0, y0, size):
  """21 integer points on a 5x5 grid filling the box [x0, x0 + size] x [y0, y0 + size]; point j is unique."""
  j = np.arange(21)
  return np.stack([x0 + size * (j % 5) / 4, y0 + size * (j // 5) / 4], axis=1)


def dot(pixels, x, y, value=WHITE):
  """A 3x3 dot centred on pixel (x, y)."""
  x, y = int(round(x)), int(round(y))
  pixels[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = value


def brightest(image):
  """(x, y) of the brightest 3x3 block."""
  gray = image.astype(np.float64).sum(-1)
  padded = np.pad(gray, 1)
  box = sum(padded[dy:dy + gray.shape[0], dx:dx + gray.shape[1]] for dy in range(3) for dx in range(3))
  y, x = np.unravel_index(np.argmax(box), box.shape)
  return np.array([x, y])


def gradient_image(height, width, blue):
  """Red grows from left to right (shows a mirror), blue is constant (tells images apart), green is 0."""
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[..., 0] = np.linspace(20, 160, width).astype(np.uint8)[None, :]
  pixels[..., 2] = blue
  return pixels


def assert_mirrored(image):
  red = image[..., 0].astype(np.float64).mean(0)
  assert red[: len(red) // 4].mean() > red[-len(red) // 4:].mean() + 20  # red falls from left to right


def assert_not_mirrored(image):
  red = image[..., 0].astype(np.float64).mean(0)
  assert red[: len(red) // 4].mean() + 20 < red[-len(red) // 4:].mean()


# ----------------------------------------------------------------------------------------------------- RHD
# Designed hands: (x0, y0, size) of the keypoint box; 1.5x box side = 1.5 size, crop side one less.
RHD_TRAINING = {
    # both hands kept; the left one has 3 occluded points, the right one exactly 17 visible (kept)
    0: dict(left=(20, 30, 80), right=(200, 180, 80), left_hidden=(2, 7, 13), right_hidden=(1, 2, 3, 4)),
    # left too small (1.5 x 42 = 63 -> crop 62 <= 64 px), right with only 16 visible: both dropped
    1: dict(left=(40, 40, 42), right=(200, 200, 80), left_hidden=(), right_hidden=(1, 2, 3, 4, 5)),
    # the big right hand covers 37 % of the small left hand's 1.5x box: left dropped; right kept (8 %)
    2: dict(left=(100, 100, 60), right=(120, 120, 140), left_hidden=(), right_hidden=()),
    # left hand at the corner: its box is moved inside the frame; the right hand is all occluded: dropped
    5: dict(left=(260, 250, 60), right=(10, 10, 60), left_hidden=(), right_hidden=tuple(range(21))),
}
RHD_EVALUATION = {
    3: dict(left=(30, 200, 60), right=(150, 40, 100), left_hidden=tuple(range(10)), right_hidden=()),
    4: dict(left=(150, 150, 100), right=(20, 20, 40), left_hidden=(), right_hidden=()),
}
# The kept hands in tllib's order and their crop boxes [x0, y0, side], worked out by hand from tllib's rule:
# side = round(1.5 size), x0 = round(centre - side / 2) moved inside the 320 px frame, stored side = side - 1.
RHD_KEPT = {
    "train": [(0, True, (0, 10, 119)), (0, False, (180, 160, 119)), (2, False, (85, 85, 209)),
              (5, True, (230, 230, 89))],
    "test": [(3, False, (125, 15, 149)), (4, True, (125, 125, 149))],
}


def rhd_annotation(hands, sample_id):
  uv_vis = np.zeros((42, 3))
  xyz = np.zeros((42, 3))
  for offset, side in ((0, "left"), (21, "right")):
    uv_vis[offset:offset + 21, :2] = hand_points(*hands[side])
    uv_vis[offset:offset + 21, 2] = 1
    uv_vis[[offset + j for j in hands[f"{side}_hidden"]], 2] = 0
    xyz[offset:offset + 21] = np.arange(offset, offset + 21)[:, None] * [0.01, 0.02, 0.03] + [0, 0, 0.5]
  intrinsic = np.array([[280.0 + sample_id, 0, 160], [0, 280.0 + sample_id, 160], [0, 0, 1]])
  return {"uv_vis": uv_vis, "xyz": xyz, "K": intrinsic}


def write_rhd(root, sets=(("training", RHD_TRAINING), ("evaluation", RHD_EVALUATION))):
  """RHD_published_v2/<set>/anno_<set>.pickle and color/%05d.png (320x320), a white dot on each kept wrist."""
  kept = {(i, left) for samples in RHD_KEPT.values() for i, left, _ in samples}
  for subset, frames in sets:
    (root / "RHD_published_v2" / subset / "color").mkdir(parents=True)
    annotations = {i: rhd_annotation(hands, i) for i, hands in frames.items()}
    with open(root / "RHD_published_v2" / subset / f"anno_{subset}.pickle", "wb") as f:
      pickle.dump(annotations, f)
    for i, anno in annotations.items():
      pixels = gradient_image(320, 320, blue=10 * i)
      for wrist, left in ((0, True), (21, False)):
        if (i, left) in kept:  # a dropped hand's wrist may lie inside another hand's crop
          dot(pixels, *anno["uv_vis"][wrist, :2])
      Image.fromarray(pixels).save(root / "RHD_published_v2" / subset / "color" / f"{i:05d}.png")
  return root


def built(tmp_path_factory, name, write_release):
  """A fixture release written by ``write_release`` under ROOT/release and built into ROOT/tfds: ROOT."""
  root = tmp_path_factory.mktemp(name)
  write_release(root / "release")
  build.build(name, root / "release", root / "tfds")
  return root


@pytest.fixture(scope="module")
def rhd_built(tmp_path_factory):
  return built(tmp_path_factory, "rhd", write_rhd)


def test_rhd_keeps_the_hands_tllib_keeps_per_split(rhd_built):
  for split, kept in RHD_KEPT.items():
    samples = read_all("rhd", rhd_built / "tfds", split)
    assert [(int(s["image_id"]), bool(s["is_left"])) for s in samples] == [(i, left) for i, left, _ in kept]


def test_rhd_crops_reorders_and_flips_right_hands(rhd_built):
  for split, kept in RHD_KEPT.items():
    subset = {"train": "training", "test": "evaluation"}[split]
    frames = RHD_TRAINING if split == "train" else RHD_EVALUATION
    for sample, (frame, left, (x0, y0, side)) in zip(read_all("rhd", rhd_built / "tfds", split), kept):
      hands = frames[frame]
      assert sample["image"].shape == (side, side, 3) and sample["image"].dtype == np.uint8
      np.testing.assert_array_equal(sample["crop_box"], [x0, y0, side])
      assert sample["flipped"] == (not left)
      assert sample["image_file"].decode() == f"{subset}/color/{frame:05d}.png"
      native = hand_points(*hands["left" if left else "right"])
      offset = 0 if left else 21
      for k, name in enumerate(HAND21_NAMES):
        x, y = native[RHD_NATIVE[name]] - [x0, y0]
        np.testing.assert_allclose(sample["keypoints"][k], [x if left else side - 1 - x, y], atol=1e-4)
        hidden = RHD_NATIVE[name] in hands["left_hidden" if left else "right_hidden"]
        assert sample["visible"][k] == (0.0 if hidden else 1.0)
        np.testing.assert_allclose(sample["keypoints3d"][k],
                                   (RHD_NATIVE[name] + offset) * np.array([0.01, 0.02, 0.03]) + [0, 0, 0.5],
                                   rtol=1e-6)
      np.testing.assert_allclose(sample["intrinsic_matrix"][0, 0], 280 + frame)
      # the wrist dot drawn in the frame is where the stored wrist keypoint is
      assert np.abs(brightest(sample["image"]) - sample["keypoints"][0]).max() <= 1
      # the frame's left-to-right red gradient is reversed in mirrored crops
      (assert_not_mirrored if left else assert_mirrored)(sample["image"])
      assert abs(sample["image"][..., 2].mean() - 10 * frame) < 4  # the crop comes from this frame


def test_rhd_crop_is_the_frame_region_up_to_jpeg_loss(rhd_built):
  sample = read_all("rhd", rhd_built / "tfds", "train")[1]  # frame 0, right hand: mirrored
  x0, y0, side = sample["crop_box"]
  frame = np.asarray(Image.open(rhd_built / "release" / "RHD_published_v2" / "training" / "color" / "00000.png"))
  expected = frame[y0:y0 + side, x0:x0 + side][:, ::-1]
  assert np.abs(sample["image"].astype(int) - expected).mean() < 2


def test_rhd_missing_files_are_named(tmp_path):
  release = write_rhd(tmp_path / "release")
  (release / "RHD_published_v2" / "training" / "color" / "00005.png").unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(release / "RHD_published_v2" / "training" / "color"
                                                            / "00005.png"))):
    build.build("rhd", release, tmp_path / "tfds")
  release = write_rhd(tmp_path / "release2")
  (release / "RHD_published_v2" / "evaluation" / "anno_evaluation.pickle").unlink()
  with pytest.raises(FileNotFoundError) as error:
    build.build("rhd", release / "RHD_published_v2", tmp_path / "tfds")  # MANUAL_DIR may be the folder itself
  assert str(release / "RHD_published_v2" / "evaluation" / "anno_evaluation.pickle") in str(error.value)
  assert "RHD_published_v2/training/color/00000.png" in str(error.value)  # the expected layout


def test_rhd_wrong_joint_count_names_the_file(tmp_path):
  release = write_rhd(tmp_path / "release")
  path = release / "RHD_published_v2" / "evaluation" / "anno_evaluation.pickle"
  with open(path, "rb") as f:
    annotations = pickle.load(f)
  annotations[4]["uv_vis"] = annotations[4]["uv_vis"][:21]
  with open(path, "wb") as f:
    pickle.dump(annotations, f)
  with pytest.raises(ValueError, match=re.escape(str(path)) + ".*sample 4.*'uv_vis'.*\\(42, 3\\)"):
    build.build("rhd", release, tmp_path / "tfds")


def test_unbuilt_hand_dataset_error_says_how_to_get_it(tmp_path):
  for name, needle in (("rhd", "RHD_v1-1.zip"), ("freihand", "FreiHAND_pub_v2.zip"), ("h3d", "H3D_crop")):
    with pytest.raises(sources.MissingDatasetError) as error:
      sources.make_source(config(name, tmp_path), "train")
    assert needle in str(error.value) and f"--dataset {name} --manual_dir MANUAL_DIR" in str(error.value)


# ------------------------------------------------------------------------------------------------ FreiHAND
FREIHAND_N = 3
FILE_ORDER = ("gs", "hom", "sample", "auto")  # version index in the file names
TLLIB_ORDER = ("gs", "auto", "sample", "hom")  # tllib's concatenation order
FOCAL, CENTRE = 100.0, 32.0


def freihand_points(i):
  return hand_points(14 + 4 * i, 16, 28)  # crop box: side round(42) - 1 = 41, x0 = 7 + 4 i, y0 = 9


def write_freihand(root, n=FREIHAND_N, size=64):
  """training_{K,xyz,mano}.json and training/rgb/%08d.jpg: frame i, version v is i + 32560 v."""
  (root / "training" / "rgb").mkdir(parents=True)
  intrinsics, xyzs, manos = [], [], []
  for i in range(n):
    uv = freihand_points(i)
    z = 0.5 + 0.01 * np.arange(21)
    xyzs.append(np.stack([(uv[:, 0] - CENTRE) * z / FOCAL, (uv[:, 1] - CENTRE) * z / FOCAL, z], 1).tolist())
    intrinsics.append([[FOCAL, 0, CENTRE], [0, FOCAL, CENTRE], [0, 0, 1]])
    manos.append([[i + 0.001 * j for j in range(61)]])
    for v, version in enumerate(FILE_ORDER):
      pixels = gradient_image(size, size, blue=40 + 50 * v)
      dot(pixels, *uv[0])
      Image.fromarray(pixels).save(root / "training" / "rgb" / f"{i + 32560 * v:08d}.jpg", quality=95)
  for name, value in (("K", intrinsics), ("xyz", xyzs), ("mano", manos)):
    (root / f"training_{name}.json").write_text(json.dumps(value))
  return root


def tllib_split(samples, max_test=3200):
  """Independent copy of tllib's rule: random.seed(42); random.shuffle; test = first min(20 %, 3200)."""
  samples = list(samples)
  state = random.getstate()
  random.seed(42)
  random.shuffle(samples)
  random.setstate(state)
  num_test = min(int(len(samples) * 0.2), max_test)
  return samples[num_test:], samples[:num_test]


@pytest.fixture(scope="module")
def freihand_built(tmp_path_factory):
  return built(tmp_path_factory, "freihand", write_freihand)


def test_freihand_split_is_tllibs_seed_42_shuffle_of_all_versions(freihand_built):
  train, test = tllib_split((v, i) for v in TLLIB_ORDER for i in range(FREIHAND_N))
  assert len(test) == 2 and len(train) == 10  # int(0.2 * 12) = 2
  for split, expected in (("train", train), ("test", test)):
    samples = read_all("freihand", freihand_built / "tfds", split)
    assert [(s["version"].decode(), int(s["frame_index"])) for s in samples] == expected
    for s in samples:
      assert s["image_id"] == s["frame_index"] + 32560 * FILE_ORDER.index(s["version"].decode())


def test_freihand_projects_crops_and_mirrors_every_sample(freihand_built):
  samples = read_all("freihand", freihand_built / "tfds", "train") + read_all("freihand", freihand_built / "tfds",
                                                                            "test")
  assert len(samples) == 4 * FREIHAND_N
  for s in samples:
    i, version = int(s["frame_index"]), s["version"].decode()
    x0, y0, side = 7 + 4 * i, 9, 41
    np.testing.assert_array_equal(s["crop_box"], [x0, y0, side])
    assert s["flipped"] and s["image"].shape == (side, side, 3)
    expected = freihand_points(i) - [x0, y0]
    expected[:, 0] = side - 1 - expected[:, 0]
    np.testing.assert_allclose(s["keypoints"], expected, atol=1e-4)  # already Hand21: no reorder
    np.testing.assert_array_equal(s["visible"], np.ones(21))
    np.testing.assert_allclose(s["keypoints3d"][:, 2], 0.5 + 0.01 * np.arange(21), rtol=1e-6)
    np.testing.assert_allclose(s["intrinsic_matrix"], [[FOCAL, 0, CENTRE], [0, FOCAL, CENTRE], [0, 0, 1]])
    np.testing.assert_allclose(s["mano"], i + 0.001 * np.arange(61), rtol=1e-6)
    assert np.abs(brightest(s["image"]) - s["keypoints"][0]).max() <= 1  # the wrist dot
    assert_mirrored(s["image"])
    assert abs(s["image"][..., 2].mean() - (40 + 50 * FILE_ORDER.index(version))) < 4  # this version's file


def test_freihand_missing_image_and_bad_annotations_are_named(tmp_path):
  release = write_freihand(tmp_path / "release", n=2, size=48)
  (release / "training" / "rgb" / "00065121.jpg").unlink()  # frame 1, version 'sample'
  with pytest.raises(FileNotFoundError, match=re.escape(str(release / "training" / "rgb" / "00065121.jpg"))):
    build.build("freihand", release, tmp_path / "tfds")
  xyz = json.loads((release / "training_xyz.json").read_text())
  xyz[1] = xyz[1][:20]
  (release / "training_xyz.json").write_text(json.dumps(xyz))
  with pytest.raises(ValueError, match=re.escape(str(release / "training_xyz.json")) + ": entry 1"):
    build.build("freihand", release, tmp_path / "tfds")
  (release / "training_K.json").write_text(json.dumps([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]]))
  with pytest.raises(ValueError, match="training_K.json has 1, training_xyz.json has 2"):
    build.build("freihand", release, tmp_path / "tfds")
  (release / "training_mano.json").unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(release / "training_mano.json"))):
    build.build("freihand", release, tmp_path / "tfds")


# ----------------------------------------------------------------------------------------------------- H3D
H3D_N = 12
H3D_WITH_OBJECT = (3, 8)  # without_object == 0: not in the default task 'noobject'


def write_h3d(root, n=H3D_N):
  """H3D_crop/annotation.json and the images it names under part1..part5 (entry 5 is a PNG)."""
  entries = []
  for i in range(n):
    name = f"part{1 + i % 5}/{i:06d}.{'png' if i == 5 else 'jpg'}"
    uv = hand_points(6 + i, 8, 28)
    (root / "H3D_crop" / name).parent.mkdir(parents=True, exist_ok=True)
    pixels = gradient_image(40, 48, blue=10 * i)
    dot(pixels, *uv[0])
    Image.fromarray(pixels).save(root / "H3D_crop" / name, quality=95)
    entries.append({"name": name, "keypoint2d": uv.tolist(),
                    "keypoint3d": (np.arange(63).reshape(21, 3) * 0.001 + i).tolist(),
                    "intrinsic_matrix": [[500.0 + i, 0, 24], [0, 500.0 + i, 20], [0, 0, 1]],
                    "without_object": 0 if i in H3D_WITH_OBJECT else 1})
  (root / "H3D_crop" / "annotation.json").write_text(json.dumps(entries))
  return root


def test_h3d_keeps_hands_without_objects_split_by_seed_42(tmp_path):
  release = write_h3d(tmp_path / "release")
  build.build("h3d", release, tmp_path / "tfds")
  train, test = tllib_split(i for i in range(H3D_N) if i not in H3D_WITH_OBJECT)
  assert len(test) == 2 and len(train) == 8  # int(0.2 * 10) = 2
  for split, expected in (("train", train), ("test", test)):
    samples = read_all("h3d", tmp_path / "tfds", split)
    assert [int(s["annotation_index"]) for s in samples] == expected
    for s in samples:
      i = int(s["annotation_index"])
      assert s["image_file"].decode() == f"part{1 + i % 5}/{i:06d}.{'png' if i == 5 else 'jpg'}"
      np.testing.assert_allclose(s["keypoints"], hand_points(6 + i, 8, 28))  # as released, no crop or flip
      np.testing.assert_array_equal(s["visible"], np.ones(21))
      np.testing.assert_allclose(s["keypoints3d"][0], [i, i + 0.001, i + 0.002], rtol=1e-6)
      assert s["intrinsic_matrix"][0, 0] == 500 + i
      on_disk = np.asarray(Image.open(release / "H3D_crop" / s["image_file"].decode()).convert("RGB"))
      if i == 5:  # a PNG is re-encoded as JPEG
        assert np.abs(s["image"].astype(int) - on_disk).mean() < 2
      else:  # a JPEG is stored byte for byte
        np.testing.assert_array_equal(s["image"], on_disk)
      assert np.abs(brightest(s["image"]) - s["keypoints"][0]).max() <= 1
      assert_not_mirrored(s["image"])


def test_h3d_missing_files_and_wrong_joint_count_are_named(tmp_path):
  release = write_h3d(tmp_path / "release", n=6)
  (release / "H3D_crop" / "part2" / "000001.jpg").unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(release / "H3D_crop" / "part2" / "000001.jpg"))):
    build.build("h3d", release, tmp_path / "tfds")
  path = release / "H3D_crop" / "annotation.json"
  entries = json.loads(path.read_text())
  entries[4]["keypoint2d"] = entries[4]["keypoint2d"][:16]
  path.write_text(json.dumps(entries))
  with pytest.raises(ValueError, match=re.escape(str(path)) + ": entry 4 .*'keypoint2d' of shape \\(21, 2\\)"):
    build.build("h3d", release / "H3D_crop", tmp_path / "tfds")
  path.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(path)) + " is missing; expected layout"):
    build.build("h3d", release, tmp_path / "tfds")


# ---------------------------------------------------------------------------------------------- real data
def real_json(name):
  path = REAL_SAMPLES / name / f"test_{name}.json"
  if not path.exists():
    pytest.skip(f"no real {name} samples at {path.parent}")
  return json.loads(path.read_text())


def test_real_rhd_frames_right_hand_comes_out_mirrored(tmp_path):
  """mmpose's 3 RHD frames, turned back into RHD pickle entries (datasets.md section 2).

  mmpose keeps the annotated hand only: its 21 rows go back to rows 0-20 (left) or 21-41 (right) in RHD's
  native order, K is rebuilt from the focal length and principal point, and xyz is joint_cam in metres. The
  other hand's rows are set to (0, 0), not visible, so it is dropped as RHD's hidden hands are.
  """
  data = real_json("rhd")
  images = {image["id"]: image for image in data["images"]}
  sets = {"training": {}, "evaluation": {}}
  for anno in data["annotations"]:
    image = images[anno["image_id"]]
    uv_vis, xyz = np.zeros((42, 3)), np.zeros((42, 3))
    offset = 0 if anno["hand_type"] == "left" else 21
    uv_vis[offset:offset + 21] = anno["keypoints"]
    xyz[offset:offset + 21] = np.array(anno["joint_cam"]) / 1000
    (fx, fy), (cx, cy) = image["cam_param"]["focal"], image["cam_param"]["princpt"]
    subset = "evaluation" if anno["hand_type"] == "right" else "training"
    sets[subset][anno["image_id"]] = {"uv_vis": uv_vis, "xyz": xyz, "K": np.array([[fx, 0, cx], [0, fy, cy],
                                                                                     [0, 0, 1]])}
  assert [len(sets["training"]), len(sets["evaluation"])] == [2, 1]  # 2 left hands, 1 right hand
  for subset, annotations in sets.items():
    (tmp_path / "RHD_published_v2" / subset / "color").mkdir(parents=True)
    with open(tmp_path / "RHD_published_v2" / subset / f"anno_{subset}.pickle", "wb") as f:
      pickle.dump(annotations, f)
    for i in annotations:
      shutil.copy(REAL_SAMPLES / "rhd" / images[i]["file_name"],
                  tmp_path / "RHD_published_v2" / subset / "color" / f"{i:05d}.png")
  build.build("rhd", tmp_path, tmp_path / "tfds")
  for split, subset in (("train", "training"), ("test", "evaluation")):
    samples = read_all("rhd", tmp_path / "tfds", split)
    assert len(samples) == len(sets[subset])  # every annotated hand passes tllib's filter
    for s in samples:
      anno = sets[subset][int(s["image_id"])]
      left = bool(s["is_left"])
      assert s["flipped"] == (not left) and left == (subset == "training")
      x0, y0, side = s["crop_box"]
      frame = np.asarray(Image.open(REAL_SAMPLES / "rhd" / images[int(s["image_id"])]["file_name"]).convert("RGB"))
      crop = frame[y0:y0 + side, x0:x0 + side]
      raw = anno["uv_vis"][[RHD_NATIVE[n] + (0 if left else 21) for n in HAND21_NAMES], :2] - [x0, y0]
      if not left:  # mirrored relative to the unflipped crop: x -> side - 1 - x, the pixels alike
        raw[:, 0] = side - 1 - raw[:, 0]
        crop = crop[:, ::-1]
      np.testing.assert_allclose(s["keypoints"], raw, atol=1e-3)
      assert (s["keypoints"] >= 0).all() and (s["keypoints"] <= side - 1).all()  # inside the crop
      assert np.abs(s["image"].astype(int) - crop).mean() < 3  # only JPEG loss
      # the hand is about 1/1.5 of the crop: the keypoints span most of the middle two thirds
      span = s["keypoints"].max(0) - s["keypoints"].min(0)
      assert 0.55 * side < span.max() < 0.7 * side


def test_real_freihand_frames_are_cropped_and_mirrored(tmp_path):
  """mmpose's 8 real FreiHAND frames: frames 355 and 17620 in all four versions, with 2D keypoints only.

  A real-format release needs K and xyz, which mmpose's file lacks. They are made up so that K . xyz
  projects exactly onto the real 2D keypoints (a 224 px camera with f = 500 and depths of about 0.6 m); the
  MANO parameters are zeros. The two frames become frames 0 and 1 of a 2-frame release, so the files are
  renamed to i + 32560 v. The images and the 2D labels are real, the 3D is not.
  """
  data = real_json("freihand")
  keypoints = {anno["image_id"]: np.array(anno["keypoints"]).reshape(21, 3)[:, :2] for anno in data["annotations"]}
  frames = (355, 17620)
  for frame in frames:  # the four versions carry the same label
    for v in range(4):
      np.testing.assert_allclose(keypoints[frame + 32560 * v], keypoints[frame])
  (tmp_path / "training" / "rgb").mkdir(parents=True)
  intrinsic = np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]])
  xyzs = []
  for i, frame in enumerate(frames):
    uv, z = keypoints[frame], 0.6 + 0.005 * np.arange(21)
    xyzs.append(np.stack([(uv[:, 0] - 112) * z / 500, (uv[:, 1] - 112) * z / 500, z], 1).tolist())
    for v in range(4):
      shutil.copy(REAL_SAMPLES / "freihand" / f"{frame + 32560 * v:08d}.jpg",
                  tmp_path / "training" / "rgb" / f"{i + 32560 * v:08d}.jpg")
  (tmp_path / "training_K.json").write_text(json.dumps([intrinsic.tolist()] * 2))
  (tmp_path / "training_xyz.json").write_text(json.dumps(xyzs))
  (tmp_path / "training_mano.json").write_text(json.dumps([[[0.0] * 61]] * 2))
  build.build("freihand", tmp_path, tmp_path / "tfds")
  train, test = read_all("freihand", tmp_path / "tfds", "train"), read_all("freihand", tmp_path / "tfds", "test")
  assert (len(train), len(test)) == (7, 1)  # int(0.2 * 8) = 1
  for s in train + test:
    i = int(s["frame_index"])
    x0, y0, side = s["crop_box"]
    assert s["flipped"] and s["image"].shape == (side, side, 3)
    expected = keypoints[frames[i]] - [x0, y0]
    expected[:, 0] = side - 1 - expected[:, 0]
    np.testing.assert_allclose(s["keypoints"], expected, atol=1e-3)
    assert (s["keypoints"] >= 0).all() and (s["keypoints"] <= side - 1).all()
    frame = np.asarray(Image.open(REAL_SAMPLES / "freihand" / f"{int(s['image_id']) - i + frames[i]:08d}.jpg"))
    assert np.abs(s["image"].astype(int) - frame[y0:y0 + side, x0:x0 + side][:, ::-1]).mean() < 3


def test_hand_sets_feed_the_pipelines(rhd_built, freihand_built):
  from dapose_jax.data import pipeline

  augment = ConfigDict(dict(enabled=False, resize_pad=False))
  for name, data_dir in (("rhd", rhd_built / "tfds"), ("freihand", freihand_built / "tfds")):
    source = sources.make_source(config(name, data_dir), "train")
    batch = next(pipeline.train_iterator(source, batch_size=2, image_size=32, augment=augment, seed=0))
    assert batch["image"].shape == (2, 32, 32, 3) and batch["keypoints"].shape == (2, 21, 2)
    test = sources.make_source(config(name, data_dir), "test")
    batches = list(pipeline.eval_batches(test, batch_size=4, image_size=32, resize_pad=False))
    assert sum(b["mask"].sum() for b in batches) == len(test) and batches[0]["visible"].shape == (4, 21)
