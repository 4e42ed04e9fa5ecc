"""Evaluators by type, and the ones a run's ``config.evals`` names.

An evaluator is made from a predict function ``(state, uint8 images) -> heatmaps``, a split (a random-access
source and how its images are resized), the split's keypoint set and its own settings; ``run(state)`` returns
``{key: value}``. It declares the keys it returns (``keys``), the one that stands for it (``headline``, what
``config.select_on = "NAME"`` selects on) and a one-line ``description``.

``config.evals.NAME = dict(type=TYPE, domain="source"|"target", split="test"|"train", **settings)``.
"""

import jax

from dapose_jax import errors, parallel
from dapose_jax.data import sources
from dapose_jax.evaluators import pck

TYPES = {"pck": pck.PCK}
DOMAINS = ("source", "target")


def from_config(config, method, mesh):
  """{name: evaluator} for ``config.evals``, each on its split, scoring ``method.eval_heatmaps``; the data
  sets are opened and every setting is checked here, before a run writes anything."""
  if config.evals and method.eval_heatmaps is None:
    raise errors.ConfigError(f"method {method.name!r} has no pose output to evaluate; config.evals must be empty")
  predict = None
  if config.evals:
    predict = jax.jit(lambda state, images: method.eval_heatmaps(config, state, images),
                      in_shardings=(parallel.replicated(mesh), parallel.data_sharding(mesh)),
                      out_shardings=parallel.data_sharding(mesh))
  evaluators = {}
  for name, spec in config.evals.items():
    spec = spec.to_dict()
    kind, domain, split = spec.pop("type", None), spec.pop("domain", None), spec.pop("split", "test")
    if kind not in TYPES:
      raise errors.ConfigError(f"config.evals.{name}.type={kind!r} is not an evaluator; choose one of {sorted(TYPES)}")
    if domain not in DOMAINS:
      raise errors.ConfigError(f"config.evals.{name}.domain={domain!r}; expected one of {DOMAINS}")
    source = sources.make_source(config[domain], split)
    try:
      evaluators[name] = TYPES[kind](predict, source, source.keypoint_set, config=config, mesh=mesh,
                                     resize_pad=config[domain].resize_pad, **spec)
    except TypeError as error:  # an unknown setting
      raise errors.ConfigError(f"config.evals.{name}: {error}") from None
  return evaluators
