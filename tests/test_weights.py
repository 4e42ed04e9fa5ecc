import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.interop import weights
from dapose_jax.models import pose, resnet

_ARCHS = {"resnet18": (False, (2, 2, 2, 2)), "resnet50": (True, (3, 4, 6, 3))}


def torchvision_state_dict(arch, seed=0):
  """Random state dict with torchvision's key names and shapes, built from the architecture."""
  bottleneck, stage_sizes = _ARCHS[arch]
  rng = np.random.default_rng(seed)
  sd = {}

  def conv(name, out_ch, in_ch, k):
    sd[f"{name}.weight"] = rng.standard_normal((out_ch, in_ch, k, k)).astype(np.float32)

  def bn(name, ch):
    for suffix in ("weight", "bias", "running_mean"):
      sd[f"{name}.{suffix}"] = rng.standard_normal(ch).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, ch).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(100, np.int64)

  conv("conv1", 64, 3, 7)
  bn("bn1", 64)
  in_ch = 64
  for s, num_blocks in enumerate(stage_sizes):
    planes = 64 * 2**s
    out_ch = planes * 4 if bottleneck else planes
    for b in range(num_blocks):
      p = f"layer{s + 1}.{b}"
      if bottleneck:
        conv(f"{p}.conv1", planes, in_ch, 1)
        conv(f"{p}.conv2", planes, planes, 3)
        conv(f"{p}.conv3", out_ch, planes, 1)
        for i, ch in ((1, planes), (2, planes), (3, out_ch)):
          bn(f"{p}.bn{i}", ch)
      else:
        conv(f"{p}.conv1", planes, in_ch, 3)
        conv(f"{p}.conv2", planes, planes, 3)
        bn(f"{p}.bn1", planes)
        bn(f"{p}.bn2", planes)
      if b == 0 and (s > 0 or in_ch != out_ch):
        conv(f"{p}.downsample.0", out_ch, in_ch, 1)
        bn(f"{p}.downsample.1", out_ch)
      in_ch = out_ch
  sd["fc.weight"] = rng.standard_normal((1000, in_ch)).astype(np.float32)
  sd["fc.bias"] = np.zeros(1000, np.float32)
  return sd


def export_torchvision(params, batch_stats):
  """Inverse of the import, written independently: Flax backbone trees -> torchvision names."""
  sd = {}

  def module_name(path):
    names = [p.key for p in path[:-1]]
    names = ["downsample.0" if n == "downsample_conv" else "downsample.1" if n == "downsample_bn"
             else n.replace("_", ".") for n in names]
    return ".".join(names)

  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    leaf = np.asarray(leaf)
    if path[-1].key == "kernel":
      sd[module_name(path) + ".weight"] = leaf.transpose(3, 2, 0, 1)
    else:
      sd[module_name(path) + (".weight" if path[-1].key == "scale" else ".bias")] = leaf
  for path, leaf in jax.tree_util.tree_leaves_with_path(batch_stats):
    sd[module_name(path) + ".running_" + path[-1].key] = np.asarray(leaf)
  return sd


def zero_variables(module, shape=(1, 64, 64, 3), **kwargs):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False, **kwargs))
  return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_import_round_trip_reproduces_every_tensor(arch):
  sd = torchvision_state_dict(arch)
  variables = zero_variables(resnet.get_backbone(arch))
  params, batch_stats = weights.load_torchvision_resnet(
      variables["params"], variables["batch_stats"], sd, module=None)

  np.testing.assert_array_equal(params["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["layer2_0"]["downsample_conv"]["kernel"][0, 0],
                                sd["layer2.0.downsample.0.weight"][:, :, 0, 0].T)
  np.testing.assert_array_equal(batch_stats["layer3_1"]["bn2"]["var"], sd["layer3.1.bn2.running_var"])
  exported = export_torchvision(params, batch_stats)
  expected = {k: v for k, v in sd.items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
  assert set(exported) == set(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_import_into_posenet_replaces_only_the_backbone_and_does_not_mutate():
  model = pose.PoseNet("resnet18", num_keypoints=4)
  variables = zero_variables(model)
  sd = torchvision_state_dict("resnet18")
  params, batch_stats = weights.load_torchvision_resnet(variables["params"], variables["batch_stats"], sd)
  for name in ("upsampling", "head"):
    assert params[name] is variables["params"][name]
  np.testing.assert_array_equal(params["backbone"]["layer4_1"]["bn2"]["scale"], sd["layer4.1.bn2.weight"])
  np.testing.assert_array_equal(batch_stats["backbone"]["bn1"]["mean"], sd["bn1.running_mean"])
  assert not any(jnp.any(a) for a in jax.tree.leaves(variables))  # inputs untouched


def _load_resnet18(sd):
  variables = zero_variables(resnet.resnet18())
  return weights.load_torchvision_resnet(variables["params"], variables["batch_stats"], sd, module=None)


def test_missing_key_is_named():
  sd = torchvision_state_dict("resnet18")
  del sd["layer2.1.bn2.running_var"]
  with pytest.raises(ValueError, match=r"missing key layer2\.1\.bn2\.running_var"):
    _load_resnet18(sd)


def test_unexpected_key_is_named():
  sd = torchvision_state_dict("resnet18")
  sd["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(ValueError, match=r"unexpected key layer5\.0\.conv1\.weight"):
    _load_resnet18(sd)


def test_shape_mismatch_is_named():
  sd = torchvision_state_dict("resnet50")  # a ResNet-50 checkpoint into a ResNet-18
  with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight: checkpoint shape \(1, 1, 64, 64\)"):
    _load_resnet18(sd)


def test_read_state_dict_npz(tmp_path):
  sd = {"conv1.weight": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
        "bn1.bias": np.ones(3, np.float32)}
  np.savez(tmp_path / "w.npz", **sd)
  loaded = weights.read_state_dict(tmp_path / "w.npz")
  assert set(loaded) == set(sd)
  for k in sd:
    np.testing.assert_array_equal(loaded[k], sd[k])


def test_read_state_dict_errors(tmp_path):
  with pytest.raises(ValueError, match="unsupported checkpoint format"):
    weights.read_state_dict(tmp_path / "w.h5")
  if importlib.util.find_spec("safetensors") is None:
    with pytest.raises(ImportError, match="pip install safetensors"):
      weights.read_state_dict(tmp_path / "w.safetensors")
  with pytest.raises(FileNotFoundError, match="w.pth"):
    weights.read_state_dict(tmp_path / "w.pth")
