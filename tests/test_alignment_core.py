import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.methods import mean_teacher
from dapose_jax.models import style
from dapose_jax.pose import losses


def _entropy(logits):
  p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
  return float(-(p * np.log(p)).sum())


def _simcc_terms(x_nchw):
  """DAML SimCCLoss transcribed on (B, K, H, W): per-(b, k) E_H, E_W and per-k E_M, before / (H*W)."""
  b, k, h, w = x_nchw.shape
  ent_h = np.array([[_entropy(x_nchw[i, j].mean(-1)) for j in range(k)] for i in range(b)])
  ent_w = np.array([[_entropy(x_nchw[i, j].mean(-2)) for j in range(k)] for i in range(b)])
  ent_m = np.array([_entropy(x_nchw.mean(0)[j].ravel()) for j in range(k)])
  return ent_h, ent_w, ent_m


def _to_nhwk(x_nchw):
  return jnp.asarray(x_nchw.transpose(0, 2, 3, 1))


# consistency


def _consistency_example():
  student = np.zeros((1, 2, 2, 2), np.float32)
  student[0, 0, 0, 0] = 1.0  # keypoint 0: one pixel off by 1
  student[..., 1] = 2.0  # keypoint 1: every pixel off by 2
  return jnp.asarray(student), jnp.zeros((1, 2, 2, 2))


def test_consistency_hand_example_counts_masked_keypoints_in_denominator():
  student, target = _consistency_example()
  # 8 elements in the mean: masked keypoint 1 adds 0 but stays in the count; no 0.5 factor
  assert float(losses.consistency(student, target, jnp.array([[1.0, 0.0]]))) == pytest.approx(1 / 8)
  assert float(losses.consistency(student, target, jnp.array([[1.0, 1.0]]))) == pytest.approx((1 + 4 * 4) / 8)


def test_consistency_gradient_is_finite_and_zero_for_masked_keypoints():
  student, target = _consistency_example()
  grad = jax.grad(losses.consistency)(student, target, jnp.array([[1.0, 0.0]]))
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[..., 1], 0.0)
  # d/dS mean((S - T)^2) = 2 (S - T) / 8
  np.testing.assert_allclose(grad[..., 0], np.array([[[0.25, 0.0], [0.0, 0.0]]]))


# median confidence mask


def _maps_with_peaks(conf):
  conf = np.asarray(conf, np.float32)
  maps = np.zeros(conf.shape[:1] + (3, 3) + conf.shape[1:], np.float32)
  maps[:, 1, 2] = conf
  return jnp.asarray(maps)


def test_median_mask_keeps_keypoints_strictly_above_kth_smallest_confidence():
  # k = int(0.5 * 4) = 2: the 2nd smallest of (0.1, 0.9, 0.5, 0.7) is 0.5
  mask = losses.median_confidence_mask(_maps_with_peaks([[0.1, 0.9], [0.5, 0.7]]))
  assert mask.dtype == jnp.float32
  np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])


def test_median_mask_drops_ties_at_the_threshold():
  np.testing.assert_array_equal(losses.median_confidence_mask(_maps_with_peaks([[0.5, 0.5], [0.5, 0.9]])),
                                [[0, 0], [0, 1]])
  np.testing.assert_array_equal(losses.median_confidence_mask(_maps_with_peaks([[0.3, 0.3], [0.3, 0.3]])), 0)


def test_median_mask_odd_count_and_single_keypoint():
  # k = int(1.5) = 1: only the smallest is dropped
  np.testing.assert_array_equal(losses.median_confidence_mask(_maps_with_peaks([[0.2, 0.1, 0.3]])), [[1, 0, 1]])
  # k = 0: nothing is dropped
  np.testing.assert_array_equal(losses.median_confidence_mask(_maps_with_peaks([[0.2]])), [[1]])


def test_median_mask_works_under_jit():
  mask = jax.jit(losses.median_confidence_mask)(_maps_with_peaks([[0.1, 0.9], [0.5, 0.7]]))
  np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])


# information maximization


def test_im_uniform_maps_give_closed_form_zero():
  # E_H = log H / (HW), E_W = log W / (HW), E_M = log(HW) / (HW): the sum cancels
  assert float(losses.information_maximization(jnp.full((2, 4, 8, 3), 0.7))) == pytest.approx(0.0, abs=1e-8)


def test_im_one_hot_h_projection_lowers_only_e_h():
  # sample b is `a` on row b: its H-projection is one-hot, its W-projection uniform, and the batch
  # mean is uniform, so only E_H moves away from its uniform value.
  height, width, a = 4, 8, 5.0
  maps = jnp.asarray(np.eye(height)[:, :, None, None] * np.full((1, 1, width, 1), a), jnp.float32)
  expected = (_entropy(np.array([a, 0, 0, 0])) - np.log(height)) / (height * width)
  got = float(losses.information_maximization(maps))
  assert got < 0
  assert got == pytest.approx(expected, rel=1e-5)


def test_im_matches_reference_on_random_non_square_maps():
  x = np.random.default_rng(0).normal(size=(3, 2, 5, 7)).astype(np.float32)
  ent_h, ent_w, ent_m = _simcc_terms(x)
  expected = (ent_h.mean() + ent_w.mean() - ent_m.mean()) / (5 * 7)
  assert float(losses.information_maximization(_to_nhwk(x))) == pytest.approx(expected, rel=1e-4)


def test_im_magnitude_on_random_64x64_maps():
  # for N(0, 1) maps, Ent(softmax) ~ log n - var / 2: (1/B - 1/W - 1/H) / 2 / (H*W) ~ 2.7e-5 at B = 4
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 64, 64, 16))
  assert float(jax.jit(losses.information_maximization)(x)) == pytest.approx((1 / 4 - 2 / 64) / 2 / 4096, rel=0.05)


def test_im_threshold_averages_e_h_e_w_over_confident_keypoints_only():
  x = np.random.default_rng(1).uniform(size=(2, 3, 6, 5)).astype(np.float32)
  x[0, 1] *= 0.1  # two low-confidence keypoints (peak < 0.5)
  x[1, 2] *= 0.1
  ent_h, ent_w, ent_m = _simcc_terms(x)
  keep = x.max(axis=(2, 3)) > 0.5
  expected = ((ent_h + ent_w)[keep].mean() - ent_m.mean()) / 30
  got = jax.jit(losses.information_maximization)(_to_nhwk(x), 0.5)
  assert float(got) == pytest.approx(expected, rel=1e-4)
  # a threshold below every peak is the released code; one above every peak leaves only -E_M
  assert float(losses.information_maximization(_to_nhwk(x), -1.0)) == pytest.approx(
      float(losses.information_maximization(_to_nhwk(x))), rel=1e-6)
  assert float(losses.information_maximization(_to_nhwk(x), 2.0)) == pytest.approx(-ent_m.mean() / 30, rel=1e-5)


# bce


def test_bce_with_logits_matches_direct_formula():
  logits = np.array([[-2.0, 0.0], [0.5, 3.0]], np.float32)
  label = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
  p = 1 / (1 + np.exp(-logits))
  expected = np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p)))
  assert float(losses.bce_with_logits(jnp.asarray(logits), jnp.asarray(label))) == pytest.approx(expected, rel=1e-6)
  # scalar labels: source 0, target 1
  assert float(losses.bce_with_logits(jnp.zeros((2, 4, 4, 1)), 1.0)) == pytest.approx(np.log(2.0), rel=1e-6)


def test_bce_with_logits_is_finite_for_large_logits():
  logits = jnp.array([100.0, -100.0])
  assert float(losses.bce_with_logits(logits, 1.0)) == pytest.approx(50.0)  # (0 + 100) / 2
  assert float(losses.bce_with_logits(logits, 0.0)) == pytest.approx(50.0)
  assert np.all(np.isfinite(jax.grad(losses.bce_with_logits)(logits, 1.0)))


# style


def test_adain_output_takes_style_mean_and_unbiased_std():
  key_c, key_s = jax.random.split(jax.random.PRNGKey(0))
  content = jax.random.normal(key_c, (2, 8, 8, 3)) * 2.0 + 1.0
  style_feats = jax.random.normal(key_s, (2, 6, 5, 3)) * jnp.array([0.5, 1.0, 3.0]) - 2.0
  out = style.adain(content, style_feats)
  assert out.shape == content.shape
  np.testing.assert_allclose(out.mean(axis=(1, 2)), style_feats.mean(axis=(1, 2)), atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(1, 2), ddof=1), style_feats.std(axis=(1, 2), ddof=1), atol=1e-4)


def test_adain_uses_unbiased_variance_plus_eps():
  content = jnp.array([0.0, 2.0]).reshape(1, 2, 1, 1)  # mean 1, unbiased var 2
  style_feats = jnp.array([1.0, 1.0, 4.0, 6.0]).reshape(1, 2, 2, 1)  # mean 3, unbiased var 6
  eps = 0.5
  scale = np.sqrt(6 + eps) / np.sqrt(2 + eps)
  np.testing.assert_allclose(style.adain(content, style_feats, eps).ravel(), [3 - scale, 3 + scale], rtol=1e-6)


def test_adain_of_itself_is_identity_and_mix_interpolates():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 5))
  np.testing.assert_allclose(style.adain(x, x), x, atol=1e-5)
  stylised = x * 3.0 + 1.0
  np.testing.assert_array_equal(style.mix(x, stylised, 0.0), x)
  np.testing.assert_allclose(style.mix(x, stylised, 0.25), 0.25 * stylised + 0.75 * x, rtol=1e-6)
  per_sample = style.mix(x, stylised, jnp.array([0.0, 1.0]))
  np.testing.assert_array_equal(per_sample[0], x[0])
  np.testing.assert_array_equal(per_sample[1], stylised[1])


def test_clip_to_normalised_range_bounds():
  images = jnp.stack([jnp.full((1, 2, 3), -10.0), jnp.full((1, 2, 3), 10.0), jnp.zeros((1, 2, 3))])
  clipped = style.clip_to_normalised_range(images)
  np.testing.assert_allclose(clipped[0, 0, 0], [-2.1179, -2.0357, -1.8044], atol=1e-4)
  np.testing.assert_allclose(clipped[1, 0, 0], [2.2489, 2.4286, 2.64], atol=1e-4)
  np.testing.assert_array_equal(clipped[2], 0.0)


# teacher


def test_ema_update_exact_values_and_alpha_one_keeps_teacher():
  teacher_params = {"conv": {"kernel": jnp.array([1.0, 2.0])}, "bias": jnp.array(10.0)}
  student_params = {"conv": {"kernel": jnp.array([3.0, 4.0])}, "bias": jnp.array(0.0)}
  updated = mean_teacher.ema_update(teacher_params, student_params, alpha=0.9)
  np.testing.assert_allclose(updated["conv"]["kernel"], [1.2, 2.2], rtol=1e-6)
  np.testing.assert_allclose(updated["bias"], 9.0, rtol=1e-6)
  default = mean_teacher.ema_update(teacher_params, student_params)
  np.testing.assert_allclose(default["bias"], 9.99, rtol=1e-6)
  kept = mean_teacher.ema_update(teacher_params, student_params, alpha=1.0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, kept, teacher_params)
