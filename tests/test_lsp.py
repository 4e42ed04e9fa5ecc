import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from ml_collections import ConfigDict
from PIL import Image

from dapose_jax.augment import transforms
from dapose_jax.commands import build
from dapose_jax.data import pipeline, sources
from dapose_jax.data.builders import lsp
from dapose_jax.pose import skeletons

REAL_LSP = Path(__file__).resolve().parents[2] / "shared" / "data" / "lsp"
SIZES = [(40, 30), (32, 48), (50, 50), (36, 44)]  # (height, width) of the fixture images
# Body16 name -> LSP-14 index (LSP README order), written out independently of the builder's table.
LSP14 = dict(r_ankle=0, r_knee=1, r_hip=2, l_hip=3, l_knee=4, l_ankle=5, r_wrist=6, r_elbow=7, r_shoulder=8,
             l_shoulder=9, l_elbow=10, l_wrist=11, upper_neck=12, head_top=13)


def write_release(root, joints_n14x3, extended=False, sizes=SIZES):
  """A release in the real on-disk format: images/im0001.jpg ... and joints.mat."""
  (root / "images").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i, (h, w) in enumerate(sizes, start=1):
    name = f"im{i:05d}.jpg" if extended else f"im{i:04d}.jpg"
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(root / "images" / name)
  # LSP stores (3, 14, N), LSP-extended (14, 3, N)
  raw = joints_n14x3.transpose(2, 1, 0) if not extended else joints_n14x3.transpose(1, 2, 0)
  scipy.io.savemat(root / "joints.mat", {"joints": raw})
  return root


def random_joints(n, seed=1):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 30, (n, 14, 2))
  flag = rng.integers(0, 2, (n, 14, 1)).astype(np.float64)
  return np.concatenate([xy, flag], axis=-1)


def config(name, data_dir):
  return ConfigDict(dict(name=name, keypoint_set="body16", data_dir=str(data_dir), resize_pad=True))


def check_body16(sample, joints14, flag_means_visible):
  visible14 = joints14[:, 2] if flag_means_visible else 1 - joints14[:, 2]
  for k, name in enumerate(skeletons.BODY16.names):
    if name in ("pelvis", "thorax"):  # dummies filled with head-top, never supervised
      np.testing.assert_allclose(sample["keypoints"][k], joints14[LSP14["head_top"], :2], rtol=1e-6)
      assert sample["visible"][k] == 0
    else:
      np.testing.assert_allclose(sample["keypoints"][k], joints14[LSP14[name], :2], rtol=1e-6)
      assert sample["visible"][k] == visible14[LSP14[name]]


def test_lsp_fixture_reads_back_in_body16_order(tmp_path):
  joints = random_joints(len(SIZES))
  manual = write_release(tmp_path / "lsp", joints)
  build.build("lsp", manual, tmp_path / "tfds")
  train = sources.make_source(config("lsp", tmp_path / "tfds"), "train")
  test = sources.make_source(config("lsp", tmp_path / "tfds"), "test")
  assert len(train) == len(test) == len(SIZES)
  for i, (h, w) in enumerate(SIZES):
    sample = train[i]
    assert sample["image"].shape == (h, w, 3) and sample["image"].dtype == np.uint8
    on_disk = cv2.imread(str(manual / "images" / f"im{i + 1:04d}.jpg"))[..., ::-1]
    np.testing.assert_array_equal(sample["image"], on_disk)  # the JPEG bytes are stored as read
    assert sample["keypoints"].dtype == sample["visible"].dtype == np.float32
    check_body16(sample, joints[i], flag_means_visible=False)
    np.testing.assert_allclose(sample["joints14"], joints[i], rtol=1e-6)
    assert sample["image_id"] == i + 1
    np.testing.assert_array_equal(test[i]["keypoints"], sample["keypoints"])


def test_lsp_extended_flag_means_visible(tmp_path):
  joints = random_joints(3, seed=2)
  manual = write_release(tmp_path / "lspet", joints, extended=True, sizes=SIZES[:3])
  build.build("lsp_extended", manual, tmp_path / "tfds")
  source = sources.make_source(config("lsp_extended", tmp_path / "tfds"), "train")
  assert len(source) == 3
  for i in range(3):
    check_body16(source[i], joints[i], flag_means_visible=True)


def test_unbuilt_dataset_error_says_where_to_get_it_and_how_to_build(tmp_path):
  with pytest.raises(sources.MissingDatasetError) as error:
    sources.make_source(config("lsp", tmp_path / "empty"), "test")
  message = str(error.value)
  assert f"python -m dapose_jax build --dataset lsp --manual_dir MANUAL_DIR --data_dir {tmp_path / 'empty'}" \
      in message
  assert "lsp_dataset.zip" in message and "images/im0001.jpg" in message and "joints.mat" in message


def test_unknown_split_and_unknown_dataset(tmp_path):
  with pytest.raises(ValueError, match="val"):
    sources.make_source(config("lsp", tmp_path), "val")
  with pytest.raises(sources.MissingDatasetError, match="mpii"):
    sources.make_source(config("mpii", tmp_path), "test")


def test_wrong_joint_count_names_the_file(tmp_path):
  manual = write_release(tmp_path / "lsp", random_joints(len(SIZES)))
  scipy.io.savemat(manual / "joints.mat", {"joints": np.zeros((3, 16, len(SIZES)))})
  with pytest.raises(ValueError, match=re.escape(str(manual / "joints.mat"))):
    build.build("lsp", manual, tmp_path / "tfds")


def test_missing_image_names_the_file(tmp_path):
  manual = write_release(tmp_path / "lsp", random_joints(len(SIZES)))
  (manual / "images" / "im0003.jpg").unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(manual / "images" / "im0003.jpg"))):
    build.build("lsp", manual, tmp_path / "tfds")


def test_missing_manual_dir_shows_the_expected_layout(tmp_path):
  with pytest.raises(AssertionError, match=re.escape("MANUAL_DIR/images/im0001.jpg")):
    build.build("lsp", tmp_path / "nowhere", tmp_path / "tfds")


def test_interrupted_build_is_never_read_and_a_rerun_builds(tmp_path, monkeypatch):
  manual = write_release(tmp_path / "lsp", random_joints(len(SIZES)))
  data_dir = tmp_path / "tfds"
  generate = lsp.Lsp._generate_examples

  def interrupted(self, *args):
    for n, example in enumerate(generate(self, *args)):
      if n == 2:
        raise KeyboardInterrupt
      yield example

  monkeypatch.setattr(lsp.Lsp, "_generate_examples", interrupted)
  with pytest.raises(KeyboardInterrupt):
    build.build("lsp", manual, data_dir)
  with pytest.raises(sources.MissingDatasetError):
    sources.make_source(config("lsp", data_dir), "train")

  # A killed build leaves its complete-looking temporary folder behind: it is not read either.
  monkeypatch.setattr(lsp.Lsp, "_generate_examples", generate)
  build.build("lsp", manual, tmp_path / "done")
  shutil.copytree(tmp_path / "done" / "lsp" / "1.0.0", data_dir / "lsp" / "incomplete.KILLED_1.0.0")
  with pytest.raises(sources.MissingDatasetError):
    sources.make_source(config("lsp", data_dir), "train")
  build.build("lsp", manual, data_dir)
  assert len(sources.make_source(config("lsp", data_dir), "train")) == len(SIZES)


def test_synthetic_lsp_config(tmp_path):
  import runpy

  from dapose_jax.run import loop

  get_config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "configs" / "synthetic_lsp.py"))["get_config"]
  for variant in ("", "regda"):
    c = get_config(variant)
    assert c.method == (variant or "source_only") and c.source.name == "synthetic"
    assert c.target.name == "lsp" and c.target.keypoint_set == "body16"
    assert c.target.resize_pad and c.target.augment.resize_pad and not c.target.augment.enabled
    assert "test_size" not in c.target  # LSP is always evaluated on all of its images
    c.target.data_dir = str(tmp_path / "empty")
    with pytest.raises(sources.MissingDatasetError, match="dapose_jax build --dataset lsp"):
      loop.run(c, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def real_lsp(tmp_path_factory):
  """Real LSP built once per session into a temporary data_dir."""
  if not (REAL_LSP / "joints.mat").exists():
    pytest.skip(f"no real LSP at {REAL_LSP}")
  data_dir = tmp_path_factory.mktemp("tfds")
  start = time.perf_counter()
  build.build("lsp", REAL_LSP, data_dir)
  seconds = time.perf_counter() - start
  return config("lsp", data_dir), seconds


def test_real_lsp_builds_quickly_to_2000_samples(real_lsp):
  cfg, seconds = real_lsp
  assert seconds < 30  # about 2 s on 2 CPU cores
  assert len(sources.make_source(cfg, "train")) == len(sources.make_source(cfg, "test")) == 2000


def test_real_lsp_visibility_convention(real_lsp):
  source = sources.make_source(real_lsp[0], "test")
  visible = np.stack([source[i]["visible"] for i in range(0, 2000, 10)])
  assert set(np.unique(visible)) <= {0.0, 1.0}
  assert not visible[:, [6, 7]].any()  # pelvis and thorax
  real = np.delete(visible, [6, 7], axis=1)
  assert 0.85 < real.mean() < 0.97  # 92.7 % of LSP's joints are not flagged occluded


def test_real_lsp_joints_land_on_the_person_after_resize_pad(real_lsp):
  source, size = sources.make_source(real_lsp[0], "test"), 128
  inside, near_joints = [], []
  for i in range(0, 2000, 40):
    sample = source[i]
    h, w = sample["image"].shape[:2]
    image, kps = transforms.test_transform(sample["image"], sample["keypoints"], size, pad=True)
    new_w, new_h = (int(size * w / h), size) if w < h else (size, int(size * h / w))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    content = np.zeros((size, size), bool)
    content[top:top + new_h, left:left + new_w] = True
    assert not image[~content].any()  # the padding is zeros
    for x, y in kps[sample["visible"] > 0]:
      col, row = int(x), int(y)
      inside.append(0 <= col < size and 0 <= row < size and content[row, col])
      if inside[-1]:
        near_joints.append(image[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].mean())
  assert np.mean(inside) > 0.98
  assert np.mean(near_joints) > 40  # image content, far from the zero padding


def test_real_lsp_feeds_the_pipelines(real_lsp):
  cfg = real_lsp[0]
  augment = ConfigDict(dict(enabled=False, resize_pad=True))
  source = sources.make_source(cfg, "train")
  batch = next(pipeline.train_iterator(source, batch_size=4, image_size=64, augment=augment, seed=0))
  assert batch["image"].shape == (4, 64, 64, 3) and batch["keypoints"].shape == (4, 16, 2)
  batch = next(pipeline.eval_batches(source, batch_size=4, image_size=64, resize_pad=True))
  assert batch["visible"].shape == (4, 16) and batch["mask"].sum() == 4
