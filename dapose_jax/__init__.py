"""dapose_jax: unsupervised domain-adaptive 2D keypoint detection in JAX (README.md). From Python:

  import dapose_jax
  config = dapose_jax.config.load("demo", "smoke", epochs=1)    # a config file or a name of configs/
  results = dapose_jax.train(config, "runs/smoke")             # every stage of config.method
  tables = dapose_jax.evaluate("runs/smoke", metrics=["epe"])  # {evaluator: {key: value}}
  model = dapose_jax.load("runs/smoke")                        # a run folder, its best/ or one step folder
  result = model.predict("photo.jpg")                          # keypoints in the image's pixels (run.predictor)

JAX is imported on the first call, not by ``import dapose_jax``.
"""

# binds dapose_jax.config (nothing heavier than ml_collections), whose name the functions' arguments keep
from dapose_jax import config as _config_files  # noqa: F401


def load(run_or_checkpoint, config=None):
  """A trained run's model (``dapose_jax.run.predictor.PoseModel``) of a run folder (its newest checkpoint), its
  ``best`` folder or one step folder, restored with ``config`` (default: the run's recorded config.json)."""
  from dapose_jax.run import predictor

  return predictor.load(run_or_checkpoint, config)


def train(config, workdir):
  """Trains ``config.method`` in ``workdir`` as ``dapose-jax train`` does (every stage it declares, each resumed
  if interrupted, a finished one reused) and returns the last stage's results (``results.json``)."""
  from dapose_jax.run import loop

  out = loop.run(config, workdir)
  return out[1] if out else None


def evaluate(run_or_checkpoint, *, split="test", domains=("source", "target"), thresholds=(), metrics=(),
             flip=False, config=None):
  """{evaluator: {key: value}} of a trained run as ``dapose-jax evaluate`` computes them: the run's ``config.evals``
  on ``split`` of ``domains``, each thresholded one at every value of ``thresholds``, plus one evaluator of each
  type in ``metrics`` per domain; ``flip``: the flip test."""
  from dapose_jax.commands import evaluate as command

  model = load(run_or_checkpoint, config)
  evals = command.evaluations(model.config.evals.to_dict(), split=split, domains=tuple(domains),
                              thresholds=tuple(thresholds), metrics=tuple(metrics))
  results, _ = command.evaluate(model.restored, model.mesh, evals, flip=flip)
  return results
