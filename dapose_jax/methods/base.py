"""The method interface: what a method declares and the training loop asks for, and the stages of a run."""

import dataclasses
import pathlib
from typing import Callable, Optional

from ml_collections import ConfigDict

from dapose_jax import methods
from dapose_jax.storage import workdirs


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training run of a method's plan: ``config.method`` names the method that trains it."""
  name: str
  config: ConfigDict
  workdir: pathlib.Path

  @property
  def best(self):
    """The folder of this stage's best checkpoint, which a later stage starts from."""
    return self.workdir / workdirs.BEST


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method, declared by its module as ``METHOD`` and chosen by ``config.method``.

  Required (the loop jits each with shardings; a state is a pytree, donated to ``train_step``):
    init(config, rng) -> state
    train_step(config, state, source_batch, target_batch) -> (state, {name: scalar}); "loss" is required
    eval_heatmaps(config, state, uint8 images) -> heatmaps (B, H, W, K), what the evaluators score;
      None for a method without a pose output (it runs no evaluators)
  Optional, with defaults that do nothing:
    reads: the sections of other methods that a run also reads (e.g. the generator's ``reconstruction``)
    uses_style(config): whether a run reads ``config.style`` (the AdaIN network)
    configure(config) -> config: the config a run of this method uses, before anything is written
    prepare(config, workdir) -> [Stage]: the runs that make this one, its own last (default: only its own);
      here a method trains or names its style network and its stage 1, and writes into its own stage's
      config where their products are (e.g. ``config.regda.pretrained`` = stage 1's ``best`` folder)
    backbone_init: whether a fresh state's ``params``/``batch_stats["backbone"]`` start from ``config.model.init``
      (``backbone_init.py``; before ``load_pretrained``): the methods that train a pose network from scratch
    load_pretrained(config, state) -> state: what a fresh state takes from earlier stages or files
    finish(config, state, workdir): after the last step and ``results.json`` (e.g. export a product)
    pseudo_labels(config, state, uint8 images) -> {name: array}: the pseudo-labels a method trains on, for the
      evaluator type "pseudo_labels" (``evaluators/pseudo_labels.py`` defines the arrays); None: it has none
    eval_heatmap_pairs(config, state, uint8 images) -> (heatmaps, second heatmaps), each (B, H, W, K): those that
      ``eval_heatmaps`` returns and those of the method's second network (RegDA's adversarial head, the mean
      teacher's student), for the evaluator type "head_agreement"; None: it has one network
  """
  name: str
  init: Callable
  train_step: Callable
  eval_heatmaps: Optional[Callable]
  reads: tuple = ()
  uses_style: Callable = lambda config: False
  configure: Callable = lambda config: config
  prepare: Optional[Callable] = None
  backbone_init: bool = False
  load_pretrained: Callable = lambda config, state: state
  finish: Callable = lambda config, state, workdir: None
  pseudo_labels: Optional[Callable] = None
  eval_heatmap_pairs: Optional[Callable] = None

  def stages(self, config, workdir):
    """The stages of a run of this method in ``workdir``, in the order they train."""
    config = self.configure(config)
    if self.prepare is None:
      return [Stage(self.name, config, pathlib.Path(workdir))]
    return self.prepare(config, pathlib.Path(workdir))

  def sections(self, config):
    """The method-owned config sections that a run of this method reads."""
    own = methods.section(self.name)
    style = ("style",) if own != "style" and self.uses_style(config) else ()
    return (own, *self.reads, *style)


def updated(config, **fields):
  """A copy of ``config`` with ``fields`` set; a dict value sets fields of that section (recursively)."""
  config = config.copy_and_resolve_references()
  _set(config, fields)
  return config


def _set(section, fields):
  for key, value in fields.items():
    if isinstance(value, dict):
      _set(section[key], value)
    else:
      section[key] = value


def pretrain_config(config, *, epochs, select_on, recipe):
  """Stage 1 of a two-stage method: source-only training with ``recipe`` (fields of ``config.source_only``)
  for ``epochs``, its best checkpoint chosen on the evaluator value ``select_on``."""
  return updated(config, method="source_only", epochs=epochs, select_on=select_on,
                 source_only=recipe.to_dict())


def with_pretrain_stage(config, workdir, stage1, section):
  """``stage1`` as the stage 'pretrain' (in ``workdir/pretrain``), then the method's own stage, whose
  ``config[section].pretrained`` is stage 1's best checkpoint; only the method's own when ``stage1`` is None."""
  if stage1 is None:
    return [Stage(config.method, config, workdir)]
  pretrain = Stage("pretrain", stage1, workdir / "pretrain")
  return [pretrain, Stage(config.method, updated(config, **{section: {"pretrained": str(pretrain.best)}}), workdir)]
