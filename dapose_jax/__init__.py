"""dapose_jax: unsupervised domain-adaptive 2D keypoint detection in JAX (README.md). From Python:

  import dapose_jax
  model = dapose_jax.load("runs/demo")        # a run folder, its best/ folder or one step folder
  result = model.predict("photo.jpg")         # keypoints in the image's pixels, confidences (run.predictor)
"""


def load(run_or_checkpoint, config=None):
  """A trained run's model (``dapose_jax.run.predictor.PoseModel``) of a run folder (its newest checkpoint), its
  ``best`` folder or one step folder, restored with ``config`` (default: the run's recorded config.json)."""
  from dapose_jax.run import predictor  # JAX is imported on first use, not by ``import dapose_jax``

  return predictor.load(run_or_checkpoint, config)
