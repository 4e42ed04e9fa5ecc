import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dapose_jax.models import pose, resnet
from dapose_jax.models.gradient import reverse_gradient, scale_gradient


def _param_count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _abstract_variables(module, shape=(1, 64, 64, 3)):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))


@pytest.fixture(scope="module")
def regda_net():
  model = pose.PoseNet("resnet18", num_keypoints=5, head="regda")
  return model, pose.init_variables(model, jax.random.key(0), (2, 32, 32, 3))


# torchvision parameter counts minus the fc layer (512*1000+1000 or 2048*1000+1000).
@pytest.mark.parametrize("arch,expected", [("resnet18", 11_176_512), ("resnet34", 21_284_672),
                                           ("resnet50", 23_508_032), ("resnet101", 42_500_160)])
def test_backbone_parameter_count_matches_torchvision(arch, expected):
  variables = _abstract_variables(resnet.get_backbone(arch))
  assert _param_count(variables["params"]) == expected


@pytest.mark.parametrize("arch,channels", [("resnet18", 512), ("resnet50", 2048)])
def test_backbone_output_stride_32_and_channels(arch, channels):
  backbone = resnet.get_backbone(arch)
  variables = _abstract_variables(backbone, (2, 96, 64, 3))
  out = jax.eval_shape(lambda v: backbone.apply(v, jnp.zeros((2, 96, 64, 3)), train=False), variables)
  assert out.shape == (2, 3, 2, channels) and backbone.out_features == channels


def test_bottleneck_is_v1_5_stride_in_3x3():
  params = _abstract_variables(resnet.resnet50(), (1, 64, 64, 3))["params"]
  block = params["layer2_0"]
  assert block["conv1"]["kernel"].shape == (1, 1, 256, 128)
  assert block["conv2"]["kernel"].shape == (3, 3, 128, 128)
  assert block["downsample_conv"]["kernel"].shape == (1, 1, 256, 512)
  assert "downsample_conv" not in params["layer2_1"]


def test_stem_padding_is_symmetric_like_pytorch():
  backbone = resnet.resnet18()
  x = jnp.zeros((1, 32, 32, 3)).at[0, 16, 16, :].set(1.0)
  variables = jax.tree.map(jnp.zeros_like, _abstract_variables(backbone, x.shape))
  variables["params"]["conv1"]["kernel"] = jnp.ones((7, 7, 3, 64))
  apply = jax.jit(lambda v: backbone.apply(v, x, train=False, capture_intermediates=True)[1])
  stem = apply(variables)["intermediates"]["conv1"]["__call__"][0][0, :, :, 0]
  # PyTorch (pad 3): output o sees input rows 2o-3..2o+3, so row 16 reaches o = 7, 8, 9
  # ('SAME' would pad (2, 3) and give 6..9).
  rows, cols = np.nonzero(np.asarray(stem))
  assert sorted(set(rows)) == [7, 8, 9] and sorted(set(cols)) == [7, 8, 9]


def _max_pool_reference(x):
  """PyTorch MaxPool2d(3, 2, 1) by its definition."""
  n, h, w, c = x.shape
  ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  xp = np.full((n, h + 2, w + 2, c), -np.inf, x.dtype)
  xp[:, 1:-1, 1:-1] = x
  out = np.empty((n, ho, wo, c), x.dtype)
  for i in range(ho):
    for j in range(wo):
      out[:, i, j] = xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2))
  return out


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (1, 15, 9, 2)])
def test_max_pool_values_and_gradient_equal_xla_reduce_window(shape):
  # ReLU zeros make many ties; dyadic cotangents make every gradient sum exact.
  x = jax.nn.relu(jax.random.normal(jax.random.key(0), shape))
  xla_pool = lambda x: nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  out = resnet.max_pool_3x3s2(x)
  np.testing.assert_array_equal(out, _max_pool_reference(np.asarray(x)))
  cotangent = jnp.round(jax.random.normal(jax.random.key(1), out.shape) * 8) / 8
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * cotangent))(x)
  np.testing.assert_array_equal(grad(resnet.max_pool_3x3s2), grad(xla_pool))


def test_max_pool_ties_go_to_first_window_element():
  grad = jax.grad(lambda x: jnp.sum(resnet.max_pool_3x3s2(x)))(jnp.zeros((1, 4, 4, 1)))
  expected = np.zeros((4, 4))
  expected[[0, 0, 1, 1], [0, 1, 0, 1]] = 1  # windows start at input rows/cols -1, 1
  np.testing.assert_array_equal(grad[0, :, :, 0], expected)


def _conv_transpose_reference(x, w_pt):
  """PyTorch ConvTranspose2d(4, stride 2, padding 1) by its scatter definition; w_pt (in, out, 4, 4)."""
  n, h, w, _ = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * w + 2, w_pt.shape[1]), np.float64)  # 1-pixel border = padding
  for i in range(h):
    for j in range(w):
      for ky in range(4):
        for kx in range(4):
          out[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w_pt[:, :, ky, kx]
  return out[:, 1:-1, 1:-1]


def test_phase_deconv_matches_pytorch_definition():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
  w_pt = rng.standard_normal((4, 6, 4, 4)).astype(np.float32)
  out = pose.conv_transpose_4x4s2(jnp.asarray(x), jnp.asarray(w_pt.transpose(2, 3, 0, 1)))
  np.testing.assert_allclose(out, _conv_transpose_reference(x, w_pt), atol=1e-5)


def test_the_cpus_phase_deconv_equals_the_transposed_convolution_accelerators_run_in_values_and_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 8))
  kernel = jax.random.normal(jax.random.key(1), (4, 4, 8, 7)) * 0.1
  cotangent = jax.random.normal(jax.random.key(2), (2, 12, 10, 7))

  def reference(x, kernel):
    return lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), ((2, 2), (2, 2)),
                              dimension_numbers=("NHWC", "HWIO", "NHWC"))

  np.testing.assert_allclose(pose.conv_transpose_4x4s2(x, kernel), reference(x, kernel), atol=1e-5)
  grads = lambda f: jax.grad(lambda x, k: jnp.sum(f(x, k) * cotangent), argnums=(0, 1))(x, kernel)
  for ours, ref in zip(grads(pose.conv_transpose_4x4s2), grads(reference)):
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_the_cpus_one_by_one_matrix_product_equals_the_convolution_accelerators_run():
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 8))
  kernel = jax.random.normal(jax.random.key(1), (1, 1, 8, 5))
  for strides in (1, 2):
    ref = lax.conv_general_dilated(x, kernel, (strides, strides), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(resnet.conv2d(x, kernel, strides), ref, atol=1e-5)


@pytest.mark.parametrize("kernel_size,strides,padding", [(3, 1, 1), (3, 2, 1), (7, 2, 3)])
def test_wide_conv_with_matmul_kernel_gradient_equals_lax_conv_and_its_gradients(kernel_size, strides, padding):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 128))  # >= 128 channels: the CPU's matmul kernel gradient
  kernel = 0.05 * jax.random.normal(jax.random.key(1), (kernel_size, kernel_size, 128, 16))
  ref = lambda x, k: lax.conv_general_dilated(x, k, (strides, strides), ((padding, padding), (padding, padding)),
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, k: resnet.conv2d(x, k, strides, padding)
  np.testing.assert_allclose(ours(x, kernel), ref(x, kernel), atol=1e-5)
  cotangent = jax.random.normal(jax.random.key(2), ref(x, kernel).shape)
  loss = lambda f: lambda x, k: jnp.sum(f(x, k) * cotangent)
  for got, want in zip(jax.grad(loss(ours), (0, 1))(x, kernel), jax.grad(loss(ref), (0, 1))(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_scale_gradient_is_identity_with_scaled_gradient():
  x = jnp.array([0.5, -1.0, 2.0])
  f = lambda x: jnp.sum(jnp.sin(x) * x)
  plain = jax.grad(f)(x)

  @jax.jit
  def grads(x, scale):  # traced scale
    return jax.grad(lambda x, s: f(scale_gradient(x, s)), argnums=(0, 1))(x, scale)

  gx, gscale = grads(x, 0.25)
  np.testing.assert_array_equal(gx, 0.25 * plain)
  assert float(gscale) == 0.0
  np.testing.assert_array_equal(scale_gradient(x, 0.25), x)
  np.testing.assert_array_equal(jax.grad(lambda x: f(reverse_gradient(x)))(x), -plain)
  np.testing.assert_array_equal(jax.grad(lambda x: f(reverse_gradient(x, 0.5)))(x), -0.5 * plain)


def test_posenet_outputs_and_parameter_tree(regda_net):
  model, variables = regda_net
  assert set(variables["params"]) == {"backbone", "upsampling", "head", "head_adv"}
  x = jnp.zeros((2, 32, 32, 3))
  out = model.apply(variables, x, train=False)
  assert set(out) == {"heatmaps", "features", "backbone_features"}
  assert out["heatmaps"].shape == (2, 8, 8, 5) and out["heatmaps"].dtype == jnp.float32
  assert out["features"].shape == (2, 8, 8, 256) and out["backbone_features"].shape == (2, 1, 1, 512)
  out = model.apply(variables, x, train=False, adv_grad_scale=0.1)
  assert out["heatmaps_adv"].shape == (2, 8, 8, 5)

  simple = pose.PoseNet("resnet18", num_keypoints=5)
  simple_params = jax.eval_shape(
      lambda: pose.init_variables(simple, jax.random.key(0), (1, 32, 32, 3)))["params"]
  assert set(simple_params) == {"backbone", "upsampling", "head"}
  assert simple_params["head"]["kernel"].shape == (1, 1, 256, 5)


def test_posenet_bfloat16_compute_keeps_float32_params_and_heatmaps():
  model = pose.PoseNet("resnet18", num_keypoints=3, dtype=jnp.bfloat16)
  variables = jax.eval_shape(lambda: pose.init_variables(model, jax.random.key(0), (1, 32, 32, 3)))
  assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), train=False), variables)
  assert out["heatmaps"].dtype == jnp.float32 and out["features"].dtype == jnp.bfloat16


def test_initialisation_follows_torchvision_and_tllib(regda_net):
  params = regda_net[1]["params"]
  kernel = params["backbone"]["layer4_1"]["conv2"]["kernel"]  # fan_out = 9 * 512
  assert float(jnp.std(kernel)) == pytest.approx(np.sqrt(2 / (9 * 512)), rel=0.02)
  assert float(jnp.std(params["upsampling"]["deconv1"]["kernel"])) == pytest.approx(1e-3, rel=0.02)
  assert float(jnp.std(params["head"]["conv1"]["kernel"])) == pytest.approx(1e-3, rel=0.02)
  assert not jnp.any(params["head_adv"]["conv2"]["bias"])
  assert jnp.all(params["backbone"]["bn1"]["scale"] == 1) and not jnp.any(params["backbone"]["bn1"]["bias"])


def test_adversarial_head_gradient_is_scaled_into_shared_layers(regda_net):
  model, variables = regda_net
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))

  @jax.jit
  def grads(params, scale):
    def loss(params):
      out, _ = model.apply({**variables, "params": params}, x, train=True, adv_grad_scale=scale,
                           mutable=["batch_stats"])
      return jnp.sum(out["heatmaps_adv"])
    return jax.grad(loss)(params)

  g1, g_quarter = grads(variables["params"], 1.0), grads(variables["params"], 0.25)
  # The adversarial head itself sees the full gradient, everything below it 0.25 of it.
  for a, b in zip(jax.tree.leaves(g1["head_adv"]), jax.tree.leaves(g_quarter["head_adv"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)
  for a, b in zip(jax.tree.leaves(g1["upsampling"]), jax.tree.leaves(g_quarter["upsampling"])):
    np.testing.assert_allclose(0.25 * a, b, rtol=1e-4, atol=1e-12)
  assert not any(jnp.any(g) for g in jax.tree.leaves(g1["head"]))


def test_batchnorm_uses_pytorch_momentum_and_epsilon():
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2)) * 3 + 1
  bn = resnet.BatchNorm(use_running_average=False)
  variables = bn.init(jax.random.key(0), x)
  y, state = bn.apply(variables, x, mutable=["batch_stats"])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  np.testing.assert_allclose(state["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(state["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)
  np.testing.assert_allclose(y, (x - mean) / jnp.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
