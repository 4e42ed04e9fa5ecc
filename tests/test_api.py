"""The Python API (dapose_jax.load, run.predictor.PoseModel; its documented blocks run in test_docs): every image form gives
the keypoints the predict command writes, and drawing leaves out what is below the threshold."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dapose_jax
from dapose_jax import errors, parallel
from dapose_jax.commands import predict
from dapose_jax.run import finished
from tests.test_train import tiny_run

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_every_image_form_gives_the_keypoints_the_predict_command_writes(tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 56, 3), np.uint8)
  path = tmp_path / "a.png"
  Image.fromarray(image).save(path)
  model = dapose_jax.load(tiny_run())
  assert model.step == max(int(p.name) for p in (tiny_run() / "checkpoints").iterdir() if p.name.isdigit())
  forms = [model.predict(image), model.predict(path), model.predict(str(path)), model.predict(Image.open(path)),
           *model.predict([image, path]), *model.predict(np.stack([image, image]))]
  mesh = parallel.make_mesh()
  loaded = finished.load(finished.read_config(tiny_run() / "config.json"), tiny_run(), mesh)
  assert predict.predict(loaded, mesh, [path], tmp_path / "out") == (1, 0)
  written = np.array(json.loads((tmp_path / "out" / "a.json").read_text())["keypoints"])
  for result in forms:
    np.testing.assert_allclose(result.keypoints, written[:, :2], rtol=1e-6)
    np.testing.assert_allclose(result.confidence, written[:, 2], rtol=1e-6)
    assert result.names == model.keypoint_set.names and result.heatmaps is None
  assert model.predict(image, heatmaps=True).heatmaps.shape == (8, 8, model.keypoint_set.num_keypoints)
  # keypoints lie in the image's own pixels: within its 56 x 40 frame give or take the padding's reach
  assert np.all(forms[0].keypoints > -56) and np.all(forms[0].keypoints < 2 * 56)


def test_draw_leaves_out_the_keypoints_at_or_below_the_threshold():
  model = dapose_jax.load(tiny_run() / "best")
  image = np.zeros((64, 64, 3), np.uint8)
  result = model.predict(image)
  assert np.any(model.draw(image, result) != 0)
  assert not np.any(model.draw(image, result, threshold=float(result.confidence.max())))


def test_a_wrong_image_or_decoding_is_refused_in_one_line():
  model = dapose_jax.load(tiny_run())
  with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\) RGB array, got float64 \(4, 4\)"):
    model.predict(np.zeros((4, 4)))
  with pytest.raises(ValueError, match="decoding='soft'; choose one of argmax, quarter, dark"):
    model.predict(np.zeros((8, 8, 3), np.uint8), decoding="soft")


def test_a_config_loads_by_name_or_path_with_its_variant_and_overrides_without_jax():
  script = ("import sys, dapose_jax\n"
            "c = dapose_jax.config.load('demo', 'smoke', model__backbone='resnet10', seed=3)\n"
            "d = dapose_jax.config.load('configs/demo.py:smoke')\n"
            "print(c.model.backbone, c.seed, c.image_size == d.image_size, 'jax' in sys.modules)")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
  assert done.stdout.split() == ["resnet10", "3", "True", "False"], done.stderr[-2000:]
  with pytest.raises(errors.ConfigError, match=r"'dmeo': no such file, nor a config of .*demo, freihand_rhd"):
    dapose_jax.config.load("dmeo")
  with pytest.raises(errors.ConfigError, match=r"model.bakbone is not a key"):
    dapose_jax.config.load("demo", model__bakbone="resnet10")


def test_train_then_evaluate_from_python_give_the_runs_results(tmp_path):
  config = dapose_jax.config.load("demo", "smoke")
  config.update(finished.read_config(tiny_run() / "config.json"))
  shutil.copytree(tiny_run(), tmp_path / "run")
  results = dapose_jax.train(config, tmp_path / "run")  # finished: nothing is trained again
  recorded = json.loads((tiny_run() / "results.json").read_text())
  assert results == recorded
  tables = dapose_jax.evaluate(tmp_path / "run" / "best", domains=["target"], metrics=["epe"])
  assert tables["target"] == pytest.approx(recorded["best"]["target"]) and tables["target_epe"]["all"] > 0
