import numpy as np
import pytest
from PIL import Image, ImageFilter

from dapose_jax.augment import transforms


def _blob_image(height, width, rows_cols):
  """Black image with a bright 3x3 blob centred on each (row, col); keypoints at those pixels'
  centres in the continuous convention (x = col + 0.5, y = row + 0.5)."""
  image = np.zeros((height, width, 3), np.uint8)
  for r, c in rows_cols:
    image[r - 1:r + 2, c - 1:c + 2] = 255
  keypoints = np.array([(c + 0.5, r + 0.5) for r, c in rows_cols], np.float32)
  return image, keypoints


def _centroid(image, near, radius=6):
  """Intensity-weighted centroid (continuous coordinates) of the bright pixels around ``near``."""
  grey = image.astype(np.float64).mean(-1)
  ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
  window = (np.abs(xs + 0.5 - near[0]) <= radius) & (np.abs(ys + 0.5 - near[1]) <= radius)
  weights = grey * window
  assert weights.sum() > 0, "the blob vanished"
  return np.array([(weights * (xs + 0.5)).sum(), (weights * (ys + 0.5)).sum()]) / weights.sum()


def _assert_blobs_follow(image, keypoints, tolerance):
  for k in keypoints:
    np.testing.assert_allclose(_centroid(image, k), k, atol=tolerance)


BLOBS = [(10, 12), (30, 50), (52, 20), (24, 33)]


@pytest.mark.parametrize("angle", [-170, -90, -33.3, 0, 17, 45, 90, 125])
def test_rotate_moves_pixels_with_keypoints(angle):
  image, keypoints = _blob_image(64, 72, BLOBS)
  rotated, moved = transforms.rotate(image, keypoints, angle)
  assert rotated.shape == image.shape
  visible = np.all((moved > 2) & (moved < [70, 62]), axis=1)
  # Nearest-neighbour sampling moves a 3x3 blob's centre by at most half a pixel diagonal.
  _assert_blobs_follow(rotated, moved[visible], tolerance=0.75)


def test_rotate_is_counter_clockwise_on_screen():
  image, keypoints = _blob_image(64, 64, [(32, 50)])  # right of the centre
  _, moved = transforms.rotate(image, keypoints, 90)
  np.testing.assert_allclose(moved[0], (32.5, 13.5), atol=1e-4)  # now above the centre


def test_rotate_matches_pil():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  rotated, _ = transforms.rotate(image, np.zeros((1, 2), np.float32), 30)
  expected = Image.fromarray(image).rotate(30, resample=Image.Resampling.NEAREST)
  np.testing.assert_array_equal(rotated, np.asarray(expected))


def test_random_rotation_is_reproducible_and_bounded():
  image, keypoints = _blob_image(64, 64, BLOBS)
  a = transforms.random_rotation(image, keypoints, np.random.default_rng(5), 30)
  b = transforms.random_rotation(image, keypoints, np.random.default_rng(5), 30)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  centre = np.array([32, 32])
  for seed in range(20):
    _, moved = transforms.random_rotation(image, keypoints, np.random.default_rng(seed), 30)
    before = np.arctan2(*(keypoints - centre).T[::-1])
    after = np.arctan2(*(moved - centre).T[::-1])
    turn = np.degrees(np.angle(np.exp(1j * (before - after))))
    assert np.all(np.abs(turn) <= 30 + 1e-3)
    np.testing.assert_allclose(turn, turn[0], atol=1e-3)


@pytest.mark.parametrize("top,left,side,size", [(5, 7, 48, 96), (0, 0, 64, 64), (12, 3, 40, 32)])
def test_resized_crop_moves_pixels_with_keypoints(top, left, side, size):
  image, keypoints = _blob_image(64, 72, BLOBS)
  cropped, moved = transforms.resized_crop(image, keypoints, top, left, side, size)
  assert cropped.shape == (size, size, 3)
  np.testing.assert_allclose(moved, (keypoints - [left, top]) * size / side, rtol=1e-6)
  inside = np.all((moved > 4) & (moved < size - 4), axis=1)
  _assert_blobs_follow(cropped, moved[inside], tolerance=0.35)


def test_random_resized_crop_follows_the_reference_sampler():
  image, keypoints = _blob_image(64, 64, BLOBS)
  sides = []
  for seed in range(50):
    cropped, moved = transforms.random_resized_crop(image, keypoints, np.random.default_rng(seed),
                                                    128, scale=(0.6, 1.3))
    assert cropped.shape == (128, 128, 3)
    sides.append(128 / ((moved[1, 0] - moved[0, 0]) / (keypoints[1, 0] - keypoints[0, 0])))
  sides = np.round(sides, 3)
  # Fractions above 1 are redrawn, so sides spread over [sqrt(0.6), 1] of the image side.
  assert sides.min() >= round(np.sqrt(0.6 * 64 * 64)) - 1e-3 and sides.max() <= 64 + 1e-3
  assert np.all(sides == np.round(sides)) and len(np.unique(sides)) > 8


def test_random_resized_crop_falls_back_to_the_whole_image():
  image, keypoints = _blob_image(64, 64, BLOBS)
  cropped, moved = transforms.random_resized_crop(image, keypoints, np.random.default_rng(0), 32,
                                                  scale=(1.1, 1.3))
  expected, expected_kp = transforms.resize(image, keypoints, 32)
  np.testing.assert_array_equal(cropped, expected)
  np.testing.assert_allclose(moved, expected_kp)


def test_random_resized_crop_on_non_square_image_falls_back_to_centre_square():
  image, keypoints = _blob_image(40, 60, [(20, 30)])
  _, moved = transforms.random_resized_crop(image, keypoints, np.random.default_rng(0), 40,
                                            scale=(2.0, 2.0))
  np.testing.assert_allclose(moved, [(20.5, 20.5)])  # columns 10..49 kept


def test_color_jitter_with_zero_strength_is_identity():
  image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  out = transforms.color_jitter(image, np.random.default_rng(1), 0, 0, 0)
  np.testing.assert_array_equal(out, image)


def test_color_jitter_follows_torchvision_semantics():
  grey = np.full((8, 8, 3), 100, np.uint8)
  # Saturation and contrast leave a uniform grey image alone; brightness scales it.
  out = transforms.color_jitter(grey, np.random.default_rng(0), 0, 0.5, 0.5)
  np.testing.assert_array_equal(out, grey)
  bright = transforms.color_jitter(grey, np.random.default_rng(0), 0.25, 0, 0)
  assert np.all(bright == bright[0, 0, 0]) and 75 <= bright[0, 0, 0] <= 125
  assert not np.array_equal(bright, grey)


def test_color_jitter_is_reproducible_and_keeps_dtype():
  image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  a = transforms.color_jitter(image, np.random.default_rng(3))
  b = transforms.color_jitter(image, np.random.default_rng(3))
  assert a.dtype == np.uint8 and a.shape == image.shape
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_gaussian_blur_matches_pil(seed):
  rng = np.random.default_rng(100)
  blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
  image = np.repeat(np.repeat(blocks, 8, 0), 8, 1)  # sharp edges
  image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
  radius = np.random.default_rng(seed).uniform(0, 0.8)
  expected = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), np.int32)
  out = transforms.gaussian_blur(image, np.random.default_rng(seed), 0.8).astype(np.int32)
  assert np.abs(out - expected).mean() < 1.0
  assert np.abs(out - expected).max() <= 3


def test_pil_blur_kernel():
  for radius in (0.0, 0.3, 0.8, 2.5):
    kernel = transforms.pil_blur_kernel(radius)
    np.testing.assert_allclose(kernel.sum(), 1, rtol=1e-6)
    centre = np.arange(len(kernel)) - len(kernel) // 2
    np.testing.assert_allclose((kernel * centre**2).sum(), radius**2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("height,width", [(100, 49), (49, 100), (80, 80)])
def test_resize_pad_centres_with_floor_left_padding(height, width):
  image = np.full((height, width, 3), 200, np.uint8)
  padded, _ = transforms.resize_pad(image, np.zeros((1, 2), np.float32), 64)
  assert padded.shape == (64, 64, 3)
  columns = np.flatnonzero(padded[32, :, 0])
  rows = np.flatnonzero(padded[:, 32, 0])
  if height > width:  # new width int(64 * 49 / 100) = 31: 16 columns left, 17 right
    assert (columns[0], columns[-1]) == (16, 46) and len(rows) == 64
  elif width > height:
    assert (rows[0], rows[-1]) == (16, 46) and len(columns) == 64
  else:
    assert len(rows) == len(columns) == 64


@pytest.mark.parametrize("height,width", [(100, 49), (60, 90)])
def test_resize_pad_moves_pixels_with_keypoints(height, width):
  image, keypoints = _blob_image(height, width, [(20, 20), (40, 30), (height - 10, width - 8)])
  padded, moved = transforms.resize_pad(image, keypoints, 128)
  _assert_blobs_follow(padded, moved, tolerance=0.35)


def test_resize_requires_square_and_moves_keypoints():
  image, keypoints = _blob_image(64, 64, BLOBS[:2])
  resized, moved = transforms.resize(image, keypoints, 96)
  np.testing.assert_allclose(moved, keypoints * 1.5)
  _assert_blobs_follow(resized, moved, tolerance=0.35)
  with pytest.raises(ValueError):
    transforms.resize(np.zeros((10, 12, 3), np.uint8), keypoints, 8)


def test_test_transform_dispatches_on_pad():
  image, keypoints = _blob_image(64, 64, BLOBS[:1])
  for pad, fn in ((True, transforms.resize_pad), (False, transforms.resize)):
    out, moved = transforms.test_transform(image, keypoints, 32, pad)
    expected, expected_kp = fn(image, keypoints, 32)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(moved, expected_kp)


def test_normalize_round_trip():
  image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  normalized = transforms.normalize(image)
  assert normalized.dtype == np.float32
  np.testing.assert_array_equal(transforms.denormalize(normalized), image)
  mean_colour = np.round(transforms.IMAGENET_MEAN * 255).astype(np.uint8)[None, None]
  np.testing.assert_allclose(transforms.normalize(mean_colour), 0, atol=0.01)


def test_train_augment_keeps_pixels_and_keypoints_together():
  image, keypoints = _blob_image(96, 96, [(30, 30), (48, 60), (70, 40)])
  for seed in range(5):
    out, moved = transforms.train_augment(image, keypoints, np.random.default_rng(seed), 128,
                                          rotation_degrees=30, color=0, blur=0)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    inside = np.all((moved > 8) & (moved < 120), axis=1)
    _assert_blobs_follow(out, moved[inside], tolerance=1.0)


def test_transforms_are_reproducible_and_leave_inputs_alone():
  image, keypoints = _blob_image(64, 64, BLOBS)
  image_copy, keypoints_copy = image.copy(), keypoints.copy()
  a = transforms.train_augment(image, keypoints, np.random.default_rng(9), 48, 180)
  b = transforms.train_augment(image, keypoints, np.random.default_rng(9), 48, 180)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  transforms.test_transform(image, keypoints, 32, pad=True)
  transforms.normalize(image)
  np.testing.assert_array_equal(image, image_copy)
  np.testing.assert_array_equal(keypoints, keypoints_copy)


def test_an_augmented_resize_pad_domain_is_padded_to_a_square_before_its_random_crop():
  from ml_collections import ConfigDict

  from dapose_jax.data import pipeline

  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (30, 60, 3), np.uint8)  # landscape, as many LSP images
  sample = {"image": image, "keypoints": np.array([[10.0, 5.0], [50.0, 20.0]]), "visible": np.ones(2)}
  # crop area 1 and no other draw: the crop is the whole padded square (without the pad, the centre of the image)
  augment = ConfigDict(dict(enabled=True, on_device=False, resize_pad=True, rotation=0.0, scale_min=1.0,
                            scale_max=1.0, color=0.0, blur=0.0))
  out = pipeline._train_sample(sample, np.random.default_rng(1), image_size=32, augment=augment)
  padded, keypoints = transforms.resize_pad(image, sample["keypoints"], 32)
  np.testing.assert_array_equal(out["image"], padded)
  np.testing.assert_allclose(out["keypoints"], keypoints, rtol=1e-6)
