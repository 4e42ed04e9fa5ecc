import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.augment import device_augment
from dapose_jax.methods import regda
from dapose_jax.models import pose
from dapose_jax.pose import keypoints
from tests.test_parallel import random_batch
from tests.test_train import tiny_config, tiny_run


@pytest.mark.parametrize("step, expected", [(0, 0.0), (1, 5e-5), (100, 0.004996), (1000, 0.046212),
                                            (5000, 0.098661), (15000, 0.1)])
def test_warm_start_coefficient_reference_values(step, expected):
  assert float(regda.warm_start_coefficient(step)) == pytest.approx(expected, abs=1e-6)


def regda_config():
  c = tiny_config()
  c.method = "regda"
  return c


@pytest.fixture(scope="module")
def setup():
  config = regda_config()
  state = jax.jit(functools.partial(regda.init, config))(jax.random.key(0))
  source = jax.tree.map(jnp.asarray, random_batch(config, 4, 1))
  target = jax.tree.map(jnp.asarray, random_batch(config, 4, 2))
  return config, state, source, target


@pytest.fixture(scope="module")
def updates(setup):
  """Updates A, B, C and B + C sharing one forward, each jitted once for the module's tests."""
  config = setup[0]
  return {name: jax.jit(functools.partial(getattr(regda, name), config))
          for name in ("step_a", "step_b", "step_c", "steps_b_and_c")}


def changed_groups(before, after):
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), before.params, after.params)
  return {group for group, tree in diff.items() if max(jax.tree.leaves(tree)) > 0}


def test_each_update_changes_only_its_parameter_groups(setup, updates):
  config, state, source, target = setup
  lam = regda.warm_start_coefficient(500)
  label, w_s = keypoints.heatmap_targets(config, source)
  _, w_t = keypoints.heatmap_targets(config, target)
  x_s, x_t = device_augment.normalize(source["image"]), device_augment.normalize(target["image"])
  after_a, loss_a, _ = updates["step_a"](state, lam, x_s, label, w_s)
  after_b, loss_b = updates["step_b"](state, lam, x_t, w_t)
  after_c, loss_c = updates["step_c"](state, lam, x_t, w_t)
  assert changed_groups(state, after_a) == {"backbone", "upsampling", "head", "head_adv"}
  assert changed_groups(state, after_b) == {"head_adv"}
  assert changed_groups(state, after_c) == {"backbone", "upsampling"}
  assert all(np.isfinite(float(l)) and float(l) > 0 for l in (loss_a, loss_b, loss_c))


def test_updates_b_and_c_sharing_one_target_forward_equal_the_references_two_forwards(setup, updates):
  """Three iterations (A, B, C) along each path from the same state: the losses, parameters, BN statistics and
  optimiser states of steps_b_and_c agree with step_b then step_c to float32 rounding."""
  config, state, source, target = setup
  label, w_s = keypoints.heatmap_targets(config, source)
  _, w_t = keypoints.heatmap_targets(config, target)
  x_s, x_t = device_augment.normalize(source["image"]), device_augment.normalize(target["image"])
  lam = regda.warm_start_coefficient(500)
  reference, shared = state, state
  for _ in range(3):
    reference, loss_a, _ = updates["step_a"](reference, lam, x_s, label, w_s)
    reference, loss_b = updates["step_b"](reference, lam, x_t, w_t)
    reference, loss_c = updates["step_c"](reference, lam, x_t, w_t)
    shared, shared_a, _ = updates["step_a"](shared, lam, x_s, label, w_s)
    shared, shared_b, shared_c = updates["steps_b_and_c"](shared, lam, x_t, w_t)
    np.testing.assert_allclose([shared_a, shared_b, shared_c], [loss_a, loss_b, loss_c], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(reference), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), shared.batch_stats, state.batch_stats)
  assert min(jax.tree.leaves(moved)) > 0  # every BN statistic moved (each forward updates it)


def test_features_receive_exactly_lambda_times_the_adversarial_gradient_with_positive_sign(setup):
  config, state, source, _ = setup
  model = pose.build_model(config, head="regda")
  images = device_augment.normalize(source["image"])
  probe = jax.random.normal(jax.random.key(3), (4, config.heatmap_size, config.heatmap_size, 16))

  def backbone_grad(scale):
    def f(backbone):
      params = {**state.params, "backbone": backbone}
      out = model.apply({"params": params, "batch_stats": state.batch_stats}, images, train=False,
                        adv_grad_scale=scale)
      return jnp.sum(out["heatmaps_adv"] * probe)
    return jax.grad(f)(state.params["backbone"])

  plain = backbone_grad(1.0)
  lam = 0.046212
  scaled = backbone_grad(lam)
  for a, b in zip(jax.tree.leaves(scaled), jax.tree.leaves(plain)):
    np.testing.assert_allclose(np.asarray(a), lam * np.asarray(b), rtol=1e-4, atol=1e-12)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(plain)) > 0


def test_objectives_select_label_and_sign_of_steps_b_and_c(setup):
  config, state, _, target = setup
  x_t = device_augment.normalize(target["image"])
  _, w_t = keypoints.heatmap_targets(config, target)
  losses = {}
  for objective in regda.OBJECTIVES:
    c = regda_config()
    c.regda.objective = objective
    _, loss_b = regda.step_b(c, state, 0.01, x_t, w_t)
    _, loss_c = regda.step_c(c, state, 0.01, x_t, w_t)
    losses[objective] = (float(loss_b), float(loss_c))
  l_f, l_t = losses["regda"]  # (L_F, L_T) at the same state
  assert losses["dd"] == pytest.approx((-l_t, l_t), rel=1e-5)
  assert losses["ground_false_minimax"] == pytest.approx((l_f, -l_f), rel=1e-5)
  assert l_f != pytest.approx(l_t)


def test_stage_two_loads_only_backbone_and_upsampling_of_stage_one():
  """Stage 1's best checkpoint (here the tests' tiny source-only run: the same model) into a fresh RegDA state; the
  dry runs of tests/test_reproduce.py run the two stages one after the other."""
  import orbax.checkpoint as ocp

  config = regda_config()
  config.regda.pretrained = str(tiny_run() / "best")
  fresh = jax.jit(functools.partial(regda.init, config))(jax.random.key(config.seed))
  loaded = regda.load_pretrained(config, fresh)
  with ocp.CheckpointManager(config.regda.pretrained) as mngr:
    stage1 = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  for group in regda.FEATURES:
    jax.tree.map(np.testing.assert_array_equal, loaded.params[group], stage1["params"][group])
    jax.tree.map(np.testing.assert_array_equal, loaded.batch_stats[group], stage1["batch_stats"][group])
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(loaded.params[group]),
                                              jax.tree.leaves(fresh.params[group])))  # it did load
  for head in ("head", "head_adv"):  # both heads start from their fresh initialisation
    jax.tree.map(np.testing.assert_array_equal, loaded.params[head], fresh.params[head])


def test_missing_stage_one_checkpoint_is_reported(tmp_path, setup):
  config, state, _, _ = setup
  config = regda_config()
  config.regda.pretrained = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="stage-1"):
    regda.load_pretrained(config, state)


def test_every_parameter_group_decays_once_per_iteration_as_the_references_lambda_lr(setup):
  """Updates A and C both step the features' SGD (A and B the adversarial head's), and the reference steps each
  LambdaLR once per iteration: at iteration 5000, update C moves the features by -lr(5000) x its gradient, also
  right after update A (with momentum and weight decay off, the change is the rate times the gradient)."""
  _, _, source, target = setup
  config = regda_config()
  config.regda.update(momentum=0.0, nesterov=False, weight_decay=0.0, lr_gamma=1e-3)  # lr(1) / lr(5000) = 3.8
  state = jax.jit(functools.partial(regda.init, config))(jax.random.key(0)).replace(step=jnp.asarray(5000))
  lam = regda.warm_start_coefficient(state.step)
  label, w_s = keypoints.heatmap_targets(config, source)
  _, w_t = keypoints.heatmap_targets(config, target)
  x_s, x_t = device_augment.normalize(source["image"]), device_augment.normalize(target["image"])
  after_a, _, _ = regda.step_a(config, state, lam, x_s, label, w_s)
  after_c, _ = regda.step_c(config, after_a, lam, x_t, w_t)
  objective = regda.OBJECTIVES[config.regda.objective][1]
  features = {k: after_a.params[k] for k in regda.FEATURES}
  grad = jax.grad(lambda f: regda._target_loss(config, {**after_a.params, **f}, after_a.batch_stats, lam, x_t, w_t,
                                                 objective)[0])(features)
  moved = jax.tree.map(lambda new, old: new - old, {k: after_c.params[k] for k in regda.FEATURES}, features)
  dot = lambda a, b: sum(float(jnp.vdot(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  rate = -dot(moved, grad) / dot(grad, grad)
  features_lr, _ = regda._schedules(config)
  np.testing.assert_allclose(rate, float(features_lr(5000)), rtol=1e-3)
  assert float(features_lr(1)) > 3 * float(features_lr(5000))  # what a per-update count would have used
