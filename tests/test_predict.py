"""The predict command: keypoints mapped back to the original image's pixels, a bad file named while the others
run, outputs never replaced silently, and the flip test."""

import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dapose_jax import errors, parallel
from dapose_jax.augment import views
from dapose_jax.commands import predict
from dapose_jax.methods import base
from dapose_jax.pose import skeletons
from dapose_jax.run import finished, predictor
from tests.test_evaluate import run_cli
from tests.test_train import tiny_config, tiny_run


def fake_model(eval_heatmaps, tmp_path, **config):
  method = base.Method(name="fake", init=None, train_step=None, eval_heatmaps=eval_heatmaps)
  return finished.Model(tiny_config(**config), method, {}, finished.Checkpoint(tmp_path, 0, tmp_path),
                         skeletons.BODY16)


def peak_at(column, row, value=0.7):
  """eval_heatmaps: every keypoint's 8 x 8 map peaks at one cell (input pixels (4 column, 4 row))."""
  def eval_heatmaps(config, state, images):
    return jnp.zeros((images.shape[0], 8, 8, 16)).at[:, row, column, :].set(value)
  return eval_heatmaps


def save(path, width, height):
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)).save(path)
  return path


def test_keypoints_are_mapped_back_to_the_pixels_of_non_square_images(tmp_path):
  wide, tall = save(tmp_path / "wide.png", 60, 30), save(tmp_path / "tall.jpg", 20, 50)
  copies = [save(tmp_path / f"copy{i}.png", 60, 30) for i in range(3)]  # 5 images: 2 batches of 4, one padded
  model = fake_model(peak_at(column=4, row=3), tmp_path, eval_batch_size=4)
  paths, failed = predict.plan([wide, tall, *copies], tmp_path / "out")
  assert failed == 0 and predict.predict(model, parallel.make_mesh(), paths, tmp_path / "out") == (5, 0)
  # input (16, 12) px; 60 x 30 -> 32 x 16 padded 8 rows above: ((16 - 0) * 60 / 32, (12 - 8) * 30 / 16)
  for name in ("wide", "copy2"):
    record = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    assert record["keypoints"] == [pytest.approx([30.0, 7.5, 0.7])] * 16
  # 20 x 50 -> 12 x 32 padded 10 columns on the left: ((16 - 10) * 20 / 12, 12 * 50 / 32)
  record = json.loads((tmp_path / "out" / "tall.json").read_text())
  assert record["keypoints"] == [pytest.approx([10.0, 18.75, 0.7])] * 16
  assert record["names"] == list(skeletons.BODY16.names) and record["image"] == str(tall)
  assert Image.open(tmp_path / "out" / "tall.png").size == (512, 1280)  # enlarged to a readable shorter side


def test_keypoints_between_heatmap_cells_come_out_sub_pixel_by_dark_and_on_the_grid_by_argmax(tmp_path):
  cells = np.stack([np.linspace(5.35, 26.6, 16), np.linspace(24.8, 6.2, 16)], -1)  # of a 32 x 32 heatmap
  v, u = np.mgrid[0:32, 0:32]
  maps = jnp.asarray(np.stack([np.exp(-((u - x) ** 2 + (v - y) ** 2) / 8.0) for x, y in cells], -1), jnp.float32)
  model = fake_model(lambda config, state, images: jnp.broadcast_to(maps, images.shape[:1] + maps.shape), tmp_path,
                     image_size=128, heatmap_size=32)
  image = save(tmp_path / "a.png", 256, 256)  # 2 original pixels per input pixel, 8 per heatmap cell
  for decoder, expected, tolerance in (("dark", cells * 8, 0.05 * 8), ("argmax", np.round(cells) * 8, 1e-9)):
    predict.predict(model, parallel.make_mesh(), [image], tmp_path / decoder, decoder=decoder)
    record = json.loads((tmp_path / decoder / "a.json").read_text())
    assert record["decoding"] == decoder
    np.testing.assert_allclose(np.array(record["keypoints"])[:, :2], expected, atol=tolerance)


def test_a_file_that_is_no_image_is_named_and_the_others_still_run(tmp_path, capsys):
  good = save(tmp_path / "good.png", 32, 32)
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a JPEG")
  paths, failed = predict.plan([tmp_path, tmp_path / "missing.png"], tmp_path / "out")
  assert paths == [bad, good] and failed == 1  # the folder's images, sorted; the missing path failed
  assert predict.predict(fake_model(peak_at(1, 1), tmp_path), parallel.make_mesh(), paths, tmp_path / "out") == (1, 1)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.png"]
  assert capsys.readouterr().err.splitlines() == [
      f"warning: {tmp_path / 'missing.png'}: no such file or folder",
      f"warning: {bad}: cannot be read as an image (UnidentifiedImageError: cannot identify image file '{bad}')"]


def test_outputs_are_replaced_only_with_overwrite(tmp_path):
  image = save(tmp_path / "a.png", 32, 32)
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "a.json").write_text("{}")
  with pytest.raises(errors.UserError, match=r"out already holds .*a.json; pass --overwrite to replace them"):
    predict.plan([image], tmp_path / "out")
  assert predict.plan([image], tmp_path / "out", overwrite=True) == ([image], 0)


def test_a_second_input_with_the_same_name_is_refused(tmp_path, capsys):
  (tmp_path / "b").mkdir()
  first, second = save(tmp_path / "x.png", 32, 32), save(tmp_path / "b" / "x.jpg", 32, 32)
  assert predict.plan([first, second], tmp_path / "out") == ([first], 1)
  assert f"warning: {second}: has the name of {first}" in capsys.readouterr().err


def test_flip_back_mirrors_swaps_the_flip_pairs_and_shifts_one_column():
  heatmaps = np.zeros((1, 8, 8, 16), np.float32)
  heatmaps[0, 2, 6, 0] = 1.0  # r_ankle at column 6 of the mirrored image
  heatmaps[0, 5, 0, 9] = 0.5  # head_top (no pair) at column 0: mirrored to 7, shifted out, column 0 kept
  back = np.asarray(views.flip_back(jnp.asarray(heatmaps), skeletons.BODY16))
  assert back[0, 2, 2, 5] == 1.0 and back[0, 2].sum() == 1.0  # l_ankle (5) at column 8 - 6 = 2
  assert back[0, 5, 0, 9] == 0.0 and back[0, 5, :, 9].sum() == 0.0


def left_right_detector(config, state, images):
  """A mirror-consistent fake model: right-side keypoints (r_*) at the brightest pixel of the image's left half,
  left-side ones (l_*) at that of its right half, at cell round((pixel + 0.5) / stride) as the targets place
  them; the others at column 4, row 1."""
  batch, side = images.shape[:2]
  size = config.heatmap_size
  bright = jnp.sum(images.astype(jnp.float32), axis=-1)
  columns = jnp.arange(side)

  def peak(half):
    index = jnp.argmax(jnp.where(half[None, None, :], bright, -1.0).reshape(batch, -1), axis=-1)
    row, column = (jnp.round((i + 0.5) / (side // size)).astype(jnp.int32) for i in (index // side, index % side))
    return jax.nn.one_hot(row, size)[:, :, None] * jax.nn.one_hot(column, size)[:, None, :]

  left, right = peak(columns < side // 2), peak(columns >= side // 2)
  centre = jnp.zeros((batch, size, size)).at[:, 1, 4].set(1.0)
  maps = [left if n.startswith("r_") else right if n.startswith("l_") else centre for n in skeletons.BODY16.names]
  return jnp.stack(maps, axis=-1)


def test_the_flip_test_of_a_mirror_consistent_model_agrees_with_it_everywhere(tmp_path):
  images = np.zeros((4, 32, 32, 3), np.uint8)
  images[:, 10, 5] = 255  # left half: row 10, column 5 -> cell (1, 3) -> input (4, 12)
  images[:, 20, 22] = 255  # right half: row 20, column 22 -> cell (6, 5) -> input (24, 20)
  model, mesh = fake_model(left_right_detector, tmp_path), parallel.make_mesh()
  xy, confidence, _ = map(np.asarray, predictor.keypoint_predictor(model, mesh, flip=True)(model.state, images))
  names = skeletons.BODY16.names
  expected = [(4, 12) if n.startswith("r_") else (24, 20) if n.startswith("l_") else (16, 4) for n in names]
  np.testing.assert_array_equal(xy, np.broadcast_to(np.array(expected, np.float32), xy.shape))
  # both halves of the average agree: 1.0 (a wrong pair swap or shift would leave 0.5)
  np.testing.assert_array_equal(confidence, np.ones((4, 16)))
  plain_xy, _, _ = predictor.keypoint_predictor(model, mesh)(model.state, images)
  np.testing.assert_array_equal(xy, plain_xy)


def test_the_command_writes_json_and_png_names_a_bad_file_and_exits_1(tmp_path):
  run = tiny_run()
  good = save(tmp_path / "person.png", 48, 40)
  bad = tmp_path / "notes.txt"
  bad.write_text("not an image")
  out = tmp_path / "out"
  proc = run_cli("predict", f"--config={run}", f"--checkpoint={run / 'best'}", str(good), str(bad), f"--out={out}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert f"warning: {bad}: cannot be read as an image" in proc.stderr
  record = json.loads((out / "person.json").read_text())
  assert record["names"] == list(skeletons.BODY16.names) and len(record["keypoints"]) == 16
  best_step = json.loads((run / "results.json").read_text())["best"]["step"]  # 3 or 6, by the host's rounding
  assert record["step"] == best_step and record["checkpoint"] == str(run / "best" / str(best_step))
  assert Image.open(out / "person.png").size == (614, 512)  # 48 x 40, enlarged to a shorter side of 512
  again = run_cli("predict", f"--config={run}", f"--checkpoint={run}", str(good), f"--out={out}")
  assert again.returncode == 2 and again.stderr.strip().startswith(f"error: {out} already holds {out / 'person.json'}")


def test_keypoints_at_or_below_kpt_thr_are_kept_in_the_json_and_left_out_of_the_picture(tmp_path):
  image = save(tmp_path / "a.png", 32, 32)
  model = fake_model(peak_at(column=4, row=3, value=0.2), tmp_path)
  for threshold, drawn in ((0.3, False), (0.1, True)):
    out = tmp_path / str(threshold)
    assert predict.predict(model, parallel.make_mesh(), [image], out, threshold=threshold) == (1, 0)
    record = json.loads((out / "a.json").read_text())
    assert [c for _, _, c in record["keypoints"]] == [pytest.approx(0.2)] * 16
    undrawn = predictor.draw(np.asarray(Image.open(image)), np.zeros((16, 2)), np.zeros(16), skeletons.BODY16)
    assert np.any(np.asarray(Image.open(out / "a.png")) != undrawn) == drawn


def test_the_drawing_is_enlarged_to_a_readable_size_with_each_shown_keypoint_named():
  image = np.zeros((32, 64, 3), np.uint8)
  xy = np.stack([np.linspace(4, 60, 16), np.full(16, 16.0)], -1)
  confidence = np.where(np.arange(16) < 8, 0.9, 0.1)
  plain = predictor.draw(image, xy, confidence, skeletons.BODY16, threshold=0.3, labels=False)
  named = predictor.draw(image, xy, confidence, skeletons.BODY16, threshold=0.3)
  assert plain.shape == named.shape == (512, 1024, 3)  # the shorter side enlarged to 512, the keypoints with it
  assert np.any(plain[256, 64:100] != 0) and not np.any(plain[:, 700:] != 0)  # only the first 8 keypoints drawn
  labelled = np.argwhere(np.any(named != plain, axis=-1))  # the labels: beside the 8 drawn keypoints (row 256)
  assert len(labelled) and 200 < labelled[:, 0].min() and labelled[:, 0].max() < 300
  assert 64 < labelled[:, 1].min() and labelled[:, 1].max() < 700


def test_a_video_gives_one_output_per_frame_and_is_not_replaced_without_overwrite(tmp_path):
  video = tmp_path / "clip.avi"
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 30))
  for _ in range(5):
    writer.write(np.full((30, 40, 3), 128, np.uint8))
  writer.release()
  model = fake_model(peak_at(column=4, row=3), tmp_path, eval_batch_size=4)  # 5 frames: 2 batches
  paths, failed = predict.plan([video], tmp_path / "out")
  assert (paths, failed) == ([video], 0)
  assert predict.predict(model, parallel.make_mesh(), paths, tmp_path / "out") == (5, 0)
  records = [json.loads((tmp_path / "out" / f"clip_{i:06d}.json").read_text()) for i in range(5)]
  assert [r["frame"] for r in records] == list(range(5)) and all(r["image"] == str(video) for r in records)
  # input (16, 12) px; 40 x 30 -> 32 x 24 padded 4 rows above: (16 * 40 / 32, (12 - 4) * 30 / 24)
  assert records[4]["keypoints"] == [pytest.approx([20.0, 10.0, 0.7])] * 16
  with pytest.raises(errors.UserError, match="clip_000000.json"):
    predict.plan([video], tmp_path / "out")
  broken = tmp_path / "broken.mp4"
  broken.write_bytes(b"not a video")
  assert predict.predict(model, parallel.make_mesh(), [broken], tmp_path / "other") == (0, 1)
