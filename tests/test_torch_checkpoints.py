"""Importing PyTorch pose checkpoints (``dapose_jax.commands.import_checkpoint``): heatmaps equal to PyTorch's for
tllib's PoseResNet and RegDA's PoseResNet2d (with torch), and to a stored PyTorch reference (without), RegDA's two heads,
UDAPE's student/teacher layouts, the ``import`` command's run folder, and one error naming every bad key.

Weights: a ResNet-18 SimpleBaseline of ``configs/demo.py:smoke`` (64 px input, 32 upsampling channels, 16
keypoints), drawn from NumPy's legacy ``RandomState`` (its streams are frozen, NEP 19) and scaled so that the
activations neither vanish nor overflow. ``tests/data/torch_pose_resnet18_heatmaps.npz`` holds PyTorch 2.14's eval-mode float32
heatmaps of ``tllib_state_dict()`` on ``IMAGES``; ``python -m tests.test_torch_checkpoints`` (with torch and
torchvision) writes it again. Tolerance: max |ours - PyTorch's| <= 1e-4 x max |PyTorch's| (measured: 2.5e-6, for
heatmaps up to 78).
"""

import argparse
import functools
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import configs.demo
from dapose_jax import errors, methods, parallel
from dapose_jax.commands import import_checkpoint as tc
from dapose_jax.interop import pose_checkpoints, weights
from dapose_jax.run import finished
from tests import test_weights

FEATURES, KEYPOINTS = 32, 16  # configs/demo.py:smoke
REFERENCE = pathlib.Path(__file__).parent / "data" / "torch_pose_resnet18_heatmaps.npz"
IMAGES = np.random.RandomState(0).randint(0, 256, (2, 64, 64, 3)).astype(np.uint8)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
RELATIVE_TOLERANCE = 1e-4
VARIANTS = {"source_only": "smoke", "regda": "smoke,regda", "mean_teacher": "smoke,mean_teacher"}


def tllib_state_dict(head="simple", seed=0):
  """Random weights under the keys and shapes of tllib's PoseResNet (head="simple") or RegDA's PoseResNet2d
  (head="regda") with a torchvision ResNet-18 backbone (its unused ``fc`` included, as tllib saves it)."""
  shapes = {f"backbone.{key}": value.shape for key, value in test_weights.torchvision_state_dict("resnet18").items()}

  def batch_norm(name, channels):
    shapes.update({f"{name}.{leaf}": (channels,) for leaf in ("weight", "bias", "running_mean", "running_var")})
    shapes[f"{name}.num_batches_tracked"] = ()

  channels = 512
  for i in range(3):
    shapes[f"upsampling.{3 * i}.weight"] = (channels, FEATURES, 4, 4)  # ConvTranspose2d: (in, out, kh, kw)
    batch_norm(f"upsampling.{3 * i + 1}", FEATURES)
    channels = FEATURES
  if head == "simple":
    shapes.update({"head.weight": (KEYPOINTS, FEATURES, 1, 1), "head.bias": (KEYPOINTS,)})
  for name in ("head", "head_adv") if head == "regda" else ():
    shapes.update({f"{name}.0.weight": (FEATURES, FEATURES, 3, 3), f"{name}.0.bias": (FEATURES,)})
    batch_norm(f"{name}.1", FEATURES)
    shapes.update({f"{name}.3.weight": (KEYPOINTS, FEATURES, 1, 1), f"{name}.3.bias": (KEYPOINTS,)})
  rng = np.random.RandomState(seed)
  return {key: _random(rng, key, shape) for key, shape in shapes.items()}


def _random(rng, key, shape):
  if key.endswith("num_batches_tracked"):
    return np.array(7, np.int64)
  if len(shape) == 4:  # He-scaled; a transposed 4x4 / stride-2 convolution sums in x 4 taps per output
    fan_in = shape[0] * 4 if key.startswith("upsampling.") else shape[1] * shape[2] * shape[3]
    value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
  elif key.endswith("running_var"):
    value = rng.uniform(0.5, 2.0, shape)
  elif key.endswith(".weight") and len(shape) == 1:  # a BatchNorm scale
    value = rng.uniform(0.5, 1.5, shape)
  else:  # biases, running means, the classifier
    value = 0.1 * rng.standard_normal(shape)
  return value.astype(np.float32)


@functools.cache
def abstract_state(method):
  """The shapes of a fresh state of ``method`` for its smoke config (all that the import reads of a state)."""
  config = configs.demo.get_config(VARIANTS[method])
  return config, jax.eval_shape(functools.partial(methods.get(method).init, config), jax.random.key(0))


def imported(path, method="source_only", network=None):
  config, state = abstract_state(method)
  return config, pose_checkpoints.load_into_state(path, config, state, network)


def heatmaps(config, state):
  """The method's eval-mode heatmaps of ``IMAGES`` (for a method whose state has no teacher)."""
  return np.asarray(_evaluation(config.method)(state.params, state.batch_stats))


@functools.cache
def _evaluation(method):
  config, state = abstract_state(method)
  return jax.jit(lambda params, batch_stats: methods.get(method).eval_heatmaps(
      config, state.replace(params=params, batch_stats=batch_stats), IMAGES))


def assert_close_to(reference, values):
  assert np.all(np.isfinite(reference)) and np.abs(reference).max() > 0.5
  np.testing.assert_allclose(values, reference, rtol=0, atol=RELATIVE_TOLERANCE * np.abs(reference).max())


def save_npz(path, state_dict):
  np.savez(path, **state_dict)
  return path


def torch_pose_resnet(head):
  """tllib's PoseResNet (head="simple") or RegDA's PoseResNet2d (head="regda") at the smoke size, eval mode."""
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  nn = torch.nn

  def regda_head():
    return nn.Sequential(nn.Conv2d(FEATURES, FEATURES, 3, 1, 1), nn.BatchNorm2d(FEATURES), nn.ReLU(),
                         nn.Conv2d(FEATURES, KEYPOINTS, 1))

  class PoseResNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = torchvision.models.resnet18()
      layers = []
      for channels in (512, FEATURES, FEATURES):
        layers += [nn.ConvTranspose2d(channels, FEATURES, 4, stride=2, padding=1, output_padding=0, bias=False),
                   nn.BatchNorm2d(FEATURES), nn.ReLU()]
      self.upsampling = nn.Sequential(*layers)
      self.head = nn.Conv2d(FEATURES, KEYPOINTS, 1) if head == "simple" else regda_head()
      if head == "regda":
        self.head_adv = regda_head()

    def forward(self, x):  # tllib's backbone: torchvision's ResNet without avgpool and fc
      b = self.backbone
      x = b.layer4(b.layer3(b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x))))))))
      return self.head(self.upsampling(x))

  return PoseResNet().eval()


def torch_heatmaps(head, state_dict, images=IMAGES):
  torch = pytest.importorskip("torch")
  model = torch_pose_resnet(head)
  model.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()}, strict=True)
  x = ((images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32).transpose(0, 3, 1, 2)
  with torch.no_grad():
    return model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)


def test_keys_map_to_the_pytorch_names_of_each_part():
  assert (weights.torch_key(("backbone", "layer2_0", "downsample_bn", "var"))
          == "backbone.layer2.0.downsample.1.running_var")
  assert weights.torch_key(("upsampling", "deconv2", "kernel")) == "upsampling.6.weight"
  assert weights.torch_key(("upsampling", "bn1", "mean")) == "upsampling.4.running_mean"
  assert weights.torch_key(("head", "kernel")) == "head.weight"
  assert weights.torch_key(("head_adv", "bn", "scale")) == "head_adv.1.weight"
  assert weights.torch_key(("head_adv", "conv2", "bias")) == "head_adv.3.bias"


@pytest.mark.parametrize("head, method", [("simple", "source_only"), ("regda", "regda")])
def test_pytorch_and_jax_give_the_same_heatmaps(tmp_path, head, method):
  state_dict = tllib_state_dict(head)
  reference = torch_heatmaps(head, state_dict)
  config, state = imported(save_npz(tmp_path / "model.npz", state_dict), method)
  assert_close_to(reference, heatmaps(config, state))
  if head == "simple":  # the stored reference is what PyTorch computes
    assert_close_to(reference, np.load(REFERENCE)["heatmaps"])


def test_the_stored_pytorch_reference_is_reproduced_without_torch(tmp_path):
  config, state = imported(save_npz(tmp_path / "model.npz", tllib_state_dict()))
  assert_close_to(np.load(REFERENCE)["heatmaps"], heatmaps(config, state))


def test_safetensors_holds_the_same_weights_as_npz(tmp_path):
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  state_dict = tllib_state_dict()
  safetensors_numpy.save_file(state_dict, tmp_path / "model.safetensors")
  _, from_safetensors = imported(tmp_path / "model.safetensors")
  _, from_npz = imported(save_npz(tmp_path / "model.npz", state_dict))
  jax.tree.map(np.testing.assert_array_equal, (from_safetensors.params, from_safetensors.batch_stats),
               (from_npz.params, from_npz.batch_stats))


def test_regda_heads_and_the_transposed_convolution_take_their_tensors(tmp_path):
  state_dict = tllib_state_dict("regda")
  _, state = imported(save_npz(tmp_path / "regda.npz", state_dict), "regda")
  params, stats = jax.device_get((state.params, state.batch_stats))
  np.testing.assert_array_equal(params["upsampling"]["deconv1"]["kernel"],
                                state_dict["upsampling.3.weight"].transpose(2, 3, 0, 1))
  np.testing.assert_array_equal(stats["upsampling"]["bn2"]["mean"], state_dict["upsampling.7.running_mean"])
  for name in ("head", "head_adv"):
    np.testing.assert_array_equal(params[name]["conv1"]["kernel"], state_dict[f"{name}.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bn"]["scale"], state_dict[f"{name}.1.weight"])
    np.testing.assert_array_equal(stats[name]["bn"]["var"], state_dict[f"{name}.1.running_var"])
    np.testing.assert_array_equal(params[name]["conv2"]["bias"], state_dict[f"{name}.3.bias"])
  assert not np.array_equal(params["head"]["conv2"]["bias"], params["head_adv"]["conv2"]["bias"])


def udape_checkpoint(student, teacher):
  """UDAPE's saved layout, flattened: DataParallel-prefixed student and teacher beside the optimiser state."""
  flat = {f"student.module.{key}": value for key, value in student.items()}
  flat.update({f"teacher.module.{key}": value for key, value in teacher.items()})
  flat["stu_optimizer.state.0.exp_avg"] = np.ones(3, np.float32)
  return flat


def test_a_student_and_teacher_checkpoint_fills_both_networks_of_the_mean_teacher(tmp_path):
  student, teacher = tllib_state_dict(seed=1), tllib_state_dict(seed=2)
  path = save_npz(tmp_path / "udape.npz", udape_checkpoint(student, teacher))
  _, mean_teacher = imported(path, "mean_teacher")
  _, alone_student = imported(save_npz(tmp_path / "student.npz", student))
  _, alone_teacher = imported(save_npz(tmp_path / "teacher.npz", teacher))
  same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  same((mean_teacher.params, mean_teacher.batch_stats), (alone_student.params, alone_student.batch_stats))
  same((mean_teacher.teacher_params, mean_teacher.teacher_batch_stats),
       (alone_teacher.params, alone_teacher.batch_stats))
  # a method without a teacher takes the teacher (what UDAPE evaluates), or the network --network names
  _, source_only = imported(path)
  same(source_only.params, alone_teacher.params)
  _, chosen = imported(path, network="student")
  same(chosen.params, alone_student.params)


def test_pth_files_in_the_layouts_tllib_and_udape_save(tmp_path):
  torch = pytest.importorskip("torch")
  tensors = lambda state_dict: {key: torch.from_numpy(value) for key, value in state_dict.items()}
  args = argparse.Namespace(arch="pose_resnet101", resize_scale=(0.6, 1.3))
  regda = tllib_state_dict("regda")
  torch.save({"model": tensors(regda), "optimizer_f": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 3,
              "args": args}, tmp_path / "regda.pth")
  _, from_pth = imported(tmp_path / "regda.pth", "regda")
  _, from_npz = imported(save_npz(tmp_path / "regda.npz", regda), "regda")
  jax.tree.map(np.testing.assert_array_equal, from_pth.params, from_npz.params)

  student, teacher = tllib_state_dict(seed=1), tllib_state_dict(seed=2)
  prefixed = lambda state_dict: {f"module.{key}": value for key, value in tensors(state_dict).items()}
  torch.save({"student": prefixed(student), "teacher": prefixed(teacher), "stu_optimizer": {"state": {}},
              "epoch": 40, "args": args}, tmp_path / "udape.pth")
  _, from_pth = imported(tmp_path / "udape.pth", "mean_teacher")
  _, from_npz = imported(save_npz(tmp_path / "udape.npz", udape_checkpoint(student, teacher)), "mean_teacher")
  jax.tree.map(np.testing.assert_array_equal, (from_pth.params, from_pth.teacher_params),
               (from_npz.params, from_npz.teacher_params))


def test_one_error_names_every_missing_mis_shaped_and_unexpected_key(tmp_path):
  state_dict = tllib_state_dict()
  del state_dict["upsampling.4.running_mean"], state_dict["backbone.layer1.0.conv2.weight"]
  state_dict["head.weight"] = np.zeros((KEYPOINTS - 1, FEATURES, 1, 1), np.float32)
  state_dict["head.extra"] = np.zeros(2, np.float32)
  with pytest.raises(errors.ConfigError) as raised:
    imported(save_npz(tmp_path / "model.npz", state_dict))
  message = str(raised.value)
  assert "missing key upsampling.4.running_mean" in message
  assert "missing key backbone.layer1.0.conv2.weight" in message
  assert "head.weight: checkpoint shape (1, 1, 32, 15)" in message and "model shape (1, 1, 32, 16)" in message
  assert "unexpected key head.extra" in message
  assert "fc." not in message and "num_batches_tracked" not in message  # what tllib saves but no model reads
  assert len(message.splitlines()) == 1 + 4


def test_the_heads_of_the_checkpoint_and_the_method_must_agree(tmp_path):
  with pytest.raises(errors.ConfigError, match="a RegDA checkpoint .* needs config.method=regda") as raised:
    imported(save_npz(tmp_path / "regda.npz", tllib_state_dict("regda")))
  assert "unexpected key head_adv.0.weight" in str(raised.value) and "missing key head.weight" in str(raised.value)
  with pytest.raises(errors.ConfigError, match="single-head checkpoint .* needs a single-head method") as raised:
    imported(save_npz(tmp_path / "simple.npz", tllib_state_dict()), "regda")
  assert "missing key head_adv.3.bias" in str(raised.value) and "unexpected key head.weight" in str(raised.value)


def test_files_that_are_no_checkpoint_are_named(tmp_path, monkeypatch):
  (tmp_path / "notes.npz").write_text("not an archive")
  with pytest.raises(errors.CorruptInputError, match="notes.npz is not a readable .npz checkpoint"):
    imported(tmp_path / "notes.npz")
  with pytest.raises(errors.CorruptInputError, match="holds no pose network"):
    imported(save_npz(tmp_path / "other.npz", {"encoder.weight": np.zeros(3)}))
  with pytest.raises(errors.ConfigError, match="expected a .pth, .pt, .safetensors, .npz file"):
    imported(tmp_path / "weights.txt")
  with pytest.raises(errors.MissingInputError, match="no such file"):
    imported(tmp_path / "gone.pth")
  (tmp_path / "garbage.pth").write_bytes(b"\x00garbage")
  monkeypatch.setitem(sys.modules, "torch", None)  # as where PyTorch is not installed
  with pytest.raises(errors.UserError, match="needs PyTorch"):
    imported(tmp_path / "garbage.pth")


def test_a_damaged_pth_file_is_named(tmp_path):
  pytest.importorskip("torch")
  (tmp_path / "garbage.pth").write_bytes(b"\x00garbage")
  with pytest.raises(errors.CorruptInputError, match="garbage.pth is not a readable .pth checkpoint"):
    imported(tmp_path / "garbage.pth")


def test_the_import_command_writes_a_run_that_evaluate_and_predict_load(tmp_path):
  checkpoint = save_npz(tmp_path / "model.npz", tllib_state_dict())
  run = tmp_path / "run"
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "import", "--config=configs/demo.py:smoke",
                         f"--checkpoint={checkpoint}", f"--workdir={run}"], capture_output=True, text=True,
                        timeout=300, env=env)
  assert done.returncode == 0, done.stderr
  assert f"wrote {run}" in done.stdout
  assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]
  model = finished.load(finished.read_config(run / "config.json"), run, parallel.make_mesh())
  assert model.checkpoint.step == 0 and model.config.method == "source_only"
  assert_close_to(np.load(REFERENCE)["heatmaps"], heatmaps(model.config, model.state))
  with pytest.raises(errors.UserError, match="exists and is not empty"):
    tc.import_run(configs.demo.get_config("smoke"), checkpoint, run)


def write_reference():
  """Writes ``REFERENCE``: PyTorch's heatmaps of ``tllib_state_dict()`` on ``IMAGES`` (needs torch)."""
  REFERENCE.parent.mkdir(exist_ok=True)
  np.savez_compressed(REFERENCE, heatmaps=torch_heatmaps("simple", tllib_state_dict()))
  print(f"wrote {REFERENCE}")


if __name__ == "__main__":
  write_reference()
