import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.pose import decoding, keypoints


def reference_generate_target(joints, visible, heatmap_size, sigma, image_size):
  """Line-by-line NumPy port of tllib's generate_target (loops, (K, H, W) layout) for comparison."""
  k = joints.shape[0]
  weight = visible.astype(np.float32).copy()
  target = np.zeros((k, heatmap_size, heatmap_size), np.float32)
  tmp = sigma * 3
  stride = image_size / heatmap_size
  for j in range(k):
    mu_x = int(joints[j][0] / stride + 0.5)
    mu_y = int(joints[j][1] / stride + 0.5)
    ul = [int(mu_x - tmp), int(mu_y - tmp)]
    br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
    if mu_x >= heatmap_size or mu_y >= heatmap_size or mu_x < 0 or mu_y < 0:
      weight[j] = 0
      continue
    size = 2 * tmp + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, None]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    g_x = max(0, -ul[0]), min(br[0], heatmap_size) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], heatmap_size) - ul[1]
    img_x = max(0, ul[0]), min(br[0], heatmap_size)
    img_y = max(0, ul[1]), min(br[1], heatmap_size)
    if weight[j] > 0.5:
      target[j][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return np.moveaxis(target, 0, -1), weight


def test_gaussian_target_peak_and_neighbour_values():
  heatmaps, weights = keypoints.gaussian_targets(jnp.array([[100.0, 50.0]]), jnp.array([1.0]))
  # mu = (int(25 + .5), int(12.5 + .5)) = (25, 13)
  assert heatmaps.shape == (64, 64, 1)
  assert float(heatmaps[13, 25, 0]) == pytest.approx(1.0)
  assert float(heatmaps[13, 26, 0]) == pytest.approx(np.exp(-1 / 8), rel=1e-6)
  assert float(heatmaps[19, 31, 0]) == pytest.approx(np.exp(-72 / 8), rel=1e-5)  # window corner
  assert float(heatmaps[20, 25, 0]) == 0.0  # 7 rows away: outside the 13x13 window
  assert float(weights[0]) == 1.0


@pytest.mark.parametrize("sigma", [2.0, 1.5, 3.0])
def test_gaussian_targets_match_reference_loop_including_borders(sigma):
  rng = np.random.default_rng(0)
  joints = rng.uniform(-12, 268, size=(40, 2)).astype(np.float32)
  joints[:6] = [[-5.9, 10], [-6.1, 10], [253.9, 40], [254.0, 40], [0, 0], [255.9, 255.9]]
  visible = (rng.uniform(size=40) > 0.2).astype(np.float32)
  visible[:6] = 1
  expected_maps, expected_w = reference_generate_target(joints, visible, 64, sigma, 256)
  maps, w = keypoints.gaussian_targets(jnp.asarray(joints), jnp.asarray(visible), sigma=sigma)
  np.testing.assert_allclose(np.asarray(maps), expected_maps, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(w), expected_w)
  # x = -5.9 truncates into column 0 with weight 1; -6.1 and 254 fall off the grid.
  assert list(np.asarray(w[:4])) == [1.0, 0.0, 1.0, 0.0]


def test_gaussian_targets_invisible_keypoint_has_zero_map_and_weight():
  maps, w = keypoints.gaussian_targets(jnp.array([[128.0, 128.0]]), jnp.array([0.0]))
  assert float(jnp.abs(maps).sum()) == 0.0 and float(w[0]) == 0.0


def test_argmax_2d_first_maximum_and_nonpositive_rule():
  maps = jnp.zeros((2, 8, 8, 3))
  maps = maps.at[0, 5, 2, 0].set(3.0)  # y=5, x=2
  maps = maps.at[0, 1, 6, 1].set(0.5).at[0, 7, 7, 1].set(0.5)  # tie: first in row-major order
  maps = maps.at[0, :, :, 2].set(-1.0).at[0, 4, 4, 2].set(-0.5)  # max <= 0 -> (0, 0)
  xy, maxvals = decoding.argmax_2d(maps)
  np.testing.assert_array_equal(np.asarray(xy[0]), [[2, 5], [6, 1], [0, 0]])
  np.testing.assert_allclose(np.asarray(maxvals[0]), [3.0, 0.5, -0.5])
  np.testing.assert_array_equal(np.asarray(xy[1]), np.zeros((3, 2)))


def test_pseudo_labels_ground_truth_is_window_gaussian_at_argmax():
  rng = np.random.default_rng(1)
  maps = jnp.asarray(rng.normal(size=(2, 64, 64, 5)).astype(np.float32))
  maps = maps.at[1, :, :, 4].set(-1.0)  # max <= 0: label at (0, 0)
  gt, gf = decoding.pseudo_labels(maps)
  xy, _ = decoding.argmax_2d(maps)
  for b in range(2):
    expected, _ = reference_generate_target(np.asarray(xy[b]), np.ones(5), 64, 2.0, 64)
    np.testing.assert_allclose(np.asarray(gt[b]), expected, atol=1e-6)
  assert float(gt[1, 0, 0, 4]) == pytest.approx(1.0)
  other = np.asarray(gt[0, ..., 1:]).sum(-1)
  np.testing.assert_allclose(np.asarray(gf[0, ..., 0]), np.clip(other, 0, 1), atol=1e-6)
  assert float(gf.max()) <= 1.0


def test_pseudo_labels_fast_variant_is_thresholded_disc_close_to_exact():
  maps = jnp.zeros((1, 64, 64, 2)).at[0, 30, 20, 0].set(1.0).at[0, 10, 40, 1].set(1.0)
  gt_fast, gf_fast = decoding.pseudo_labels(maps, fast=True)
  gt, _ = decoding.pseudo_labels(maps)
  d2 = (np.arange(64)[None, :] - 20) ** 2 + (np.arange(64)[:, None] - 30) ** 2
  np.testing.assert_array_equal(np.asarray(gt_fast[0, ..., 0] > 0), d2 <= 36)
  assert float(jnp.max(jnp.abs(gt_fast - gt))) < 0.0099
  np.testing.assert_allclose(np.asarray(gf_fast[0, ..., 0]), np.asarray(gt_fast[0, ..., 1]), atol=1e-7)


def test_pseudo_labels_block_gradients():
  maps = jnp.asarray(np.random.default_rng(2).normal(size=(1, 16, 16, 2)).astype(np.float32))
  grad = jax.grad(lambda m: jnp.sum(decoding.pseudo_labels(m)[0] * m))(maps)
  # only the explicit factor m carries gradient: d/dm sum(gt * m) = gt
  np.testing.assert_allclose(np.asarray(grad), np.asarray(decoding.pseudo_labels(maps)[0]), atol=1e-7)
