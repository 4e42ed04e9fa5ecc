"""Augmentation: host transforms, device-side augmentation, affine views."""
