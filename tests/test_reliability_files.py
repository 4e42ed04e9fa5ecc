"""Files a user gives the project, crafted or damaged, driven as a user would: nothing in them runs, and each failure
is one line that names the file."""

import io
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors, parallel
from dapose_jax.auxiliary import pose_vae, style_net
from dapose_jax.commands import predict
from dapose_jax.data import pickles
from dapose_jax.data.builders import common
from dapose_jax.interop import weights
from dapose_jax.run import comparison, finished, predictor
from dapose_jax.storage import network_files, workdirs
from tests.test_predict import fake_model, peak_at

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REFUSED = f"an annotation file holds only {pickles.HOLDS}; {pickles.REPLACE}"


def run_command(*args):
  """``python -m dapose_jax ARGS`` as a user runs it."""
  return subprocess.run([sys.executable, "-m", "dapose_jax", *args], capture_output=True, text=True, timeout=300)


def last_line(done):
  """The command's last line on stderr, after checking that it is its only error line and that no traceback came."""
  lines = done.stderr.strip().splitlines()
  assert "Traceback" not in done.stderr and [line for line in lines if line.startswith("error")] == lines[-1:], \
      done.stderr
  return lines[-1]


# -- 1. No code runs from annotation files ------------------------------------------------------------------------

class Call:
  """Pickles as a call of ``function`` (e.g. ``os.system``) on ``args``: what a crafted file would run."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


def crafted_rhd(root, marker):
  """A release whose training annotations call ``os.system`` to create ``marker``; the pickle's path."""
  path = root / "RHD_published_v2" / "training" / "anno_training.pickle"
  path.parent.mkdir(parents=True)
  path.write_bytes(pickle.dumps({0: {"uv_vis": Call(os.system, f"touch {marker}")}}))
  return path


def crafted_animal_pose(root, marker):
  """A release whose cached dog annotations call ``os.system`` to create ``marker``; the .npy's path."""
  (root / "animal-pose").mkdir(parents=True)
  (root / "animal-pose" / "keypoints.json").write_text(json.dumps({"images": {"1": "1.jpg"}}))
  path = root / "cached_data" / "real_animal_pose" / "dog" / "train_anno.npy"
  path.parent.mkdir(parents=True)
  items = np.empty(1, object)
  items[0] = {"image_id": 1, "bbox": [0, 0, 9, 9], "keypoints": Call(os.system, f"touch {marker}")}
  np.save(path, items, allow_pickle=True)
  return path


@pytest.mark.parametrize("dataset, write", [("rhd", crafted_rhd), ("animal_pose_dog", crafted_animal_pose)])
def test_a_crafted_annotation_file_runs_nothing_and_the_build_names_it(tmp_path, dataset, write):
  marker = tmp_path / "ran"
  path = write(tmp_path / "release", marker)
  done = run_command("build", f"--dataset={dataset}", f"--manual_dir={tmp_path / 'release'}",
                     f"--data_dir={tmp_path / 'tfds'}")
  assert done.returncode == 2
  assert last_line(done) == f"error: {path}: refuses to unpickle posix.system: {REFUSED}"
  assert not marker.exists() and not list((tmp_path / "tfds").glob("*/1.0.0"))
  if dataset == "rhd":  # the payload is live: a plain unpickler runs it
    pickle.loads(path.read_bytes())
  else:
    np.load(path, allow_pickle=True)
  assert marker.exists()


@pytest.mark.parametrize("function, argument", [(exec, "open({marker!r}, 'w').close()"),
                                                (eval, "open({marker!r}, 'w').close()"),
                                                (subprocess.call, ["touch", "{marker}"])])
def test_any_other_global_is_refused_before_it_runs(tmp_path, function, argument):
  marker = tmp_path / "ran"
  argument = [a.format(marker=str(marker)) for a in argument] if isinstance(argument, list) \
      else argument.format(marker=str(marker))
  path = tmp_path / "anno.pickle"
  path.write_bytes(pickle.dumps([np.zeros(2), Call(function, argument)]))
  with pytest.raises(errors.CorruptInputError) as raised:
    pickles.read_pickle(path)
  assert str(raised.value) == f"{path}: refuses to unpickle {function.__module__}.{function.__qualname__}: {REFUSED}"
  assert not marker.exists()


def python2_pickle(tree):
  """``tree`` pickled as Python 2 with numpy 1 pickled RHD's annotations: protocol 2, strings and the arrays' bytes
  as byte strings (BINSTRING), the array rebuild function under numpy.core."""

  class Pickler(pickle._Pickler):  # the Python implementation, whose dispatch table can be changed
    dispatch = dict(pickle._Pickler.dispatch)

    def save_byte_string(self, value):
      data = value.encode("latin1") if isinstance(value, str) else value
      self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
      self.memoize(value)

    dispatch[str] = dispatch[bytes] = save_byte_string

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(tree)
  return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_annotations_pickled_by_python_2_or_3_come_back_equal(tmp_path):
  annotations = {7: {"uv_vis": np.arange(126.0).reshape(42, 3), "K": np.eye(3, dtype=np.float32)},
                 8: {"name": "caf\xe9", "ids": [1, 2], "pair": (3.5, None)}}
  for name, data in (("py2.pickle", python2_pickle(annotations)), ("py3.pickle", pickle.dumps(annotations))):
    (tmp_path / name).write_bytes(data)
    read = pickles.read_pickle(tmp_path / name)
    assert sorted(read) == [7, 8] and read[8] == annotations[8]
    for key in ("uv_vis", "K"):
      np.testing.assert_array_equal(read[7][key], annotations[7][key])
      assert read[7][key].dtype == annotations[7][key].dtype
  items = np.empty(2, object)
  items[:] = [{"image_id": 3, "keypoints": [[1, 2, 1]] * 20}, {"image_id": 4, "bbox": np.ones(4)}]
  np.save(tmp_path / "anno.npy", items, allow_pickle=True)
  read = pickles.read_npy(tmp_path / "anno.npy")
  assert read.dtype == object and read[0] == items[0] and read[1]["image_id"] == 4
  np.testing.assert_array_equal(read[1]["bbox"], np.ones(4))
  np.save(tmp_path / "plain.npy", np.arange(6).reshape(2, 3))
  np.testing.assert_array_equal(pickles.read_npy(tmp_path / "plain.npy"), np.arange(6).reshape(2, 3))


@pytest.mark.skipif(not (REAL_DATA / "samples" / "h36m" / "cameras.pkl").exists(), reason="no real data")
def test_a_genuine_release_pickle_of_numpy_arrays_reads_as_pickle_does():
  """mmpose's Human3.6M cameras.pkl, a release's pickle of dicts of numpy arrays (it references numpy.ndarray,
  numpy.dtype and numpy.core.multiarray._reconstruct, as RHD's and UDAPE's files do)."""
  path = REAL_DATA / "samples" / "h36m" / "cameras.pkl"
  read = pickles.read_pickle(path)
  with open(path, "rb") as f:
    expected = pickle.load(f)  # a file of the public release
  assert read.keys() == expected.keys() and len(read) == 44
  for key, camera in expected.items():
    assert read[key].keys() == camera.keys()
    for name, value in camera.items():
      np.testing.assert_array_equal(read[key][name], value)


@pytest.mark.parametrize("name, data, message", [
    ("cut.pickle", pickle.dumps({1: np.zeros(3)})[:-9], "is not a readable pickle of"),
    ("noise.npy", b"\x93NUMPY\x01\x00garbage", "is not a readable .npy file"),
    ("cut.npy", None, "is not a readable pickle of")])
def test_a_damaged_annotation_file_is_named_in_one_line(tmp_path, name, data, message):
  path = tmp_path / name
  if data is None:
    items = np.empty(1, object)
    items[0] = {"image_id": 1}
    np.save(path, items, allow_pickle=True)
    data = path.read_bytes()[:-5]
  path.write_bytes(data)
  read = pickles.read_npy if name.endswith(".npy") else pickles.read_pickle
  with pytest.raises(errors.CorruptInputError) as raised:
    read(path)
  assert str(raised.value).startswith(f"{path} {message}") and "\n" not in str(raised.value)
  assert str(raised.value).endswith("; replace it with the file of the release")


# -- 2. Every file a run reads fails in one line naming it --------------------------------------------------------

NOISE = np.random.default_rng(0).bytes(300)  # no format's header: what a damaged or wrong download looks like


def test_a_damaged_style_network_stops_the_run_in_one_line_naming_it(tmp_path):
  network = tmp_path / "style_net.msgpack"
  network.write_bytes(NOISE)
  done = run_command("train", "--config=configs/demo.py:smoke", "--config.method=mean_teacher",
                     f"--workdir={tmp_path / 'run'}", f"--config.style.net={network}")
  assert done.returncode == 2
  assert last_line(done).startswith(f"error: {network} is not a readable network file (")
  assert last_line(done).endswith("; train one with `dapose-jax style` (a method that needs one trains it on its own)")


def object_npz(path):
  np.savez(path, weight=np.zeros(3), args=np.array([{"lr": 0.1}], dtype=object))  # an object array needs a pickle
  return path


def write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data if isinstance(data, bytes) else data.encode())
  return path


def read_style_network(path):
  network_files.write(path.with_suffix(".msgpack"), {"encoder": {"w": np.zeros(2)}})
  return style_net.read(path.with_suffix(".msgpack"))


def read_run(path):
  """``comparison.read_run`` of the folder of ``path``, its other file intact."""
  write(path.parent / ("results.json" if path.name == "config.json" else "config.json"), "{}")
  return comparison.read_run(path.parent)


def read_weights(path):
  return weights.read_named(path, f"config.style.encoder={path}")


def scores(path):
  return pose_vae.load_scores(path, None, None)  # the file is read before the data it scores


READERS = {  # case: (reader, file name, damaged content, a regex of what the message says after the file's path)
    "weights npz noise": (read_weights, "vgg.npz", NOISE, r" is not a readable state dict \(ValueError: not an .npz "
                          r"archive \(np.savez writes one\)\); give numeric arrays: np.savez\("),
    "weights npz objects": (read_weights, "vgg.npz", object_npz, r" is not a readable state dict \(ValueError: array "
                            r"'args' holds Python objects, not numbers\); give numeric arrays: np.savez\("),
    "weights pth noise": (read_weights, "vgg.pth", NOISE, " is not a (torch.save zip archive|readable state dict)"),
    "style record noise": (read_style_network, "style_net.json", NOISE, " is not a readable JSON record of"),
    "style record list": (read_style_network, "style_net.json", "[1]", " holds a list, not a JSON record of"),
    "style record without width": (read_style_network, "style_net.json", '{"style": {}}', " records no style.width"),
    "recorded config noise": (finished.read_config, "config.json", NOISE, " is not a readable recorded config"),
    "recorded config list": (finished.read_config, "config.json", "[1]", " holds a list, not a recorded config"),
    "resumed config noise": (lambda path: workdirs.record_config({"seed": 0}, path.parent), "config.json", NOISE,
                             " is not a readable recorded config"),
    "table config noise": (read_run, "config.json", NOISE, " is not a readable recorded config"),
    "table results noise": (read_run, "results.json", "{", " is not a readable results.json of a finished run"),
    "metrics bad line": (lambda path: comparison.read_metrics(path.parent), "metrics.jsonl",
                         '{"step": 1, "loss": 2}\n[3]\n', r": line 2 is not a JSON record b'\[3\]'; delete that line"),
    "pose-VAE scores noise": (scores, "scores.json", NOISE, " is not a readable pose-VAE scores file"),
    "pose-VAE scores list": (scores, "scores.json", "[]", " holds a list, not a pose-VAE scores file"),
    "release json noise": (lambda path: common.read_json(path, "LAYOUT"), "keypoints.json", NOISE,
                           " is not a readable JSON file"),
    "release mat noise": (lambda path: common.read_mat(path, "LAYOUT"), "joints.mat", NOISE,
                          " is not a readable MATLAB file"),
    "release npy noise": (lambda path: common.load_indices(path, 10, "LAYOUT"), "train_idxs.npy", NOISE,
                          " is not a readable .npy file"),
}


@pytest.mark.parametrize("case", READERS)
def test_a_damaged_file_is_named_in_one_line_with_what_was_expected(tmp_path, case):
  read, name, content, message = READERS[case]
  path = content(tmp_path / name) if callable(content) else write(tmp_path / name, content)
  with pytest.raises(errors.UserError) as raised:
    read(path)
  text = str(raised.value)
  assert re.match(re.escape(str(path)) + message, text) or re.search(f"={re.escape(str(path))}{message}", text), text
  assert "\n" not in text and isinstance(raised.value, errors.CorruptInputError)


# -- 6. Predict reads every image by its value range and names the files it cannot read ----------------------------

def test_a_16_bit_png_is_predicted_on_as_its_8_bit_version_not_as_white(tmp_path):
  wide = np.linspace(0, 65535, 64 * 48).round().astype(np.uint16).reshape(48, 64)  # 0..65535, every 8-bit level
  Image.fromarray(wide).save(tmp_path / "wide.png")
  Image.fromarray((wide >> 8).astype(np.uint8)).save(tmp_path / "narrow.png")
  assert Image.open(tmp_path / "wide.png").mode == "I;16"
  pixels, expected = predictor.read_image(tmp_path / "wide.png"), predictor.read_image(tmp_path / "narrow.png")
  assert pixels.shape == expected.shape == (48, 64, 3) and pixels.dtype == np.uint8
  assert np.abs(pixels.astype(int) - expected).max() <= 1
  assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[-1, -1].tolist() == [255, 255, 255]
  assert pixels[24, 0].tolist() == [round(wide[24, 0] / 257)] * 3 and pixels.mean() < 130
  np.testing.assert_array_equal(predictor.rgb8(Image.fromarray(wide.astype(np.int32))), pixels)  # mode I alike


def test_float_images_are_scaled_from_0_1_or_from_their_own_range(tmp_path):
  levels = np.arange(256, dtype=np.float32).reshape(16, 16)
  for values in (levels / 255, levels * 4 - 100):  # within [0, 1]; outside it: min..max
    Image.fromarray(values).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    np.testing.assert_array_equal(predictor.read_image(tmp_path / "float.tif"), np.repeat(levels[..., None], 3, -1))


def test_a_broken_link_and_a_corrupt_file_in_a_folder_are_named_and_the_readable_images_run(tmp_path, capsys):
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "good.png")
  (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
  (folder / "link.png").symlink_to(tmp_path / "gone.png")
  paths, failed = predict.plan([folder], tmp_path / "out")
  assert paths == [folder / "corrupt.jpg", folder / "good.png"] and failed == 1
  assert predict.predict(fake_model(peak_at(1, 1), tmp_path), parallel.make_mesh(), paths, tmp_path / "out") == (1, 1)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.png"]
  warnings = capsys.readouterr().err.splitlines()
  assert warnings[0] == f"warning: {folder / 'link.png'}: a broken link (to {tmp_path / 'gone.png'})"
  assert warnings[1].startswith(f"warning: {folder / 'corrupt.jpg'}: cannot be read as an image (")
  assert len(warnings) == 2


def test_a_folder_without_a_readable_image_fails_in_one_line_before_the_model_loads(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  for name in ("a.png", "b.jpg"):
    (folder / name).symlink_to(tmp_path / f"gone_{name}")
  done = run_command("predict", "--config=configs/demo.py:smoke", f"--checkpoint={tmp_path / 'no_run'}", str(folder),
                     f"--out={tmp_path / 'out'}")
  assert done.returncode == 2 and not (tmp_path / "out").exists()
  assert last_line(done) == ("error: no input could be read (2 named above): give readable images, folders of them or "
                             "videos")
  assert f"warning: {folder / 'a.png'}: a broken link (to {tmp_path / 'gone_a.png'})" in done.stderr
  assert f"warning: {folder / 'b.jpg'}: a broken link (to {tmp_path / 'gone_b.jpg'})" in done.stderr
