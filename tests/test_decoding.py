"""The named heatmap decoders (pose/decoding.py: argmax, quarter, dark) on heatmaps rendered at known sub-pixel
positions, against hand-built cases and a NumPy/OpenCV loop written from DARK's definition."""

import cv2
import numpy as np
import pytest

from dapose_jax.config import defaults
from dapose_jax.pose import decoding

SIZE, SIGMA = 48, 2.0
# (x, y) of the peaks in heatmap cells: sub-pixel, and away from the border that DARK leaves unrefined
CENTRES = np.array([[20.3, 17.71], [9.6, 30.05], [33.87, 8.42], [24.0, 24.0]], np.float32)


def rendered(centres, size=SIZE, sigma=SIGMA):
  """(size, size, K) unnormalised Gaussians of peak 1 centred on the sub-pixel ``centres``."""
  v, u = np.mgrid[0:size, 0:size].astype(np.float32)
  maps = [np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma ** 2)) for x, y in centres]
  return np.stack(maps, axis=-1)


def dark_loop(heatmaps, xy, kernel):
  """DARK per map as its paper and mmpose define it: OpenCV's blur of the zero-bordered map, the map's maximum
  restored, log, one Newton step from the integer argmax."""
  out = xy.copy()
  border = kernel // 2
  for k in range(heatmaps.shape[-1]):
    hm = heatmaps[..., k].astype(np.float64)
    padded = np.zeros((hm.shape[0] + 2 * border, hm.shape[1] + 2 * border))
    padded[border:-border, border:-border] = hm
    blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
    log = np.log(np.maximum(blurred * hm.max() / blurred.max(), 1e-10))
    x, y = int(xy[k, 0]), int(xy[k, 1])
    g = np.array([log[y, x + 1] - log[y, x - 1], log[y + 1, x] - log[y - 1, x]]) / 2
    hxx = (log[y, x + 2] - 2 * log[y, x] + log[y, x - 2]) / 4
    hyy = (log[y + 2, x] - 2 * log[y, x] + log[y - 2, x]) / 4
    hxy = (log[y + 1, x + 1] - log[y - 1, x + 1] - log[y + 1, x - 1] + log[y - 1, x - 1]) / 4
    out[k] -= np.linalg.solve(np.array([[hxx, hxy], [hxy, hyy]]), g)
  return out


def test_argmax_is_the_integer_peak_and_the_refinements_move_toward_the_true_position():
  maps = rendered(CENTRES)
  argmax, confidence = decoding.keypoints_in_cells(maps, "argmax")
  np.testing.assert_array_equal(argmax, np.round(CENTRES))
  quarter, _ = decoding.keypoints_in_cells(maps, "quarter", SIGMA)
  dark, dark_confidence = decoding.keypoints_in_cells(maps, "dark", SIGMA)
  np.testing.assert_array_equal(confidence, dark_confidence)
  errors = {name: np.abs(np.asarray(xy) - CENTRES).max() for name, xy in
            (("argmax", argmax), ("quarter", quarter), ("dark", dark))}
  assert errors["dark"] < 0.05 < errors["quarter"] < errors["argmax"] <= 0.5


def test_dark_equals_opencvs_blur_and_the_newton_step_of_its_definition():
  rng = np.random.default_rng(0)
  maps = rendered(CENTRES) * rng.uniform(0.3, 1.0, len(CENTRES)) + rng.uniform(0, 0.02, (SIZE, SIZE, len(CENTRES)))
  argmax, _ = decoding.keypoints_in_cells(maps, "argmax")
  dark, _ = decoding.keypoints_in_cells(maps.astype(np.float32), "dark", SIGMA)
  assert decoding.dark_kernel_size(SIGMA) == 11 and decoding.dark_kernel_size(3.0) == 17
  np.testing.assert_allclose(dark, dark_loop(maps, np.asarray(argmax), 11), atol=2e-4)


def test_quarter_moves_a_quarter_cell_toward_the_higher_neighbour_inside_mmpose_bounds():
  maps = np.zeros((8, 8, 4), np.float32)
  maps[4, 4, 0], maps[4, 5, 0], maps[5, 4, 0] = 1.0, 0.5, 0.2  # right and below are higher than left and above
  maps[4, 4, 1], maps[4, 3, 1], maps[3, 4, 1] = 1.0, 0.5, 0.2  # left and above
  maps[3, 1, 2], maps[3, 2, 2] = 1.0, 0.5  # column 1: mmpose leaves x unrefined (1 < x)
  maps[..., 3] = -1.0  # no positive maximum: stays at (0, 0)
  xy, _ = decoding.keypoints_in_cells(maps, "quarter")
  np.testing.assert_array_equal(xy, [[4.25, 4.25], [3.75, 3.75], [1.0, 3.0], [0.0, 0.0]])


def test_decoders_keep_a_map_without_a_positive_maximum_at_the_origin_and_scale_by_the_stride():
  maps = rendered(CENTRES[:2])
  maps[..., 1] = 0.0
  for decoder in defaults.DECODERS:
    cells, _ = decoding.keypoints_in_cells(maps, decoder, SIGMA)
    pixels, _ = decoding.keypoints_in_pixels(maps, 4 * SIZE, decoder, SIGMA)
    np.testing.assert_array_equal(cells[1], [0.0, 0.0])
    np.testing.assert_allclose(pixels, 4 * np.asarray(cells), rtol=1e-6)


def test_an_unknown_decoder_names_the_choices():
  with pytest.raises(ValueError, match="argmax, quarter, dark"):
    decoding.keypoints_in_cells(rendered(CENTRES), "soft")
