"""Writes a PNG grid of rendered samples of both synthetic domains with their keypoints drawn.

  python experiments/render_synthetic_samples.py --out synthetic_samples.png --size 128 --n 8

Rows alternate source / target; each sample appears plain and with its skeleton (right limbs red,
left limbs blue, invisible joints omitted).
"""

import argparse

import cv2
import numpy as np

from dapose_jax.data.synthetic import SyntheticPose

_RIGHT, _LEFT, _CENTRE = (230, 40, 40), (40, 90, 230), (40, 200, 40)


def _edge_colour(keypoint_set, a, b):
  names = keypoint_set.names[a] + keypoint_set.names[b]
  return _RIGHT if "r_" in names else _LEFT if "l_" in names else _CENTRE


def draw_skeleton(sample, keypoint_set, scale):
  """The sample's image enlarged ``scale`` times with its keypoints and edges drawn."""
  size = sample["image"].shape[0] * scale
  image = cv2.resize(sample["image"], (size, size), interpolation=cv2.INTER_NEAREST)
  points = [tuple(int(round(v * scale)) for v in p) for p in sample["keypoints"]]
  visible = sample["visible"] > 0
  for a, b in keypoint_set.edges:
    if visible[a] and visible[b]:
      cv2.line(image, points[a], points[b], _edge_colour(keypoint_set, a, b), 1, cv2.LINE_AA)
  for p, v in zip(points, visible):
    if v:
      cv2.circle(image, p, 2, (255, 255, 0), -1, cv2.LINE_AA)
  return image


def sample_grid(size, n, scale, seed):
  rows = []
  for style in ("source", "target"):
    data = SyntheticPose(style, "train", n, image_size=size, seed=seed)
    plain = [cv2.resize(data[i]["image"], (size * scale,) * 2, interpolation=cv2.INTER_NEAREST)
             for i in range(n)]
    rows.append(np.concatenate(plain, axis=1))
    rows.append(np.concatenate([draw_skeleton(data[i], data.keypoint_set, scale)
                                for i in range(n)], axis=1))
  return np.concatenate(rows, axis=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="synthetic_samples.png")
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--n", type=int, default=8)
  parser.add_argument("--scale", type=int, default=2, help="enlargement for viewing")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  grid = sample_grid(args.size, args.n, args.scale, args.seed)
  cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
  print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
  main()
