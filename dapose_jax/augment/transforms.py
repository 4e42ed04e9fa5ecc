"""Keypoint-consistent image augmentation, following the reference (tllib) RegDA pipeline.

Images are uint8 (H, W, 3) RGB arrays, keypoints float (K, 2) as (x, y). Every function returns
new arrays and leaves its inputs alone; randomness comes only from the ``np.random.Generator``
passed in.

Coordinates: as in tllib (and PIL), keypoints are continuous pixel coordinates in which the image
spans [0, w] x [0, h] and pixel (row i, column j) covers [j, j + 1) x [i, i + 1). Resizing by a
factor f therefore scales keypoints by exactly f, and the rotation centre is (w / 2, h / 2).

The image operations are PIL's, as torchvision applies them to PIL images in the reference:
nearest-neighbour rotation, bilinear resizing and ``ImageEnhance`` colour jitter; the Gaussian blur
applies PIL's kernel with OpenCV.
"""

import math

import cv2
import numpy as np
from PIL import Image, ImageEnhance

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# The order torchvision's ColorJitter draws from; hue is 0 in the reference and left out.
_ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)


def _resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def rotate(image: np.ndarray, keypoints: np.ndarray, angle: float):
  """Rotates counter-clockwise by ``angle`` degrees about the centre; same size, black corners."""
  rotated = Image.fromarray(image).rotate(angle, resample=Image.Resampling.NEAREST)
  h, w = image.shape[:2]
  centre = np.array([w / 2, h / 2])
  c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
  # Counter-clockwise on screen is clockwise in image coordinates, whose y axis points down.
  rotation = np.array([[c, s], [-s, c]])
  moved = (np.asarray(keypoints, np.float64) - centre) @ rotation.T + centre
  return np.asarray(rotated), moved.astype(np.float32)


def random_rotation(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator,
                    degrees: float):
  """``rotate`` by an angle ~ U(-degrees, degrees)."""
  return rotate(image, keypoints, rng.uniform(-degrees, degrees))


def resized_crop(image: np.ndarray, keypoints: np.ndarray, top: int, left: int, side: int,
                 size: int):
  """Crops the square ``side`` x ``side`` at (top, left) and resizes it to ``size`` x ``size``."""
  crop = image[top:top + side, left:left + side]
  moved = (np.asarray(keypoints, np.float64) - [left, top]) * (size / side)
  return _resize_bilinear(crop, size, size), moved.astype(np.float32)


def _random_square_box(height: int, width: int, rng: np.random.Generator, scale):
  """tllib ``RandomResizedCrop.get_params`` with aspect ratio 1: (top, left, side)."""
  area = height * width
  for _ in range(10):
    side = int(round(math.sqrt(rng.uniform(*scale) * area)))
    if 0 < side <= min(height, width):
      return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side
  # The reference falls back to the whole (square) image; for other shapes take the centre square.
  side = min(height, width)
  return int(round((height - side) / 2)), int(round((width - side) / 2)), side


def random_resized_crop(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator,
                        size: int, scale=(0.6, 1.3)):
  """Random square crop of area fraction ~ U(scale), resized to ``size``.

  As in the reference, a fraction above 1 is redrawn, up to 10 draws in all, before falling back
  to the whole image: with the default scale the crop is effectively 0.6 to 1 of the area.
  """
  top, left, side = _random_square_box(*image.shape[:2], rng, scale)
  return resized_crop(image, keypoints, top, left, side, size)


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness=0.25, contrast=0.25,
                 saturation=0.25) -> np.ndarray:
  """torchvision ColorJitter on a PIL image: factors ~ U(1 - b, 1 + b), applied in random order.

  Brightness scales, contrast blends with the rounded mean grey level, saturation blends with the
  greyscale image (PIL ``ImageEnhance``, which truncates to uint8).
  """
  strengths = (brightness, contrast, saturation)
  factors = [rng.uniform(max(0.0, 1 - b), 1 + b) for b in strengths]
  pil = Image.fromarray(image)
  for i in rng.permutation(len(_ENHANCERS)):
    if strengths[i] > 0:
      pil = _ENHANCERS[i](pil).enhance(factors[i])
  return np.array(pil)


def pil_blur_kernel(radius: float, passes: int = 3) -> np.ndarray:
  """The 1-D kernel of PIL's GaussianBlur: ``passes`` box blurs of fractional radius whose
  variances add up to radius**2 (Gwosdek et al. 2011, as in PIL's BoxBlur.c)."""
  sigma2 = radius * radius / passes
  whole = math.floor((math.sqrt(12.0 * sigma2 + 1.0) - 1.0) / 2.0)
  frac = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) ** 2))
  box = np.r_[frac, np.ones(2 * whole + 1), frac] / (2 * whole + 1 + 2 * frac)
  kernel = box
  for _ in range(passes - 1):
    kernel = np.convolve(kernel, box)
  return kernel.astype(np.float32)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, max_radius=0.8) -> np.ndarray:
  """PIL GaussianBlur with radius (its standard deviation) ~ U(0, max_radius).

  PIL's kernel applied in one float pass with cv2, ten times faster than PIL; PIL rounds to uint8
  after each of its six box passes, so the two differ by < 1 grey level on average (max 3).
  """
  kernel = pil_blur_kernel(rng.uniform(0, max_radius))
  # The kernel sums to 1, so the result lies in [0.5, 255.5) and truncation rounds it.
  blurred = cv2.sepFilter2D(image, cv2.CV_32F, kernel, kernel, delta=0.5,
                            borderType=cv2.BORDER_REPLICATE)
  return blurred.astype(np.uint8)


def resize(image: np.ndarray, keypoints: np.ndarray, size: int):
  """Resizes a square image to ``size`` x ``size`` (the reference test transform)."""
  h, w = image.shape[:2]
  if h != w:
    raise ValueError(f"resize expects a square image, got {w}x{h}")
  moved = np.asarray(keypoints, np.float64) * (size / w)
  return _resize_bilinear(image, size, size), moved.astype(np.float32)


def resize_pad(image: np.ndarray, keypoints: np.ndarray, size: int):
  """Longer side to ``size``, the other zero-padded to ``size`` on both sides (tllib ResizePad).

  As in tllib the short side becomes int(size * short / long) and the left/top pad gets the floor
  of half the padding. The keypoints follow the image exactly: tllib shifts them by the unrounded
  half padding and scales both axes by size / long, which is up to half a pixel off.
  """
  h, w = image.shape[:2]
  if w < h:
    new_w, new_h = int(size * w / h), size
  else:
    new_w, new_h = size, int(size * h / w)
  pad_left, pad_top = (size - new_w) // 2, (size - new_h) // 2
  resized = _resize_bilinear(image, new_w, new_h)
  padded = np.zeros((size, size, 3), np.uint8)
  padded[pad_top:pad_top + new_h, pad_left:pad_left + new_w] = resized
  moved = np.asarray(keypoints, np.float64) * [new_w / w, new_h / h] + [pad_left, pad_top]
  return padded, moved.astype(np.float32)


def normalize(image: np.ndarray) -> np.ndarray:
  """uint8 RGB -> float32 standardised with the ImageNet mean and std (on [0, 1] values)."""
  return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def denormalize(image: np.ndarray) -> np.ndarray:
  """Inverse of ``normalize``: float32 -> uint8 RGB (rounded, clipped)."""
  unit = np.asarray(image, np.float32) * IMAGENET_STD + IMAGENET_MEAN
  return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def train_augment(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator, size: int,
                  rotation_degrees: float, scale=(0.6, 1.3), color=0.25, blur=0.8):
  """The reference training transform up to ToTensor: rotation -> random resized crop -> colour
  jitter -> Gaussian blur. Returns (uint8 image size x size, keypoints); ``normalize`` is separate.
  """
  image, keypoints = random_rotation(image, keypoints, rng, rotation_degrees)
  image, keypoints = random_resized_crop(image, keypoints, rng, size, scale)
  image = color_jitter(image, rng, color, color, color)
  image = gaussian_blur(image, rng, blur)
  return image, keypoints


def test_transform(image: np.ndarray, keypoints: np.ndarray, size: int, pad: bool):
  """The reference evaluation transform: ``resize_pad`` (LSP) if ``pad`` else ``resize``."""
  return resize_pad(image, keypoints, size) if pad else resize(image, keypoints, size)


test_transform.__test__ = False  # not a pytest test, despite its name
