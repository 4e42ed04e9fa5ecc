import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.models import reconstruction
from dapose_jax.pose import decoding, keypoints

SIZE = 32  # image side
K = 3


def ideal_target(centre, sigma=2.0, height=64, width=64):
  """Full-grid Gaussian of peak 1 at a (possibly sub-pixel) centre, (1, height, width, 1)."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
  g = jnp.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
  return g[None, :, :, None]


def test_soft_argmax_of_a_delta_is_its_pixel():
  heatmaps = jnp.zeros((1, 16, 20, 2)).at[0, 9, 5, 0].set(1.0).at[0, 3, 12, 1].set(1.0)
  np.testing.assert_allclose(decoding.soft_argmax(heatmaps, 0.01), [[[5.0, 9.0], [12.0, 3.0]]], atol=1e-3)


def test_soft_argmax_of_a_symmetric_gaussian_at_a_half_pixel_is_its_centre():
  # the grid is symmetric about the centre too: the map's background (peak 0.94 here) would pull towards its middle
  t = decoding.soft_argmax_temperature(2.0)
  heatmap = ideal_target((20.5, 11.5), height=24, width=42)
  np.testing.assert_allclose(decoding.soft_argmax(heatmap, t), [[[20.5, 11.5]]], atol=1e-3)


def test_soft_argmax_of_a_log_gaussian_at_a_sub_pixel_point_is_that_point():
  # logits -d^2 / (2 * 1.5^2): the softmax is a discrete Gaussian, whose mean is its centre up to ~exp(-44)
  t = 0.05
  ys, xs = jnp.meshgrid(jnp.arange(24.0), jnp.arange(24.0), indexing="ij")
  heatmap = -t * ((xs - 10.3) ** 2 + (ys - 7.6) ** 2) / (2 * 1.5**2)
  np.testing.assert_allclose(decoding.soft_argmax(heatmap[None, :, :, None], t), [[[10.3, 7.6]]], atol=1e-3)


def test_default_temperature_puts_the_stated_mass_within_one_pixel():
  t = decoding.soft_argmax_temperature(2.0, heatmap_size=64, mass=0.9)
  assert t == pytest.approx(0.0695, abs=5e-4)  # measured by the bisection; 0.0698 without the background
  target, _ = keypoints.gaussian_targets(jnp.array([[128.0, 128.0]]), jnp.array([1.0]))  # peak at pixel (32, 32)
  p = jax.nn.softmax(target[..., 0].ravel() / t).reshape(64, 64)
  near = p[32, 31] + p[32, 32] + p[32, 33] + p[31, 32] + p[33, 32]
  assert float(near) == pytest.approx(0.9, abs=1e-6)
  assert decoding.soft_argmax_temperature(3.0) < t < decoding.soft_argmax_temperature(1.0)


def test_default_temperature_bias_at_sub_pixel_offsets_is_below_two_hundredths_of_a_pixel():
  t = decoding.soft_argmax_temperature(2.0)
  for offset in (0.1, 0.25, 0.4):
    xy = decoding.soft_argmax(ideal_target((31.0 + offset, 31.0)), t)[0, 0]
    assert abs(float(xy[0]) - 31.0 - offset) < 0.02 and abs(float(xy[1]) - 31.0) < 0.02


def test_relative_soft_argmax_does_not_depend_on_the_peak_height():
  t = decoding.soft_argmax_temperature(2.0)
  heatmap = ideal_target((16.3, 20.0))
  full = decoding.soft_argmax(heatmap, t, relative=True)
  np.testing.assert_allclose(decoding.soft_argmax(0.6 * heatmap, t, relative=True), full, atol=1e-4)
  np.testing.assert_allclose(full, [[[16.3, 20.0]]], atol=0.02)
  # with the absolute temperature the background of a 0.6 peak pulls it ~2.7 px towards the map's middle
  pulled = decoding.soft_argmax(0.6 * heatmap, t)
  assert 2.0 < float(pulled[0, 0, 0]) - 16.3 < 3.5 and 1.5 < float(pulled[0, 0, 1]) - 20.0 < 3.0


def test_soft_argmax_gradient_follows_the_peak():
  t = decoding.soft_argmax_temperature(2.0)
  dx_dcentre = jax.jacobian(lambda c: decoding.soft_argmax(ideal_target(c), t)[0, 0])(jnp.array([20.5, 11.5]))
  # moving the peak moves the output by about as much (1.09 here: the sharp softmax aliases on the pixel grid)
  np.testing.assert_allclose(dx_dcentre, np.eye(2), atol=0.15)
  grad = jax.grad(lambda h: decoding.soft_argmax(h, t)[0, 0, 0])(ideal_target((20.0, 11.0)))[0, :, :, 0]
  assert grad[11, 21] > 0 > grad[11, 19]  # raising the map right of the peak moves x right


def test_soft_argmax_equals_argmax_2d_at_low_temperature():
  heatmaps = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 12, 4))
  xy, _ = decoding.argmax_2d(heatmaps)
  np.testing.assert_allclose(decoding.soft_argmax(heatmaps, 1e-5), xy, atol=1e-3)


def test_identity_grid_is_the_normalised_pixel_index():
  grid = reconstruction.identity_grid(2, 4)
  np.testing.assert_array_equal(grid[..., 0], [[-1.0, -0.5, 0.0, 0.5]] * 2)
  np.testing.assert_array_equal(grid[..., 1], [[-1.0] * 4, [0.0] * 4])
  xy = jnp.array([[3.0, 1.0], [0.5, 0.25]])
  uv = decoding.pixels_to_normalised(xy, 2, 4)
  np.testing.assert_array_equal(uv, [[0.5, 0.0], [-0.75, -0.75]])
  np.testing.assert_array_equal(decoding.normalised_to_pixels(uv, 2, 4), xy)


def test_zero_motion_gives_the_identity_field_and_warp_for_any_mask():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
  mask = jax.nn.softmax(3 * jax.random.normal(k1, (2, SIZE, SIZE, K + 1)), -1)
  kp = jax.random.uniform(k2, (2, K, 2), minval=-1, maxval=1)
  image = jax.random.uniform(k3, (2, SIZE, SIZE, 3))
  field = reconstruction.region_motion(kp, kp, mask)
  np.testing.assert_array_equal(field, jnp.broadcast_to(reconstruction.identity_grid(SIZE, SIZE), field.shape))
  np.testing.assert_allclose(reconstruction.warp(image, field), image, atol=1e-5)


def test_moving_one_keypoint_moves_its_rectangle_and_nothing_else():
  image = jax.random.uniform(jax.random.PRNGKey(2), (1, SIZE, SIZE, 3))
  inside = np.zeros((SIZE, SIZE), bool)
  inside[8:16, 10:20] = True  # region of keypoint 0 in the driving frame; keypoints 1, 2 own no pixel
  mask = np.zeros((1, SIZE, SIZE, K + 1), np.float32)
  mask[0, inside, 0] = 1.0
  mask[0, ~inside, K] = 1.0
  kp_base = jnp.array([[[-0.25, 0.0], [0.5, 0.5], [0.1, -0.6]]])
  dx, dy = 3, -2  # whole pixels
  kp_driving = kp_base.at[0, 0].add(jnp.array([2 * dx / SIZE, 2 * dy / SIZE]))
  field = reconstruction.region_motion(kp_base, kp_driving, jnp.asarray(mask))
  warped = np.asarray(reconstruction.warp(image, field))[0]
  base = np.asarray(image)[0]
  np.testing.assert_allclose(warped[8:16, 10:20], base[8 - dy:16 - dy, 10 - dx:20 - dx], atol=1e-6)
  np.testing.assert_array_equal(warped[~inside], base[~inside])


def test_warp_is_bilinear_with_zeros_outside():
  image = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(1, 2, 4, 1) + 1.0  # rows [1 2 3 4], [5 6 7 8]
  half_pixel_right = reconstruction.identity_grid(2, 4) + jnp.array([2 * 0.5 / 4, 0.0])
  warped = reconstruction.warp(image, half_pixel_right[None])[0, ..., 0]
  np.testing.assert_allclose(warped, [[1.5, 2.5, 3.5, 2.0], [5.5, 6.5, 7.5, 4.0]], atol=1e-6)


@pytest.fixture(scope="module")
def reconstructor():
  model = reconstruction.Reconstructor(warping_features=4, warping_max_features=8, warping_blocks=5, warping_scale=1.0,
                                       generator_features=4, generator_max_features=8, generator_residual_blocks=1)
  k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(3), 4)
  image = jax.random.uniform(k1, (2, SIZE, SIZE, 3))
  kp_base = jax.random.uniform(k2, (2, K, 2), minval=-0.7, maxval=0.7)
  kp_driving = kp_base + 0.1 * jax.random.normal(k3, kp_base.shape)
  variables = jax.jit(model.init, static_argnames="train")(k4, image, kp_base, kp_driving, train=False)
  return model, variables, image, kp_base, kp_driving


def test_reconstructor_outputs_have_the_stated_shapes_and_ranges(reconstructor):
  model, variables, image, kp_base, kp_driving = reconstructor
  out = jax.jit(model.apply, static_argnames="train")(variables, image, kp_base, kp_driving, train=False)
  assert out["image"].shape == (2, SIZE, SIZE, 3) and out["mask"].shape == (2, SIZE, SIZE, K + 1)
  assert out["occlusion"].shape == (2, SIZE, SIZE, 1) and out["field"].shape == (2, SIZE, SIZE, 2)
  np.testing.assert_allclose(jnp.sum(out["mask"], -1), 1.0, atol=1e-5)
  for name in ("image", "mask", "occlusion"):
    assert 0.0 <= float(out[name].min()) and float(out[name].max()) <= 1.0, name
  np.testing.assert_allclose(out["field"], reconstruction.region_motion(kp_base, kp_driving, out["mask"]), atol=1e-6)


def test_generator_ignores_the_mask_when_no_keypoint_moves(reconstructor):
  model, variables, image, kp_base, _ = reconstructor
  generator = reconstruction.Generator(model.generator_features, model.generator_max_features,
                                       model.generator_residual_blocks)
  sub = {c: variables[c]["generator"] for c in variables}
  masks = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(4), (2, 2, SIZE, SIZE, K + 1)), -1)
  occlusion = jnp.full((2, SIZE, SIZE, 1), 0.5)
  apply = jax.jit(lambda mask: generator.apply(sub, image, kp_base, kp_base, mask, occlusion, train=False))
  np.testing.assert_allclose(apply(masks[0]), apply(masks[1]), atol=1e-6)


def test_reconstruction_gradient_reaches_every_driving_keypoint(reconstructor):
  model, variables, image, kp_base, kp_driving = reconstructor

  def loss(kp):
    out, _ = model.apply(variables, image, kp_base, kp, train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.abs(out["image"] - image))

  grad = jax.jit(jax.grad(loss))(kp_driving)
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.min(jnp.linalg.norm(grad, axis=-1))) > 0.0


def test_warping_estimator_rejects_a_size_that_does_not_halve_down_to_whole_pixels():
  estimator = reconstruction.WarpingEstimator(features=4, max_features=8, num_blocks=5, scale=0.25)
  with pytest.raises(ValueError, match="multiple of 32"):
    estimator.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, K, 2)), jnp.zeros((1, K, 2)),
                   train=False)
