"""Device-side input preparation shared by the methods and the evaluators: ImageNet normalisation of uint8
images and the reference's heatmap targets of a batch."""

import jax

from dapose_jax import keypoints
from dapose_jax.data import transforms


def normalize(images):
  """uint8 RGB -> ImageNet-normalised float32, on the device."""
  return (images.astype(jax.numpy.float32) / 255.0 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD


def heatmap_targets(config, batch):
  """Reference Gaussian targets (B, H, W, K) and weights (B, K) of a batch, rendered on the device."""
  render = lambda kp, vis: keypoints.gaussian_targets(
      kp, vis, image_size=config.image_size, heatmap_size=config.heatmap_size, sigma=config.sigma)
  return jax.vmap(render)(batch["keypoints"], batch["visible"])
