"""``config.daml``: DAML's fork of UDAPE's mean teacher, with its feature and pose adversaries."""

from dapose_jax.methods.defaults import mean_teacher


def get():
  return mean_teacher.get(feature_weight=0.1, pose_weight=0.3, teacher_style_prob=0.0)
