"""Pictures of keypoints: dots and limbs where the keypoints are, in their side's colours; heatmap grids, PCK
curves, the pictures of an evaluation and their TensorBoard images."""

import io
import types

import numpy as np
import pytest
from PIL import Image

from dapose_jax.plots import drawing
from dapose_jax.pose import skeletons
from dapose_jax.storage import workdirs
from dapose_jax.storage.metric_writers import MetricWriter
from tests.test_metric_writers import tensorboard_events

# left hand, nose, right hand; limbs hand-nose-hand
FACE = skeletons.KeypointSet(name="face", names=("l_hand", "nose", "r_hand"), groups={"all": (0, 1, 2)},
                             flip_pairs=((0, 2),), edges=((0, 1), (1, 2)))
# along row 20, through pixel centres (pixel (20, j) covers [j, j + 1) x [20, 21))
ROW = np.array([[10.5, 20.5], [32.5, 20.5], [54.5, 20.5]])


def black(side=64):
  return np.zeros((side, side, 3), np.uint8)


def test_each_keypoint_is_a_dot_of_its_colour_with_limbs_between_and_far_pixels_stay_black():
  image = black()
  drawn = drawing.draw_keypoints(image, ROW, FACE)
  colours, limbs = drawing.keypoint_colours(FACE), drawing.limb_colours(FACE)
  for (x, y), colour in zip(ROW, colours):
    assert drawn[int(y), int(x)].tolist() == colour.tolist()
  assert drawn[20, 21].tolist() == limbs[0].tolist() == colours[0].tolist()  # hand-nose: the hand's side
  assert drawn[20, 43].tolist() == limbs[1].tolist() == colours[2].tolist()
  assert drawn[40, 32].tolist() == [0, 0, 0] and drawn[20, 63].tolist() == [0, 0, 0]
  assert not image.any()  # the input is left alone


@pytest.mark.parametrize("visible", [np.array([True, False, True]), np.array([0.9, 0.0, 0.3])])
def test_a_keypoint_that_is_not_visible_is_not_drawn_nor_its_limbs(visible):
  drawn = drawing.draw_keypoints(black(), ROW, FACE, visible)
  assert drawn[20, 32].tolist() == [0, 0, 0] and drawn[20, 21].tolist() == drawn[20, 43].tolist() == [0, 0, 0]
  assert drawn[20, 10].tolist() == drawing.keypoint_colours(FACE)[0].tolist()
  assert drawn[20, 54].tolist() == drawing.keypoint_colours(FACE)[2].tolist()


def test_dots_grow_with_the_image():
  nose = skeletons.KeypointSet(name="nose", names=("nose",), groups={"all": (0,)}, flip_pairs=(), edges=())
  small, large = (drawing.draw_keypoints(black(side), ROW[:1], nose) for side in (64, 256))
  assert small[20, 14].tolist() == [0, 0, 0]  # 4 px off: outside a 64 px image's 2 px dot and its rim
  assert large[20, 14].tolist() == drawing.keypoint_colours(nose)[0].tolist()  # inside a 256 px image's 5 px dot


def test_left_is_warm_right_is_cool_centre_is_green_and_mirrored_pairs_share_a_shade():
  body = skeletons.BODY16
  colours = drawing.keypoint_colours(body).astype(int)
  sides = drawing.keypoint_sides(body)
  assert sides[body.names.index("l_knee")] == "left" and sides[body.names.index("r_knee")] == "right"
  assert sides[body.names.index("pelvis")] == "centre"
  for name, (r, g, b) in zip(body.names, colours):
    if name.startswith("l_"):
      assert r > b, name
    elif name.startswith("r_"):
      assert b > r, name
    else:
      assert g > max(r, b), name
  left_knee, right_knee = colours[body.names.index("l_knee")], colours[body.names.index("r_knee")]
  assert (left_knee != right_knee).any()
  assert len({tuple(c) for c in colours}) == body.num_keypoints
  # a set without sides spreads the hue circle: every Hand21 keypoint its own colour
  assert len({tuple(c) for c in drawing.keypoint_colours(skeletons.HAND21)}) == 21


def test_compare_puts_the_truth_on_the_left_and_the_prediction_on_the_right():
  prediction = ROW + [0, 30]
  picture = drawing.compare(black(), ROW, prediction, FACE, visible=[1, 1, 0])
  assert picture.shape == (64, 2 * 64 + drawing.GAP, 3)
  colours = drawing.keypoint_colours(FACE)
  right = 64 + drawing.GAP
  assert picture[20, 32].tolist() == colours[1].tolist() and picture[20, 54].tolist() == [0, 0, 0]
  assert picture[50, right + 54].tolist() == colours[2].tolist()  # the prediction of every keypoint
  assert picture[20, right + 32].tolist() == [0, 0, 0]


def test_a_one_hot_heatmap_tile_is_brightest_at_its_hot_cell():
  heatmaps = np.zeros((8, 8, 3), np.float32)
  heatmaps[2, 5, 1] = 0.25  # each tile is scaled to its own maximum
  grid = drawing.heatmap_grid(heatmaps)
  tile = 8 * 8  # enlarged to MIN_TILE
  assert grid.shape == (2 * tile + 3 * drawing.GAP, 2 * tile + 3 * drawing.GAP, 3)  # 2 x 2, one cell empty
  second = grid[drawing.GAP:drawing.GAP + tile, 2 * drawing.GAP + tile:2 * drawing.GAP + 2 * tile].astype(int)
  row, column = np.unravel_index(second.sum(axis=2).argmax(), (tile, tile))
  assert abs(row - 2 * 8) <= 1 and abs(column - 5 * 8) <= 1  # cell u is centred on u * stride
  assert second.sum(axis=2).max() > 400
  first = grid[drawing.GAP:drawing.GAP + tile, drawing.GAP:drawing.GAP + tile]
  assert first.max() < 10  # an all-zero map stays black


def test_a_heatmap_grid_over_an_image_has_tiles_of_the_image_size():
  image = np.full((32, 32, 3), 200, np.uint8)
  grid = drawing.heatmap_grid(np.zeros((8, 8, 2), np.float32), names=("a", "b"), columns=2, image=image)
  assert grid.shape == (32 + 2 * drawing.GAP, 2 * 32 + 3 * drawing.GAP, 3)
  assert np.abs(grid[drawing.GAP + 30, drawing.GAP + 30].astype(int) - 100).max() <= 3  # half image, half black


def curve_pixels(path):
  """(rows, columns) of the pixels of the plotted line's colour in a PNG."""
  picture = np.asarray(Image.open(path).convert("RGB"))
  return np.nonzero((picture == drawing.PLOT_COLOUR).all(axis=2))


def test_the_pck_curve_runs_from_its_first_to_its_last_value(tmp_path):
  drawing.pck_curve_png([0.01, 0.05, 0.1], [0.0, 60.0, 100.0], tmp_path / "rising.png", title="target")
  drawing.pck_curve_png([0.01, 0.05, 0.1], [50.0, 50.0, 50.0], tmp_path / "flat.png")
  rows, columns = curve_pixels(tmp_path / "rising.png")
  assert Image.open(tmp_path / "rising.png").size == drawing.PLOT_SIZE[::-1]
  start, end = rows[columns == columns.min()].mean(), rows[columns == columns.max()].mean()
  assert start > end + 200  # 0 at the bottom, 100 at the top of the 0..100 axis
  assert abs(columns.min() - drawing.PLOT_MARGINS["left"]) <= 4
  assert abs(columns.max() - (drawing.PLOT_SIZE[1] - drawing.PLOT_MARGINS["right"])) <= 4
  flat_rows, _ = curve_pixels(tmp_path / "flat.png")
  assert abs(np.median(flat_rows) - (start + end) / 2) <= 3  # 50 halfway up


def test_long_y_tick_labels_widen_the_left_margin_instead_of_leaving_the_canvas():
  x = np.array([5.0, 10.0, 15.0, 20.0])
  short = drawing.series_plot({"": (x, np.array([10.0, 20.0, 30.0, 40.0]))}, title="", x_label="")
  long = drawing.series_plot({"": (x, np.array([0.00547, 0.00506, 0.00483, 0.00465]))}, title="", x_label="")
  frame_left = lambda plot: int(np.argmax(np.all(plot[160] == 0, axis=-1)))  # the axes' black left edge, mid-height
  assert frame_left(short) == drawing.PLOT_MARGINS["left"] and frame_left(long) > drawing.PLOT_MARGINS["left"]
  assert np.all(long[:, :2] == 255)  # no label runs into the left border


def test_evaluation_pictures_draw_the_decoded_prediction_beside_the_truth():
  truth = np.array([[4.0, 20.0], [16.0, 20.0], [28.0, 20.0]], np.float32)
  source = [{"image": np.zeros((32, 32, 3), np.uint8), "keypoints": truth, "visible": np.ones(3, np.float32)}] * 3
  seen = []

  def predict(images):
    seen.append(images.shape)
    heatmaps = np.zeros((len(images), 8, 8, 3), np.float32)
    heatmaps[:, 6, 2, :2] = 1.0  # keypoints 0 and 1 at cell (x 2, y 6): image (8, 24) at stride 4
    return heatmaps  # keypoint 2: nowhere (all zero)

  config = types.SimpleNamespace(image_size=32, heatmap_size=8)
  pictures = drawing.evaluation_pictures(predict, source, FACE, config, count=2)
  assert seen == [(2, 32, 32, 3)]
  rows = pictures["truth_vs_prediction"]
  assert rows.shape == (2 * 32 + 3 * drawing.GAP, 2 * 32 + 3 * drawing.GAP, 3)
  colours = drawing.keypoint_colours(FACE)
  second_row, right = 2 * drawing.GAP + 32, 2 * drawing.GAP + 32
  assert rows[second_row + 20, drawing.GAP + 16].tolist() == colours[1].tolist()  # the truth
  assert rows[second_row + 24, right + 8].tolist() == colours[1].tolist()  # the last predicted one on top
  assert rows[second_row + 18, right + 6].tolist() == [0, 0, 0]  # no limb to keypoint 2 decoded at (0, 0)
  assert rows[second_row + 20, right + 16].tolist() == [0, 0, 0]
  assert pictures["heatmaps"].shape == (2 * 32 + 3 * drawing.GAP, 2 * 32 + 3 * drawing.GAP, 3)


def tensorboard_images(directory):
  """{(tag, step): uint8 RGB image} of the event files in ``directory``."""
  return {(value.tag, event.step): np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
          for event in tensorboard_events(directory) for value in event.summary.value if value.HasField("image")}


def test_write_images_puts_each_picture_in_tensorboard_under_its_tag(tmp_path):
  picture = drawing.draw_keypoints(black(), ROW, FACE)
  writer = MetricWriter(tmp_path)
  writer.write_images(7, "pictures/target", {"keypoints": picture, "blank": black(16)})
  writer.close()
  images = tensorboard_images(tmp_path / workdirs.TENSORBOARD)
  assert sorted(images) == [("pictures/target/blank", 7), ("pictures/target/keypoints", 7)]
  assert np.array_equal(images[("pictures/target/keypoints", 7)], picture)
  assert not (tmp_path / workdirs.METRICS).read_text()  # metrics.jsonl holds numbers only
