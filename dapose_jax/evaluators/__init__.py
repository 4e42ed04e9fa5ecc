"""Evaluators by type, and the ones a run's ``config.evals`` names.

An evaluator is made from a predict function ``(state, uint8 images) -> heatmaps``, a split (a random-access
source and how its images are resized), the split's keypoint set and its own settings; ``run(state)`` returns
``{key: value}``. It declares the keys it returns (``keys``), the one that stands for it (``headline``, what
``config.select_on = "NAME"`` selects on) and a one-line ``description``, and keeps what it was made from as
``predict``, ``source``, ``keypoint_set`` and ``resize_pad`` (what ``pictures`` draws with).

``config.evals.NAME = dict(type=TYPE, domain="source"|"target", split="test"|"train", **settings)``.
TYPES: "pck" (``pck.py``, the reference's PCK on heatmaps) and mmpose's metrics on decoded coordinates
(``coordinates.py``): "pck_bbox", "pck_auc", "epe"; "evalpose" (``evalpose.py``, Dua et al.'s joint-angle
similarity); "pose_bins" (``pose_bins.py``, PCK and EvalPose per pose-VAE difficulty bin of the source);
"pseudo_labels" (``pseudo_labels.py``, the accuracy and M2D/M3D selection of a method's pseudo-labels, e.g.
``geometric``'s on the target's training split; made with the method too, which must declare ``pseudo_labels``);
the label-free selection criteria (``criteria.py``, for the target's training split): "confidence", the mean
heatmap maximum, "view_agreement", the agreement of the predictions on mirrored and affine-warped views mapped back,
and "head_agreement", that of a two-network method's networks (the method must declare ``eval_heatmap_pairs``);
"keypoint_confusion" (``confusion.py``, where each keypoint's predictions land: its truth, its flip partner's,
another keypoint's or none).
A ConfigError of an evaluator's settings is raised as ``config.evals.NAME: message``. ``run_all`` runs them, the
ones on one split in one pass over it (``passes.py``).
"""

import jax
import numpy as np

from dapose_jax import errors, parallel
from dapose_jax.config import defaults
from dapose_jax.data import sources
from dapose_jax.evaluators import confusion, coordinates, criteria, evalpose, passes, pck, pose_bins, pseudo_labels
from dapose_jax.plots import drawing

TYPES = {"pck": pck.PCK, "pck_bbox": coordinates.PCKBBox, "pck_auc": coordinates.PCKAUC, "epe": coordinates.EPE,
         "evalpose": evalpose.EvalPose, "pose_bins": pose_bins.PoseBins, "pseudo_labels": pseudo_labels.PseudoLabels,
         "confidence": criteria.Confidence, "view_agreement": criteria.ViewAgreement,
         "head_agreement": criteria.HeadAgreement, "keypoint_confusion": confusion.KeypointConfusion}
# the types made with the method too: {type: (the Method field they call, the methods that have one)}
WITH_METHOD = {"pseudo_labels": ("pseudo_labels", "pseudo-labels (geometric)"),
               "head_agreement": ("eval_heatmap_pairs", "a second network (regda, mean_teacher, daml, geometric)")}


run_all = passes.run_all


def table(values):
  """One evaluator's values as the train log and ``evaluate`` print them: ``KEY VALUE`` to one decimal. Keys with
  a "/" (the cells of a matrix, e.g. ``keypoint_confusion``'s ``l_knee/r_knee``) are left out of the line, which
  says how many; results.json and the JSON keep them."""
  shown = {key: value for key, value in values.items() if "/" not in key}
  line = " ".join(f"{key} {value:.1f}" for key, value in shown.items())
  return line + (f" (+ {len(values) - len(shown)} more values in the JSON)" if len(shown) < len(values) else "")


def heatmap_predictor(config, method, mesh):
  """``method.eval_heatmaps`` as every evaluator calls it, (state, images) -> heatmaps, jitted over ``mesh`` with the
  state replicated and the images sharded."""
  return jax.jit(lambda state, images: method.eval_heatmaps(config, state, images),
                 in_shardings=(parallel.replicated(mesh), parallel.data_sharding(mesh)),
                 out_shardings=parallel.data_sharding(mesh))


def from_config(config, method, mesh):
  """{name: evaluator} for ``config.evals``, each on its split, scoring ``method.eval_heatmaps``; the data
  sets are opened and every setting is checked here, before a run writes anything."""
  if config.evals and method.eval_heatmaps is None:
    raise errors.ConfigError(f"method {method.name!r} has no pose output to evaluate; config.evals must be empty")
  predict = heatmap_predictor(config, method, mesh) if config.evals else None
  evaluators, opened = {}, {}
  for name, spec in config.evals.items():
    spec = spec.to_dict()
    kind, domain, split = spec.pop("type", None), spec.pop("domain", None), spec.pop("split", "test")
    if kind not in TYPES:
      raise errors.ConfigError(f"config.evals.{name}.type={kind!r} is not an evaluator; choose one of {sorted(TYPES)}")
    if domain not in defaults.DOMAINS:
      raise errors.ConfigError(f"config.evals.{name}.domain={domain!r}; expected one of {defaults.DOMAINS}")
    if kind in WITH_METHOD:
      field, which = WITH_METHOD[kind]
      if getattr(method, field) is None:
        raise errors.ConfigError(f"config.evals.{name}.type={kind!r} needs a method with {which}; method "
                                 f"{method.name!r} has none")
      spec["method"] = method
    if (domain, split) not in opened:  # the evaluators of one split share its source, and so one pass (run_all)
      opened[domain, split] = sources.make_source(config[domain], split)
    source = opened[domain, split]
    try:
      evaluators[name] = TYPES[kind](predict, source, source.keypoint_set, config=config, mesh=mesh,
                                     resize_pad=config[domain].resize_pad, **spec)
    except (TypeError, errors.ConfigError) as error:  # an unknown setting, or a bad value of one
      raise errors.ConfigError(f"config.evals.{name}: {error}") from None
  return evaluators


def pictures(evaluator, state, *, config, mesh, count):
  """``drawing.evaluation_pictures`` of the first ``count`` samples of an evaluator's split, predicted with its
  compiled predict function: the samples are padded to a global batch of ``config.eval_batch_size``, so nothing
  is compiled again (``count`` must fit in one process's share of it). Each process draws the same samples."""

  def predict(images):
    local = np.zeros((parallel.local_batch_size(config.eval_batch_size), *images.shape[1:]), images.dtype)
    local[:len(images)] = images
    heatmaps = evaluator.predict(state, parallel.to_global(local, mesh))
    return parallel.to_host(heatmaps)[:len(images)]

  return drawing.evaluation_pictures(predict, evaluator.source, evaluator.keypoint_set, config,
                                     resize_pad=evaluator.resize_pad, count=count)
