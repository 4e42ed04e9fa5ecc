"""The geometric method: its ablation's baseline is the mean teacher, the reconstruction term reaches the pose
network through the keypoints only, the mask switch is kept in the state, its stages, and a tiny run end to end."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import errors, methods, parallel
from dapose_jax.auxiliary import style_net
from dapose_jax.methods import geometric, mean_teacher, reconstruction
from dapose_jax.pose import decoding
from dapose_jax.run import loop
from tests.test_configs import get_config
from tests.test_method_contract import method_config
from tests.test_parallel import random_batch
from tests.test_train import tiny_run


def geometric_config(**settings):
  c = method_config("geometric")
  c.geometric.pretrain.stylise_prob = 0.0
  c.geometric.update(settings)
  return c


def step_once(method, config, state, source, target):
  mesh = parallel.make_mesh()
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  step = jax.jit(functools.partial(method.train_step, config), in_shardings=(repl, data, data),
                 out_shardings=(repl, repl))
  return jax.device_get(step(state, parallel.to_global(source, mesh), parallel.to_global(target, mesh)))


def batches(config):
  return random_batch(config, config.batch_size, 1), random_batch(config, config.batch_size, 2)


def ready_state(config):
  """A fresh state with a random (not zero) generator and perceptual encoder, as ``load_pretrained`` would give."""
  state = geometric.init(config, jax.random.key(0))
  if geometric.parts(config)[1]:
    state = state.replace(generator=reconstruction.init_variables(config, 16),
                          encoder=style_net.initial_params(config.style)["encoder"])
  return state


def test_the_baseline_ablation_is_the_mean_teacher_step_bit_for_bit():
  config = geometric_config(ablation="baseline")
  teacher_config = method_config("mean_teacher")
  source, target = batches(config)
  ours, our_values = step_once(geometric.METHOD, config, ready_state(config), source, target)
  theirs, their_values = step_once(mean_teacher.METHOD, teacher_config,
                                   mean_teacher.init(teacher_config, jax.random.key(0)), source, target)
  for name in ("params", "batch_stats", "teacher_params", "teacher_batch_stats"):
    jax.tree.map(np.testing.assert_array_equal, getattr(ours, name), getattr(theirs, name))
  assert our_values["loss"] == their_values["loss"] and "loss_reconstruction" not in our_values


def test_the_reconstruction_term_moves_the_pose_network_and_leaves_the_generator_frozen():
  config = geometric_config(ablation="reconstruction", reconstruction_weight=1.0)
  source, target = batches(config)
  state = ready_state(config)
  moved, values = step_once(geometric.METHOD, config, state, source, target)
  still, _ = step_once(geometric.METHOD, geometric_config(ablation="reconstruction", reconstruction_weight=0.0),
                       state, source, target)
  assert np.isfinite(values["loss_reconstruction"]) and values["loss_reconstruction"] > 0
  # the same step without the term: the pose parameters differ only by the reconstruction gradient
  differences = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(moved.params),
                                                               jax.tree.leaves(still.params))]
  assert max(differences) > 0
  jax.tree.map(np.testing.assert_array_equal, moved.generator, jax.device_get(state.generator))


def test_the_reconstruction_gradient_passes_through_the_soft_argmax_keypoints():
  config = geometric_config()
  heatmaps = jax.random.uniform(jax.random.key(3), (2, 8, 8, 16))
  generator = reconstruction.init_variables(config, 16)
  encoder = style_net.initial_params(config.style)["encoder"]
  base, driving = jax.random.uniform(jax.random.key(4), (2, 2, 32, 32, 3))

  def loss(maps):
    kp = decoding.heatmap_keypoints(config, maps)
    image = reconstruction.model(config).apply(generator, base, kp, kp[:, ::-1], train=False)["image"]
    return reconstruction.loss_terms(config, image, driving, encoder)[0]

  grad = jax.grad(loss)(heatmaps)
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0


def test_the_union_of_the_masks_stays_off_below_the_overlap_threshold_and_stays_on_once_reached():
  config = geometric_config(ablation="pseudo")
  config.lifting.overlap_threshold = 1.0  # a random network's masks never overlap fully
  source, target = batches(config)
  state, values = step_once(geometric.METHOD, config, ready_state(config), source, target)
  assert not bool(state.union) and values["union"] == 0.0 and 0 <= values["overlap"] < 1
  assert {"loss_consistency_2d", "loss_consistency_3d"} <= set(values)
  kept, values = step_once(geometric.METHOD, config, state.replace(union=jnp.array(True)), source, target)
  assert bool(kept.union) and values["union"] == 1.0  # once reached, the union stays whatever the overlap


def test_the_stages_pretrain_then_pretrain_the_generator_on_stage_one_keypoints(tmp_path):
  stages = methods.get("geometric").stages(geometric_config(), tmp_path)
  assert [s.name for s in stages] == ["pretrain", "reconstruction", "geometric"]
  generator, own = stages[1].config, stages[2].config
  assert stages[1].workdir == tmp_path / "reconstruction" / "training"
  assert (generator.method, generator.reconstruction.keypoints) == ("reconstruction", "predictor")
  assert generator.reconstruction.predictor == own.geometric.pretrained == str(tmp_path / "pretrain" / "best")
  assert own.geometric.generator == str(tmp_path / "reconstruction" / reconstruction.NET)
  assert {"geometric", "reconstruction", "lifting"} <= set(methods.as_recorded(own))
  for settings in (dict(ablation="pseudo"), dict(generator="/given/reconstruction.msgpack")):
    assert [s.name for s in methods.get("geometric").stages(geometric_config(**settings), tmp_path)] == [
        "pretrain", "geometric"]


@pytest.mark.parametrize("settings, message", [
    (dict(ablation="rec"), "config.geometric.ablation='rec': expected one of baseline, pseudo, reconstruction, both"),
    (dict(reconstruction_weight=-1.0), "config.geometric.reconstruction_weight=-1.0: expected a weight >= 0"),
])
def test_a_bad_setting_is_one_config_error(tmp_path, settings, message):
  with pytest.raises(errors.ConfigError, match=message) as raised:
    loop.run(geometric_config(**settings), tmp_path)
  assert "\n" not in str(raised.value) and not any(tmp_path.iterdir())


def test_a_keypoint_set_without_a_kinematic_root_cannot_lift():
  config = geometric_config(ablation="pseudo")
  config.source.keypoint_set = "animal18"
  with pytest.raises(errors.ConfigError, match="lifts animal18 keypoints"):
    geometric.configure(config)


def test_a_run_from_stage_one_pretrains_the_generator_then_trains_with_pairs_and_logs_the_diagnostics(tmp_path):
  """Stage 1 is the tests' tiny source-only run (the same model); the dry runs of tests/test_reproduce.py train
  every stage of the recipes."""
  config = geometric_config(pretrained=str(tiny_run() / "best"))
  config.epochs = 2
  config.reconstruction.steps = 2
  config.target.pairs = True
  config.evals.target_labels = dict(type="pseudo_labels", domain="target", split="train", count=8)
  _, results = loop.run(config, tmp_path)
  assert (tmp_path / "reconstruction" / reconstruction.NET).is_file()
  assert (tmp_path / "reconstruction" / reconstruction.PICTURE).is_file()
  assert not (tmp_path / "reconstruction" / "training").exists() and not (tmp_path / "pretrain").exists()
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_records = [r for r in records if r["kind"] == "train"]
  assert all(np.isfinite(r["loss_reconstruction"]) and 0 <= r["overlap"] <= 1 for r in train_records)
  assert results["method"] == "geometric"
  evaluations = [r["target_labels"] for r in records if r["kind"] == "eval"]
  assert len(evaluations) == 2 and np.isnan(evaluations[0]["wrong_twice"]) and 0 <= evaluations[1]["wrong_twice"] <= 100
  assert all(0 <= e[key] <= 100 for e in evaluations for key in ("accuracy_2d", "accuracy_3d", "overlap"))
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["geometric"]["generator"] == str(tmp_path / "reconstruction" / reconstruction.NET)
  assert saved["target"]["pairs"] and "style" not in saved
  assert results["steps"] == config.epochs * config.iters_per_epoch


@pytest.mark.parametrize("file", ["surreal_lsp.py", "surreal_h36m.py", "rhd_h3d.py", "freihand_rhd.py"])
def test_the_task_configs_run_the_geometric_variant_with_two_view_generator_training(tmp_path, file):
  config = get_config(file, "geometric")
  stages = methods.get("geometric").stages(config, tmp_path)
  assert [s.name for s in stages] == ["style", "pretrain", "reconstruction", "geometric"]
  generator = stages[2].config
  assert generator.reconstruction.driving == "view" and not generator.source.pairs and not stages[3].config.target.pairs
  assert stages[3].config.epochs == 30 and stages[3].config.image_size == 256


def test_an_animal_task_runs_the_reconstruction_ablation_but_cannot_lift(tmp_path):
  config = get_config("synanimal_tigdog.py", "horse,geometric")
  with pytest.raises(errors.ConfigError, match="lifts animal18 keypoints"):
    methods.get("geometric").stages(config, tmp_path)
  config.geometric.ablation = "reconstruction"
  assert [s.name for s in methods.get("geometric").stages(config, tmp_path)][-2:] == ["reconstruction", "geometric"]
