"""Pure functions on keypoints and heatmaps: targets, decoding, losses, metrics, keypoint sets."""
