import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.pose import losses


def test_heatmap_mse_half_squared_error_weighted_mean_over_all_keypoints():
  pred = jnp.ones((2, 4, 4, 2))
  target = jnp.zeros((2, 4, 4, 2))
  weight = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  # every pixel of keypoint 0 contributes 0.5, keypoint 1 contributes 0; the mean counts both
  assert float(losses.heatmap_mse(pred, target, weight)) == pytest.approx(0.25)


def test_heatmap_kl_matches_hand_computed_value():
  pred = jnp.zeros((1, 2, 2, 1))
  target = jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(1.0)
  # t = (1, 0, 0, 0), p uniform: KL = log 4
  assert float(losses.heatmap_kl(pred, target, jnp.ones((1, 1)))) == pytest.approx(np.log(4.0), rel=1e-6)
  eps = 1e-7
  t = (np.array([1, 0, 0, 0]) + eps) / (1 + 4 * eps)
  expected = float(np.sum(t * (np.log(t) - np.log(0.25))))
  got = float(losses.heatmap_kl(pred, target, jnp.ones((1, 1)), epsilon=eps))
  assert got == pytest.approx(expected, rel=1e-5)


def test_heatmap_kl_equals_reference_formula_on_random_maps():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 8, 8, 4)).astype(np.float32)
  target = rng.uniform(size=(3, 8, 8, 4)).astype(np.float32)
  weight = rng.uniform(size=(3, 4)).astype(np.float32)
  lp = logits.transpose(0, 3, 1, 2).reshape(3, 4, -1)
  lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
  t = target.transpose(0, 3, 1, 2).reshape(3, 4, -1)
  t = t / t.sum(-1, keepdims=True)
  expected = np.mean((t * (np.log(t) - lp)).sum(-1) * weight)
  got = losses.heatmap_kl(jnp.asarray(logits), jnp.asarray(target), jnp.asarray(weight))
  assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_heatmap_kl_zero_target_rows_contribute_zero_with_finite_gradients():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(2, 8, 8, 3)).astype(np.float32))
  target = jnp.asarray(rng.uniform(size=(2, 8, 8, 3)).astype(np.float32))
  target = target.at[:, :, :, 1].set(0.0)  # keypoint 1 out of the crop: all-zero target
  weight = jnp.ones((2, 3))
  full = losses.heatmap_kl(logits, target, weight)
  only_nonzero = losses.heatmap_kl(logits[..., ::2], target[..., ::2], weight[:, ::2])
  # the zero row adds 0 to the sum, but still counts in the mean over B*K (3 keypoints vs 2)
  assert float(full) == pytest.approx(float(only_nonzero) * 2 / 3, rel=1e-6)
  grad = jax.grad(losses.heatmap_kl)(logits, target, weight)
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.abs(grad[..., 1]).max()) == 0.0
  assert float(jnp.abs(grad[..., 0]).max()) > 0.0


def test_heatmap_kl_gradient_is_softmax_minus_target():
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(1, 4, 4, 1)).astype(np.float32))
  target = jnp.asarray(rng.uniform(size=(1, 4, 4, 1)).astype(np.float32))
  grad = jax.grad(losses.heatmap_kl)(logits, target, jnp.ones((1, 1)))
  p = jax.nn.softmax(logits.reshape(-1))
  t = target.reshape(-1) / target.sum()
  np.testing.assert_allclose(np.asarray(grad).reshape(-1), np.asarray(p - t), atol=1e-6)
