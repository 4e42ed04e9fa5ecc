"""The browse command shows the samples a run trains and evaluates on, drawn in a contact sheet."""

import itertools
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dapose_jax.augment import transforms
from dapose_jax.commands import browse
from dapose_jax.data import sources
from dapose_jax.plots import drawing
from dapose_jax.pose import skeletons
from dapose_jax.run import loop
from configs import demo

SMOKE = "--config=configs/demo.py:smoke"


def run_browse(*args):
  return subprocess.run([sys.executable, "-m", "dapose_jax", "browse", SMOKE, *args], capture_output=True, text=True,
                        timeout=120)


def test_train_samples_are_the_first_training_batch_of_a_run():
  config = demo.get_config("smoke")
  shown = list(itertools.islice(browse.samples(config, "target", "train"), 3))
  _, target_batches = loop.train_iterators(config, loop.train_sources(config), start=0)
  trained = next(target_batches)
  for i, sample in enumerate(shown):
    assert np.array_equal(sample["image"], trained["image"][i])
    assert np.array_equal(sample["keypoints"], trained["keypoints"][i])


def test_test_samples_are_the_test_transform_of_the_split_in_order():
  config = demo.get_config("smoke")
  shown = list(itertools.islice(browse.samples(config, "source", "test"), 2))
  source = sources.make_source(config.source, "test")
  for i, sample in enumerate(shown):
    image, keypoints = transforms.test_transform(source[i]["image"], source[i]["keypoints"], config.image_size,
                                                 pad=False)
    assert np.array_equal(sample["image"], image) and np.allclose(sample["keypoints"], keypoints)


def test_a_tile_scales_the_keypoints_with_the_image():
  body = skeletons.BODY16
  keypoints = np.full((body.num_keypoints, 2), 8.25)
  item = {"image": np.zeros((32, 32, 3), np.uint8), "keypoints": keypoints, "visible": np.ones(body.num_keypoints)}
  sheet = browse.contact_sheet([item], body, tile_size=64)
  legend = drawing.legend(body, 64 + 2 * drawing.GAP)
  assert sheet.shape == (64 + 2 * drawing.GAP + legend.shape[0], 64 + 2 * drawing.GAP, 3)
  at = drawing.GAP + 16  # 8.25 px of 32 is 16.5 px of 64: pixel 16
  assert sheet[at, at].tolist() == drawing.keypoint_colours(body)[-1].tolist()  # the last keypoint is on top
  assert np.array_equal(sheet[-legend.shape[0]:], legend)


def test_browse_writes_a_contact_sheet_of_count_tiles_and_replaces_it_only_with_overwrite(tmp_path):
  out = tmp_path / "sheet"
  first = run_browse("--count=3", "--columns=2", "--tile_size=48", f"--out={out}")
  assert first.returncode == 0, first.stderr
  sheet = np.asarray(Image.open(out / browse.SHEET))
  width = 2 * 48 + 3 * drawing.GAP
  legend = drawing.legend(skeletons.BODY16, width)
  assert sheet.shape == (2 * 48 + 3 * drawing.GAP + legend.shape[0], width, 3)
  assert sheet[drawing.GAP:drawing.GAP + 48, drawing.GAP:drawing.GAP + 48].std() > 10  # a sample, not background
  empty = sheet[2 * drawing.GAP + 48:2 * drawing.GAP + 96, 2 * drawing.GAP + 48:2 * drawing.GAP + 96]
  assert (empty == drawing.BACKGROUND).all()  # 3 samples in a 2 x 2 grid
  again = run_browse("--count=1", f"--out={out}")
  assert again.returncode == 2 and again.stderr.strip() == (
      f"error: {out / browse.SHEET} exists; --overwrite replaces it, or choose another --out")
  assert np.array_equal(np.asarray(Image.open(out / browse.SHEET)), sheet)
  replaced = run_browse("--count=1", "--split=test", f"--out={out}", "--overwrite")
  assert replaced.returncode == 0, replaced.stderr
  assert Image.open(out / browse.SHEET).size == (64 + 2 * drawing.GAP, 64 + 2 * drawing.GAP + drawing.legend(
      skeletons.BODY16, 64 + 2 * drawing.GAP).shape[0])


def test_browse_without_out_writes_under_runs_browse_a_sheet_named_after_the_config_domain_and_split(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "dapose_jax", "browse", "--config=demo:smoke", "--split=test",
                         "--count=1"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
  path = pathlib.Path("runs", "browse", "demo_smoke_source_test.png")
  assert proc.returncode == 0 and proc.stdout == f"1 test samples of source (synthetic): {path}\n", proc.stderr
  assert (tmp_path / path).is_file() and [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_the_default_sheet_names_the_config_file_its_variant_tokens_the_domain_and_the_split():
  assert browse.default_sheet("demo:smoke,regda", "target", "train") == pathlib.Path(
      "runs/browse/demo_smoke_regda_target_train.png")
  assert browse.default_sheet(str(pathlib.Path(demo.__file__)), "source", "test") == pathlib.Path(
      "runs/browse/demo_source_test.png")


@pytest.mark.parametrize("args, message", [
    (["--domain=tgt"], "error: flag --domain=tgt: value should be one of <source|target>"),
    (["--split=test", "--seed=3"], "error: --seed seeds the training stream's shuffle and augmentation; --split=test "
                                   "has neither"),
])
def test_a_bad_flag_is_one_line_with_exit_status_2(args, message, tmp_path):
  proc = run_browse(*args, f"--out={tmp_path / 'out'}")
  assert proc.returncode == 2 and proc.stderr.strip() == message
  assert not (tmp_path / "out").exists()
