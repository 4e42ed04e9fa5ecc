import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import ConfigDict

from dapose_jax.augment import transforms
from dapose_jax.config import defaults
from dapose_jax.methods import common, mean_teacher, source_only
from dapose_jax.models import pose, style
from tests.test_parallel import random_batch
from tests.test_train import tiny_config


def mt_config(method="mean_teacher", **overrides):
  c = tiny_config()
  c.method = method
  c[method].update(source_style_prob=0.0, teacher_style_prob=0.0, **overrides)
  c[method].pretrain.stylise_prob = 0.0
  return c


def leaves_close(a, b, **kw):
  return all(np.allclose(x, y, **kw) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def daml_step():
  config = mt_config("daml")
  state = jax.jit(functools.partial(mean_teacher.init, config))(jax.random.key(0))
  # make the teacher differ from the student so that the EMA is visible
  state = state.replace(teacher_params=jax.tree.map(lambda x: x * 0.5, state.teacher_params))
  before = jax.device_get(state)
  source = jax.tree.map(jnp.asarray, random_batch(config, 4, 1))
  target = jax.tree.map(jnp.asarray, random_batch(config, 4, 2))
  after, metrics = jax.jit(functools.partial(mean_teacher.train_step, config))(state, source, target)
  return config, before, jax.device_get(after), jax.device_get(metrics)


def test_teacher_is_the_exact_ema_of_the_updated_student(daml_step):
  config, before, after, _ = daml_step
  alpha = config.daml.ema
  expected = jax.tree.map(lambda t, s: alpha * t + (1 - alpha) * s, before.teacher_params, after.params)
  assert leaves_close(after.teacher_params, expected, rtol=1e-6, atol=1e-7)
  assert not leaves_close(after.params, before.params)


def test_teacher_batchnorm_statistics_are_its_own(daml_step):
  _, before, after, _ = daml_step
  assert not leaves_close(after.teacher_batch_stats, before.teacher_batch_stats)  # its train-mode forward
  assert not leaves_close(after.teacher_batch_stats, after.batch_stats)  # not copied from the student


def test_daml_step_trains_the_discriminator_and_reports_every_term(daml_step):
  _, before, after, metrics = daml_step
  assert not leaves_close(after.disc_params, before.disc_params)
  for key in ("loss_source", "loss_consistency", "loss_bce_source", "loss_bce_target", "loss_im"):
    assert np.isfinite(metrics[key])
  assert 0.3 < metrics["loss_bce_source"] < 1.5 and 0.3 < metrics["loss_bce_target"] < 1.5
  expected = (metrics["loss_source"] + metrics["loss_consistency"]
              + 0.1 * (metrics["loss_bce_source"] + metrics["loss_bce_target"]) + 0.3 * metrics["loss_im"])
  assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
  assert metrics["mask_fraction"] <= 0.5  # strictly above the batch median


def test_mean_teacher_has_no_discriminator_and_no_alignment_terms():
  config = mt_config()
  state = jax.jit(functools.partial(mean_teacher.init, config))(jax.random.key(0))
  assert state.disc_params == {} and state.style == {}
  source = jax.tree.map(jnp.asarray, random_batch(config, 4, 1))
  target = jax.tree.map(jnp.asarray, random_batch(config, 4, 2))
  _, metrics = jax.jit(functools.partial(mean_teacher.train_step, config))(state, source, target)
  assert set(metrics) == {"loss", "loss_source", "loss_consistency", "lr", "mask_fraction", "source_pck"}


def test_evaluation_uses_the_teacher(daml_step):
  config, _, after, _ = daml_step
  images = jnp.asarray(random_batch(config, 2, 5)["image"])
  model = pose.build_model(config)
  teacher = common.predict(model, {"params": after.teacher_params, "batch_stats": after.teacher_batch_stats}, images)
  student = common.predict(model, {"params": after.params, "batch_stats": after.batch_stats}, images)
  got = mean_teacher.eval_heatmaps(config, after, images)
  np.testing.assert_allclose(got, teacher, rtol=1e-6)
  assert float(jnp.max(jnp.abs(got - student))) > 0


def test_occlusion_hits_only_a_confident_keypoint():
  c = ConfigDict(dict(occlude_threshold=0.9, occlude_prob=1.0, occlude_size=2))
  images = jnp.arange(2 * 16 * 16 * 3, dtype=jnp.float32).reshape(2, 16, 16, 3)
  centres = jnp.array([[[4.0, 4.0], [11.0, 10.0]], [[4.0, 4.0], [11.0, 10.0]]])
  confidence = jnp.array([[0.5, 0.95], [0.5, 0.8]])  # sample 0: keypoint 1 confident; sample 1: none
  out = mean_teacher._occlude(c, jax.random.key(0), images, centres, confidence)
  ys, xs = np.nonzero(np.asarray(jnp.any(out[0] != images[0], -1)))
  assert (xs.min(), xs.max(), ys.min(), ys.max()) == (9, 12, 8, 11)
  np.testing.assert_array_equal(out[1], images[1])


def test_configure_leaves_only_the_base_crop_to_the_target_pipeline():
  config = mean_teacher.configure(mt_config())
  assert (config.target.augment.rotation, config.target.augment.color, config.target.augment.blur) == (0, 0, 0)
  assert config.target.augment.scale_min == 0.6  # the random resized crop stays
  assert config.source.augment.rotation == 30.0
  # LSP (tllib's fixed transform, augmentation off) gets the base crop of its padded square, as UDAPE's LSP_mt
  lsp = mt_config()
  lsp.target = defaults.domain("lsp", keypoint_set="body16", data_dir="x")
  assert not lsp.target.augment.enabled
  augment = mean_teacher.configure(lsp).target.augment
  assert augment.enabled and augment.resize_pad and (augment.scale_min, augment.scale_max) == (0.6, 1.3)
  assert (augment.rotation, augment.color, augment.blur) == (0, 0, 0)


def test_stage_one_is_stylised_source_only_mse_adam():
  config = tiny_config()
  config.method = "daml"
  stage1 = mean_teacher.pretrain_config(config)
  assert stage1.method == "source_only" and stage1.epochs == config.daml.pretrain_epochs
  assert (stage1.source_only.loss, stage1.source_only.optimizer, stage1.source_only.stylise_prob) == (
      "mse", "adam", 0.5)
  reference = defaults.base_config()
  assert reference.daml.pretrain.lr == 1e-4 and reference.daml.pretrain_epochs == 40
  assert (reference.daml.feature_weight, reference.daml.pose_weight, reference.daml.teacher_style_prob) == (
      0.1, 0.3, 0.0)
  assert (reference.mean_teacher.feature_weight, reference.mean_teacher.teacher_style_prob) == (0.0, 0.5)
  config.daml.pretrained = "/somewhere/best"
  assert mean_teacher.pretrain_config(config) is None


def test_stage_two_starts_student_and_teacher_from_the_stage_one_checkpoint(tmp_path):
  config = mt_config()
  stage1_config = mean_teacher.pretrain_config(config)
  stage1 = jax.jit(functools.partial(source_only.init, stage1_config))(jax.random.key(9))
  with ocp.CheckpointManager(tmp_path / "best") as mngr:
    mngr.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(stage1)))
  config.mean_teacher.pretrained = str(tmp_path / "best")
  state = jax.jit(functools.partial(mean_teacher.init, config))(jax.random.key(0))
  loaded = mean_teacher.load_pretrained(config, state)
  for tree in (loaded.params, loaded.teacher_params):
    assert leaves_close(tree, stage1.params, rtol=0, atol=0)
  assert leaves_close(loaded.teacher_batch_stats, stage1.batch_stats, rtol=0, atol=0)
  assert not leaves_close(loaded.params, state.params)


def test_stylisation_is_all_or_nothing_per_batch_and_clipped():
  config = tiny_config()
  params = style.init_style_params(jax.random.key(0), config.style.width, config.image_size)
  content = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  style_images = jax.random.normal(jax.random.key(2), (2, 32, 32, 3)) * 3
  same = common.maybe_stylise(config, jax.random.key(3), params, content, style_images, 0.0)
  assert same is content
  stylise = jax.jit(lambda rng: common.maybe_stylise(config, rng, params, content, style_images, 0.5))
  outputs = [stylise(jax.random.key(i)) for i in range(8)]
  untouched = [bool(jnp.all(o == content)) for o in outputs]
  assert 0 < sum(untouched) < 8  # p = 0.5: some batches kept, some stylised
  stylised = outputs[untouched.index(False)]
  low, high = -transforms.IMAGENET_MEAN / transforms.IMAGENET_STD, (
      1 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
  assert bool(jnp.all((stylised >= low - 1e-6) & (stylised <= high + 1e-6)))
