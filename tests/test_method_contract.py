"""Every registered method honours the contract the loop relies on (``methods.base.Method``)."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from dapose_jax import evaluators, methods, parallel
from dapose_jax.config import defaults
from dapose_jax.pose import skeletons
from tests.test_parallel import random_batch
from tests.test_train import tiny_config


def method_config(name):
  c = tiny_config()
  c.method = name
  for section in ("mean_teacher", "daml", "geometric"):
    c[section].update(source_style_prob=0.0, teacher_style_prob=0.0)
  c.style.update(width=1 / 16, depth=2)
  c.reconstruction.update(warping_features=4, warping_max_features=8, warping_blocks=2, generator_features=4,
                          generator_max_features=8, generator_residual_blocks=1)
  return c


def test_the_registry_holds_every_method_once_by_its_name():
  assert set(methods.NAMES) == {"source_only", "regda", "mean_teacher", "daml", "style_decoder", "reconstruction",
                                "geometric"}
  for name in methods.NAMES:
    assert methods.get(name).name == name and methods.get(name) is methods.get(name)
  assert len({methods.section(name) for name in methods.NAMES}) == len(methods.NAMES)


def test_each_method_brings_its_config_section_from_its_own_defaults_module():
  config = defaults.base_config()
  assert methods.section("style_decoder") == "style" and methods.section("regda") == "regda"
  for name in methods.NAMES:
    module = importlib.import_module(f"dapose_jax.methods.defaults.{name}")
    assert config[methods.section(name)].to_dict() == ConfigDict(module.get()).to_dict()
  # DAML's section is the mean teacher's with DAML's adversary weights, and nothing else differs
  differs = {k for k, v in config.daml.items() if config.mean_teacher[k] != v}
  assert differs == {"feature_weight", "pose_weight", "teacher_style_prob"} and config.daml.pose_weight == 0.3


@pytest.mark.parametrize("name", methods.NAMES)
def test_method_inits_steps_and_evaluates_under_jit(name, tmp_path):
  method = methods.get(name)
  stages = method.stages(method_config(name), tmp_path)
  assert stages[-1].config.method == name and stages[-1].workdir in (tmp_path, tmp_path / "training")
  config = stages[-1].config
  mesh = parallel.make_mesh()
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state = jax.jit(functools.partial(method.init, config), out_shardings=repl)(jax.random.key(0))
  step = jax.jit(functools.partial(method.train_step, config), donate_argnums=(0,),
                 in_shardings=(repl, data, data), out_shardings=(repl, repl))
  batch = lambda seed: random_batch(config, config.batch_size, seed)
  pair = lambda seed, pairs: {"base": batch(seed), "driving": batch(seed + 10)} if pairs else batch(seed)
  source = parallel.to_global(pair(1, config.source.pairs), mesh)
  target = parallel.to_global(pair(2, config.target.pairs), mesh)
  before = jax.device_get(state)
  state, values = step(state, source, target)
  values = jax.device_get(values)
  assert np.isfinite(values["loss"]) and values["loss"] > 0
  assert int(state.step) == 1 and int(before.step) == 0
  moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                                                          jax.tree.leaves(before)) if a.shape]
  assert max(moved) > 0
  if method.eval_heatmaps is None:
    assert not config.evals and methods.section(method.name) in ("style", "reconstruction")
  else:
    assert set(config.evals) == {"source", "target"}
    images = (target["base"] if config.target.pairs else target)["image"]
    heatmaps = jax.jit(functools.partial(method.eval_heatmaps, config))(state, images)
    k = skeletons.get(config.source.keypoint_set).num_keypoints
    assert heatmaps.shape == (config.batch_size, config.heatmap_size, config.heatmap_size, k)
    assert bool(jnp.all(jnp.isfinite(heatmaps)))
    assert set(evaluators.from_config(config, method, mesh)) == {"source", "target"}


def test_a_method_without_pose_output_refuses_evaluators():
  config = method_config("style_decoder")  # the evaluators of the pose config, before configure clears them
  with pytest.raises(ValueError, match="no pose output"):
    evaluators.from_config(config, methods.get("style_decoder"), parallel.make_mesh())


def test_two_stage_methods_hand_stage_one_to_stage_two_through_their_own_section(tmp_path):
  for name in ("regda", "mean_teacher", "daml"):
    stages = methods.get(name).stages(method_config(name), tmp_path)
    pretrain, own = stages[-2], stages[-1]
    assert (pretrain.name, pretrain.config.method, pretrain.workdir) == ("pretrain", "source_only",
                                                                        tmp_path / "pretrain")
    assert own.config[name].pretrained == str(tmp_path / "pretrain" / "best")
  given = method_config("regda")
  given.regda.pretrained = "/elsewhere/best"
  assert [s.name for s in methods.get("regda").stages(given, tmp_path)] == ["regda"]


def test_style_network_stage_comes_first_and_is_named_in_every_later_stage(tmp_path):
  config = method_config("mean_teacher")
  config.mean_teacher.source_style_prob = 0.5
  stages = methods.get("mean_teacher").stages(config, tmp_path)
  assert [s.name for s in stages] == ["style", "pretrain", "mean_teacher"]
  assert stages[0].workdir == tmp_path / "style" / "training"
  net = str(tmp_path / "style" / "style_net.msgpack")
  assert stages[0].config.style.net == net and stages[1].config.style.net == net and stages[2].config.style.net == net
  config.style.net = "/given/style_net.msgpack"
  assert [s.name for s in methods.get("mean_teacher").stages(config, tmp_path)] == ["pretrain", "mean_teacher"]


def test_the_recorded_config_leaves_out_the_sections_of_unused_methods():
  recorded = methods.as_recorded(method_config("regda"))
  assert "regda" in recorded and not {"source_only", "mean_teacher", "daml", "style"} & set(recorded)
  stylised = method_config("source_only")
  stylised.source_only.stylise_prob = 0.5
  assert {"source_only", "style"} <= set(methods.as_recorded(stylised))
  assert "style" not in methods.as_recorded(method_config("source_only"))
