"""The programs a run of a config executes, ready to compile for a target without data, files or devices: each
stage's train step and, for the stages that evaluate, the evaluators' heatmap forward, jitted exactly as the
training loop and the evaluators jit them, on abstract arguments (shapes, dtypes and shardings only)."""

import dataclasses
import functools
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp

from dapose_jax import evaluators, methods, parallel
from dapose_jax.data import pipeline
from dapose_jax.pose import skeletons
from dapose_jax.run import loop


@dataclasses.dataclass(frozen=True)
class Program:
  """One jitted program: ``lower(batch_size)`` lowers it for a global batch of that size."""
  name: str
  batch_size: int
  dtype: str  # the compute dtype, config.model.dtype
  lower: Callable


def abstract_state(config, method, mesh):
  """The shapes and dtypes of ``method``'s state for ``config``, replicated over ``mesh``."""
  shapes = jax.eval_shape(functools.partial(method.init, config), jax.random.key(config.seed))
  repl = parallel.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), shapes)


def _batch(config, domain, batch_size, mesh):
  data = parallel.data_sharding(mesh)
  shapes = pipeline.train_batch_shapes(batch_size, config.image_size,
                                       skeletons.get(config[domain].keypoint_set).num_keypoints, config[domain].pairs)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=data), shapes)


def train_step(config, mesh, batch_size):
  """The lowered train step of ``config.method`` at global batch ``batch_size`` (source and target batches)."""
  method = methods.get(config.method)
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  step = jax.ShapeDtypeStruct((), jnp.int32, sharding=parallel.replicated(mesh))
  return loop.jitted_train_step(config, method, mesh).lower(
      abstract_state(config, method, mesh), _batch(config, "source", batch_size, mesh),
      _batch(config, "target", batch_size, mesh), step)


def eval_step(config, mesh, batch_size):
  """The lowered heatmap forward of ``config.method``'s evaluators at global batch ``batch_size``."""
  method = methods.get(config.method)
  images = jax.ShapeDtypeStruct((batch_size, config.image_size, config.image_size, 3), jnp.uint8,
                                sharding=parallel.data_sharding(mesh))
  return evaluators.heatmap_predictor(config, method, mesh).lower(abstract_state(config, method, mesh), images)


def of_run(config, mesh, batch_size=None, eval_batch_size=None):
  """[Program] of a run of ``config``: for each stage of its method, in training order, "STAGE/train" and, where
  that stage evaluates, "STAGE/eval"; at the config's batch sizes unless given."""
  programs = []
  for stage in methods.get(config.method).stages(config, pathlib.Path("/nonexistent/run")):
    stage_config = stage.config
    programs.append(Program(f"{stage.name}/train", batch_size or stage_config.batch_size, stage_config.model.dtype,
                            functools.partial(train_step, stage_config, mesh)))
    if stage_config.evals and methods.get(stage_config.method).eval_heatmaps is not None:
      programs.append(Program(f"{stage.name}/eval", eval_batch_size or stage_config.eval_batch_size,
                              stage_config.model.dtype, functools.partial(eval_step, stage_config, mesh)))
  return programs
