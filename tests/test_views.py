import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.augment import views
from dapose_jax.pose import decoding, keypoints


def matrices(angle, shear, translate, scale, size):
  b = len(angle)
  return views.affine_matrices(jnp.array(angle, jnp.float32), jnp.array(shear, jnp.float32), jnp.zeros(b),
                               jnp.array(translate, jnp.float32), jnp.array(scale, jnp.float32), size)


def test_affine_matrix_hand_values_rotation_shear_translation_scale():
  size = 64  # centre (32, 32)
  m = matrices([0.0, 90.0, 0.0], [0.0, 0.0, 45.0], [[0, 0], [0, 0], [3, -2]], [1.0, 1.0, 2.0], size)
  np.testing.assert_allclose(m[0], np.eye(3), atol=1e-6)
  # 90 degrees: (1, 0) from the centre goes to (0, 1); sin/cos of the torchvision matrix
  np.testing.assert_allclose(views.transform_points(m[1:2], jnp.array([[[33.0, 32.0]]]))[0, 0], [32.0, 33.0],
                             atol=1e-5)
  # shear_x 45 deg, scale 2: M = [[1, -1], [0, 1]] * 2; p - C = (1, 1) -> (0, 2), then + C + t
  np.testing.assert_allclose(views.transform_points(m[2:3], jnp.array([[[33.0, 33.0]]]))[0, 0], [35.0, 32.0],
                             atol=1e-5)


def test_rescale_gives_the_same_map_in_heatmap_coordinates():
  m = views.sample_matrices(jax.random.key(0), 4, 128, views.ViewParams())
  points = jax.random.uniform(jax.random.key(1), (4, 5, 2), minval=0, maxval=128)
  np.testing.assert_allclose(views.transform_points(views.rescale(m, 0.25), points / 4),
                             views.transform_points(m, points) / 4, rtol=1e-5, atol=1e-4)


def test_the_closed_form_inverse_undoes_each_sampled_view():
  m = views.sample_matrices(jax.random.key(5), 64, 256, views.ViewParams())
  inverse = views._closed_form_inverse(m)
  np.testing.assert_allclose(jnp.einsum("bij,bjk->bik", inverse, m), np.broadcast_to(np.eye(3), (64, 3, 3)),
                             atol=2e-6)
  np.testing.assert_allclose(inverse, np.linalg.inv(np.asarray(m, np.float64)), rtol=1e-5, atol=1e-4)


def test_sampled_views_stay_in_the_configured_ranges():
  params = views.ViewParams(rotation=0.0, shear=0.0, translate=0.1, scale_min=0.8, scale_max=0.9)
  m = views.sample_matrices(jax.random.key(3), 256, 100, params)
  scale = jnp.sqrt(jnp.abs(jnp.linalg.det(m[:, :2, :2])))
  assert 0.8 <= float(scale.min()) and float(scale.max()) <= 0.9
  # zero rotation/shear: translation = offset - (1 - s) * C, whole pixels within +-10
  shift = m[:, :2, 2] - (1 - scale[:, None]) * 50.0
  np.testing.assert_allclose(shift, jnp.round(shift), atol=1e-4)
  assert float(jnp.abs(shift).max()) <= 10.0 + 1e-4


def test_a_bright_pixel_lands_where_its_keypoint_lands():
  size = 64
  rng = np.random.default_rng(0)
  points = rng.uniform(20, 44, (6, 2)).round()
  images = np.zeros((6, size, size, 1), np.float32)
  for i, (x, y) in enumerate(points.astype(int)):
    images[i, y - 1:y + 2, x - 1:x + 2] = 1.0  # 3x3 blob: nearest sampling keeps it at scales >= 1/3
  params = views.ViewParams(rotation=60.0, shear=30.0, translate=0.05, scale_min=0.9, scale_max=1.3)
  m = views.sample_matrices(jax.random.key(7), 6, size, params)
  warped = views.to_view(jnp.asarray(images), m)
  expected = views.transform_points(m, jnp.asarray(points, jnp.float32)[:, None])[:, 0]
  weight = np.asarray(warped[..., 0])
  ys, xs = np.mgrid[:size, :size]
  centroid = np.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], -1) / weight.sum((1, 2))[:, None]
  np.testing.assert_allclose(centroid, expected, atol=1.0)


def test_heatmap_warped_back_peaks_at_the_base_keypoint():
  """A view's heatmap rendered at the transformed keypoint, warped back, peaks at the base keypoint."""
  size, hm, stride = 128, 32, 4
  base_points = jnp.array([[[60.0, 52.0]], [[48.0, 80.0]], [[70.0, 70.0]]])
  m = views.sample_matrices(jax.random.key(11), 3, size, views.ViewParams(scale_min=1.0, scale_max=1.3))
  view_points = views.transform_points(m, base_points)
  render = lambda p: keypoints.gaussian_targets(p, jnp.ones(1), size, hm, sigma=2.0)[0]
  view_maps = jax.vmap(render)(view_points)
  back = views.to_base(view_maps, views.rescale(m, 1 / stride), order=1)
  xy, _ = decoding.argmax_2d(back)
  np.testing.assert_allclose(xy[:, 0], jnp.round(base_points[:, 0] / stride), atol=1.0)


def test_to_base_inverts_to_view_inside_the_view():
  size = 32
  images = jax.random.uniform(jax.random.key(0), (2, size, size, 3))
  m = matrices([30.0, -45.0], [10.0, 0.0], [[2, 1], [0, -3]], [1.0, 1.0], size)
  back = views.to_base(views.to_view(images, m, order=1), m, order=1)
  # compare away from the borders, where bilinear round trips are exact up to interpolation blur
  inside = views.to_base(views.to_view(jnp.ones_like(images), m, order=0), m, order=0) > 0.5
  err = jnp.abs(back - images)[:, 8:-8, 8:-8][inside[:, 8:-8, 8:-8]]
  assert float(jnp.median(err)) < 0.2


def test_to_base_is_differentiable_and_routes_gradient_to_sampled_pixels():
  size = 16
  m = matrices([0.0], [0.0], [[2, 0]], [1.0], size)  # shift right by 2 px
  maps = jnp.zeros((1, size, size, 1))
  grad = jax.grad(lambda x: views.to_base(x, m)[0, 5, 5, 0])(maps)
  # base pixel (x=5, y=5) reads the view at A (5, 5) = (7, 5)
  assert float(grad[0, 5, 7, 0]) == 1.0 and float(grad.sum()) == 1.0


def test_occlusion_copies_a_same_size_patch_from_the_same_image():
  size, half = 24, 3
  image = jnp.arange(size * size * 3, dtype=jnp.float32).reshape(1, size, size, 3)
  images = jnp.concatenate([image, image])
  out = views.occlude(jax.random.key(5), images, jnp.array([[10.0, 12.0], [10.0, 12.0]]),
                      jnp.array([True, False]), half)
  changed = np.asarray(jnp.any(out[0] != image[0], -1))
  ys, xs = np.nonzero(changed)
  assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10 - half, 10 + half - 1, 12 - half, 12 + half - 1)
  patch = np.asarray(out[0, 12 - half:12 + half, 10 - half:10 + half])
  # the patch is a contiguous block of the original: consecutive pixels differ by one pixel's offset
  np.testing.assert_array_equal(np.diff(patch[..., 0], axis=1), 3.0)
  np.testing.assert_array_equal(np.diff(patch[..., 0], axis=0), 3.0 * size)
  np.testing.assert_array_equal(out[1], image[0])  # not applied


def test_occlusion_box_is_clipped_at_the_border():
  size, half = 20, 4
  image = jnp.arange(size * size, dtype=jnp.float32).reshape(1, size, size, 1)
  out = views.occlude(jax.random.key(1), image, jnp.array([[1.0, 18.0]]), jnp.array([True]), half)
  changed = np.asarray(out[0, ..., 0] != image[0, ..., 0])
  ys, xs = np.nonzero(changed)
  assert xs.min() >= 0 and xs.max() == 1 + half - 1 and ys.max() == size - 1 and ys.min() >= 18 - half


@pytest.mark.parametrize("strength", [0.0, 0.25])
def test_color_jitter_identity_at_zero_and_bounded(strength):
  images = jax.random.uniform(jax.random.key(2), (3, 8, 8, 3), maxval=255.0)
  out = views.color_jitter(jax.random.key(4), images, strength)
  if strength == 0:
    np.testing.assert_allclose(out, images, rtol=1e-5, atol=1e-3)
  else:
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    assert float(jnp.abs(out - images).max()) > 1.0
