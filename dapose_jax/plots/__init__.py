"""Pictures: keypoints and heatmaps drawn on images."""
