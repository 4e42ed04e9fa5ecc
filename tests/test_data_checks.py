"""Data checked at build time: a corrupt image fails the build naming the file and the sample, or is skipped and
listed with skip_corrupt; a built sample that cannot be decoded names the data set, the split and the index."""

import json
import logging
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors
from dapose_jax.commands import build
from dapose_jax.data import pipeline, sources
from dapose_jax.data.builders import common
from dapose_jax.pose import skeletons
from tests.test_animal_datasets import write_synanimal
from tests.test_body_datasets import write_h36m_subject
from tests.test_hand_datasets import write_freihand, write_h3d
from tests.test_lsp import SIZES, config, random_joints, write_release


def truncate(path):
  """Keeps the first half of the file, as an interrupted download or copy leaves it."""
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def lsp_with_truncated_image(root):
  """A 4-image LSP release whose third image (sample 2, image_id 3) is cut in half; returns (release, image)."""
  release = write_release(root, random_joints(len(SIZES)))
  image = truncate(release / "images" / "im0003.jpg")
  with Image.open(image) as header:  # the header is intact: reading only the header would pass the file
    assert header.size == (SIZES[2][1], SIZES[2][0])
  return release, image


def test_a_truncated_jpeg_fails_the_build_naming_the_file_and_the_sample(tmp_path):
  release, image = lsp_with_truncated_image(tmp_path / "lsp")
  with pytest.raises(common.CorruptImageError) as failed:
    build.build("lsp", release, tmp_path / "tfds")
  message = str(failed.value)
  assert isinstance(failed.value, errors.UserError) and "\n" not in message
  assert message.startswith(f"{image} (the image of sample 2 (image_id 3) of lsp) cannot be decoded: image file "
                            "is truncated")
  assert "--skip_corrupt" in message
  # nothing that make_source would read as a finished build
  assert [p.name for p in (tmp_path / "tfds" / "lsp").iterdir()] == []
  with pytest.raises(sources.MissingDatasetError):
    sources.make_source(config("lsp", tmp_path / "tfds"), "train")


def test_skip_corrupt_leaves_the_sample_out_warns_and_lists_it(tmp_path, caplog):
  release, image = lsp_with_truncated_image(tmp_path / "lsp")
  with caplog.at_level(logging.WARNING):
    builder = build.build("lsp", release, tmp_path / "tfds", skip_corrupt=True)
  assert f"skipping sample 2 (image_id 3) of lsp: {image} cannot be decoded (image file is truncated" in caplog.text
  source = sources.make_source(config("lsp", tmp_path / "tfds"), "train")
  assert len(source) == len(SIZES) - 1
  assert [int(source[i]["image_id"]) for i in range(len(source))] == [1, 2, 4]
  np.testing.assert_array_equal(source[2]["image"].shape, (*SIZES[3], 3))
  listed = json.loads((tmp_path / "tfds" / "lsp" / "1.0.0" / build.SKIPPED).read_text())
  assert build.skipped_samples(builder) == listed
  assert [(s["sample"], s["file"]) for s in listed] == [("sample 2 (image_id 3)", str(image))]
  assert listed[0]["error"].startswith("image file is truncated")


def test_a_sound_build_lists_nothing_skipped(tmp_path):
  release = write_release(tmp_path / "lsp", random_joints(len(SIZES)))
  builder = build.build("lsp", release, tmp_path / "tfds", skip_corrupt=True)
  assert builder.info.splits["train"].num_examples == len(SIZES)
  assert build.skipped_samples(builder) == [] and not (pathlib.Path(builder.data_dir) / build.SKIPPED).exists()


def h3d_entry_0(root):
  write_h3d(root, n=6)
  return root, root / "H3D_crop" / "part1" / "000000.jpg", "entry 0 of annotation.json of h3d"


def freihand_frame_1_gs(root):
  write_freihand(root, n=2)
  return root, root / "training" / "rgb" / "00000001.jpg", "frame 1 (gs) of freihand"


def h36m_image_5005(root):
  truth = write_h36m_subject(root, 5, 6, seed=0)  # every 5th image: 5000 and 5005
  return root, root / "images" / truth[5]["name"], "image id 5005 of subject 5 of human36m"


def synanimal_render_3(root):
  write_synanimal(root, "horse", [3, 0], [1])
  return root, root / "synthetic_animal" / "horse_combineds5r5_texture" / "0003_img.png", \
      "horse render 3 of synanimal_horse"


@pytest.mark.parametrize("name, write", [
    ("h3d", h3d_entry_0),  # JPEGs stored byte for byte (common.jpeg_file)
    ("freihand", freihand_frame_1_gs),  # hand crops (common.crop_hand)
    ("human36m", h36m_image_5005),  # body crops, formerly decoded by OpenCV (common.read_rgb)
    ("synanimal_horse", synanimal_render_3),  # PNG renders (common.read_rgb)
])
def test_every_builder_decodes_its_images_whole(name, write, tmp_path):
  release, image, sample = write(tmp_path / "release")
  truncate(image)
  with pytest.raises(common.CorruptImageError) as failed:
    build.build(name, release, tmp_path / "tfds")
  assert str(failed.value).startswith(f"{image} (the image of {sample}) cannot be decoded: ")
  assert not (tmp_path / "tfds" / name / "1.0.0").exists()


class FakeDataSource:
  """Stands in for a TFDS data source: index ``broken`` fails as TFDS's decoder fails on a truncated JPEG,
  index ``empty`` decodes to no image."""

  def __init__(self, broken, empty):
    self.broken, self.empty = broken, empty

  def __len__(self):
    return 3

  def __getitem__(self, index):
    if index >= 3:
      raise IndexError(index)
    if index == self.broken:
      raise AttributeError("'NoneType' object has no attribute 'astype'")
    return {"image": np.zeros((0, 0, 3) if index == self.empty else (4, 4, 3), np.uint8)}


def test_a_sample_that_cannot_be_decoded_names_the_data_set_split_and_index():
  split = sources.BuiltSplit(FakeDataSource(broken=1, empty=2), skeletons.BODY16, "data set 'lsp' split 'test'",
                             "rebuild it")
  assert split[0]["image"].shape == (4, 4, 3)
  with pytest.raises(sources.CorruptSampleError, match=r"^data set 'lsp' split 'test' sample 1 cannot be decoded "
                     r"\(AttributeError: 'NoneType' object has no attribute 'astype'\); rebuild it"):
    split[1]
  with pytest.raises(sources.CorruptSampleError, match=r"sample 2 cannot be decoded \(empty image\)"):
    pickle.loads(pickle.dumps(split))[2]  # Grain's worker processes get a pickled copy
  with pytest.raises(IndexError):  # the end of the split stays an IndexError
    split[3]


def test_a_corrupt_stored_sample_fails_training_with_the_data_set_split_and_index(tmp_path, monkeypatch):
  release, image = lsp_with_truncated_image(tmp_path / "lsp")
  # A build that stores the files' bytes unchecked, as the builders did before they decoded every image.
  monkeypatch.setattr(common.Builder, "_read_image", lambda self, sample, read, path, *args: (path.read_bytes(), 1.0))
  build.build("lsp", release, tmp_path / "tfds")
  source = sources.make_source(config("lsp", tmp_path / "tfds"), "test")
  assert source[1]["image"].shape == (*SIZES[1], 3)
  message = (f"data set 'lsp' split 'test' sample 2 cannot be decoded (AttributeError: 'NoneType' object has no "
             f"attribute 'astype'); delete {tmp_path / 'tfds' / 'lsp' / '1.0.0'} and build it again with python -m "
             f"dapose_jax build --dataset lsp --manual_dir MANUAL_DIR --data_dir {tmp_path / 'tfds'} (a build "
             "checks every image)")
  with pytest.raises(sources.CorruptSampleError) as failed:
    source[2]
  assert str(failed.value) == message
  with pytest.raises(sources.CorruptSampleError) as failed:  # as the first evaluation meets it
    next(pipeline.eval_batches(source, batch_size=4, image_size=16, resize_pad=True))
  assert str(failed.value) == message


def run_build(*args):
  return subprocess.run([sys.executable, "-m", "dapose_jax.commands.build", *args], capture_output=True, text=True,
                        timeout=120)


def test_build_command_reports_a_corrupt_image_in_one_line_and_skips_it_on_request(tmp_path):
  release, image = lsp_with_truncated_image(tmp_path / "lsp")
  data_dir = tmp_path / "tfds"
  failed = run_build("--dataset=lsp", f"--manual_dir={release}", f"--data_dir={data_dir}")
  assert failed.returncode == 2 and "Traceback" not in failed.stderr
  lines = failed.stderr.strip().splitlines()
  assert [line for line in lines if "error:" in line] == lines[-1:]  # one line, the last
  assert lines[-1].startswith(f"error: {image} (the image of sample 2 (image_id 3) of lsp) cannot be decoded: ")
  assert not (data_dir / "lsp" / "1.0.0").exists()

  skipped = run_build("--dataset=lsp", f"--manual_dir={release}", f"--data_dir={data_dir}", "--skip_corrupt")
  assert skipped.returncode == 0, skipped.stderr
  assert f"skipping sample 2 (image_id 3) of lsp: {image} cannot be decoded" in skipped.stderr
  assert f"(train: 3 examples; 1 corrupt sample skipped, listed in {data_dir / 'lsp' / '1.0.0' / 'skipped.json'}; " \
      in skipped.stdout
