"""A trained run's model, for the commands that use one (``evaluate``, ``predict``): the checkpoint a path names,
its state restored for the config, and the flip test.

``--checkpoint`` (``commands.cli.define_model_flags``) names a run folder (its newest checkpoint, in
RUN/checkpoints), its ``best`` folder (the best state) or one step folder (RUN/checkpoints/STEP or RUN/best/STEP). ``--config`` is a config file with its variant
and overrides, as the train command takes it (the same that trained the run), or a run's recorded ``config.json``
(or the folder that holds it); either takes ``--config.KEY=VALUE`` overrides. Of a config file, the config of
the run's own stage is used (``method.stages``: e.g. RegDA's stage 2, whose stage 1 is RUN/pretrain); a stage-1
checkpoint needs its own recorded config (``--config=RUN/pretrain/config.json``). The state is restored into the
shapes ``method.init`` gives for the config, replicated over the mesh.
"""

import dataclasses
import functools
import logging
import pathlib
from typing import Any

import jax
from ml_collections import ConfigDict

from dapose_jax import errors, methods, parallel
from dapose_jax.augment import views
from dapose_jax.config import defaults
from dapose_jax.methods import base
from dapose_jax.pose import skeletons
from dapose_jax.storage import checkpoints, workdirs

log = logging.getLogger("dapose_jax")


def read_config(path):
  """The ConfigDict of a run's ``config.json``, the lists that JSON made of the config's tuples tuples again."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.MissingInputError(f"{path}: no such file; --config takes a config file (e.g. configs/demo.py) or the "
                                   f"{workdirs.CONFIG} of a run")
  return ConfigDict(_tuples(_recorded(path)))


def _recorded(path):
  """The dict in a run's ``config.json``."""
  return workdirs.read_json(path, "recorded config (the config.json a run writes)",
                            "pass the config file the run was trained with instead (--config=FILE.py[:VARIANT])")


def _tuples(tree):
  if isinstance(tree, dict):
    return {key: _tuples(value) for key, value in tree.items()}
  return tuple(_tuples(value) for value in tree) if isinstance(tree, list) else tree


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """One checkpoint of a run: ``folder`` (an Orbax manager folder: RUN/checkpoints or RUN/best), its ``step``
  and the ``run`` folder it belongs to."""
  folder: pathlib.Path
  step: int
  run: pathlib.Path

  @property
  def path(self):
    return self.folder / str(self.step)

  @property
  def is_best(self):
    return self.folder.name == workdirs.BEST


def locate(checkpoint):
  """The ``Checkpoint`` that the --checkpoint path names."""
  path = pathlib.Path(checkpoint).expanduser().resolve()
  expected = (f"give a run folder (holding {workdirs.CHECKPOINTS}/), its {workdirs.BEST}/ folder or a step folder "
              f"such as RUN/{workdirs.CHECKPOINTS}/STEP")
  if not path.is_dir():
    raise errors.MissingInputError(f"--checkpoint {path}: no such folder; {expected}")
  if (path / workdirs.CHECKPOINTS).is_dir():
    folder, step, run = path / workdirs.CHECKPOINTS, None, path
  elif path.name in (workdirs.CHECKPOINTS, workdirs.BEST):
    folder, step, run = path, None, path.parent
  elif path.name.isdigit() and path.parent.name in (workdirs.CHECKPOINTS, workdirs.BEST):
    folder, step, run = path.parent, int(path.name), path.parent.parent
  else:
    raise errors.MissingInputError(f"--checkpoint {path} is not a checkpoint folder; {expected}")
  steps = checkpoints.saved_steps(folder)
  if not steps:
    raise errors.MissingInputError(f"no checkpoint in {folder}: the run has not written one yet; {expected}")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise errors.MissingInputError(f"{path} is not a complete checkpoint (those of {folder}: steps {sorted(steps)})")
  return Checkpoint(folder, step, run)


@dataclasses.dataclass(frozen=True)
class Model:
  """A restored run: the config of its own stage, its method, its state (replicated over the mesh), the
  checkpoint it came from and the keypoint set it predicts."""
  config: ConfigDict
  method: base.Method
  state: Any
  checkpoint: Checkpoint
  keypoint_set: skeletons.KeypointSet


def load(config, checkpoint, mesh):
  """The ``Model`` of ``checkpoint`` (a ``Checkpoint`` or a path for ``locate``) trained with ``config``."""
  if not isinstance(checkpoint, Checkpoint):
    checkpoint = locate(checkpoint)
  stages = methods.get(config.method).stages(config, checkpoint.run)
  config = stages[-1].config if stages else config
  method = methods.get(config.method)
  if method.eval_heatmaps is None:
    raise errors.ConfigError(f"method {method.name!r} has no pose output: there is nothing to evaluate or predict")
  _warn_if_not_recorded(config, checkpoint.run)
  repl = parallel.replicated(mesh)
  abstract = jax.eval_shape(functools.partial(method.init, config), jax.random.key(config.seed))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
  state = _restore(checkpoint, abstract, config)
  log.info("restored step %d of %s (%s)", checkpoint.step, checkpoint.folder, method.name)
  return Model(config, method, state, checkpoint, skeletons.get(config.target.keypoint_set))


def _restore(checkpoint, abstract, config):
  state, differs = checkpoints.restore_state(checkpoint.folder, checkpoint.step, abstract)
  if differs is None:
    return state
  recorded = checkpoint.run / workdirs.CONFIG
  hint = f" (the run's own config is {recorded}: --config={recorded})" if recorded.is_file() else ""
  raise errors.ConfigError(
      f"{checkpoint.path} does not hold a {config.method} state of this config's model: {differs}. Give the config it "
      f"was trained with{hint}")


def _warn_if_not_recorded(config, run):
  """A warning that names the keys in which ``config`` differs from the one the run recorded, if any."""
  path = run / workdirs.CONFIG
  if not path.is_file():
    return
  recorded = dict(defaults.leaves(_recorded(path)))
  given = dict(defaults.leaves(methods.as_recorded(config)))
  changed = sorted(key for key in recorded.keys() | given.keys() if recorded.get(key) != given.get(key))
  if changed:
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    log.warning("the config differs from %s, which the run was trained with, in %s%s; using the given values", path,
                ", ".join(changed[:6]), more)


def flip_tested(method, keypoint_set):
  """``method`` whose ``eval_heatmaps`` average each image's heatmaps with those of its mirror image, flipped
  back (``views.flip_back``): SimpleBaseline's flip test."""

  def eval_heatmaps(config, state, images):
    heatmaps = method.eval_heatmaps(config, state, images)
    mirrored = method.eval_heatmaps(config, state, images[..., ::-1, :])
    return (heatmaps + views.flip_back(mirrored, keypoint_set)) / 2

  return dataclasses.replace(method, eval_heatmaps=eval_heatmaps)


