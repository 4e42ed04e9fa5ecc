"""config.model.init: a run starts from a torchvision ResNet file's backbone (no torch needed: the file is written
here in torchvision's layout), records its SHA-256, and refuses a file of another architecture before writing."""

import dataclasses
import functools
import hashlib
import json
import shutil

import jax
import numpy as np
import pytest

from dapose_jax import errors, parallel
from dapose_jax.interop import backbone_init, weights
from dapose_jax.methods import source_only
from dapose_jax.run import finished, loop
from tests.test_train import tiny_config


def torchvision_file(path, config, seed=0):
  """A random state dict in torchvision's names and layout for ``config.model.backbone`` (an ImageNet ``fc``
  included, as the released files have), written as .npz; the arrays in Flax layout by Flax path."""
  state = jax.eval_shape(lambda: source_only.init(config, jax.random.key(0)))
  rng = np.random.default_rng(seed)
  state_dict, flax_arrays = {"fc.weight": np.ones((10, 512), np.float32), "fc.bias": np.ones(10, np.float32)}, {}
  for kind in ("params", "batch_stats"):
    for path_, leaf in jax.tree_util.tree_flatten_with_path(getattr(state, kind)["backbone"])[0]:
      keys = tuple(p.key for p in path_)
      value = rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)  # positive: a valid BatchNorm variance
      flax_arrays[(kind, keys)] = value
      state_dict[weights.torch_key(keys)] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
  state_dict["layer1.0.bn1.num_batches_tracked"] = np.array(7)
  np.savez(path, **state_dict)
  return state_dict, flax_arrays


def frozen_step(config, state, source, target):
  """A train step that changes nothing: the step-1 checkpoint is the state the run started from."""
  return state.replace(step=state.step + 1), {"loss": 1.0}


def resnet18_config(**overrides):
  """The tests' tiny config on torchvision's ResNet-18, whose files these tests imitate."""
  config = tiny_config(**overrides)
  config.model.backbone = "resnet18"
  return config


def one_step_config(**model):
  config = resnet18_config(epochs=1, iters_per_epoch=1, checkpoint_every=1, eval_every=1)
  config.model.update(model)
  return config


def restored(config, workdir):
  return jax.device_get(finished.load(config, workdir / "checkpoints" / "1", parallel.make_mesh()).state)


@pytest.fixture(scope="module")
def init_run(tmp_path_factory):
  """A one-step run from a torchvision-layout file with a train step that changes nothing: (run, file, the file's
  arrays by Flax path, the restored step-1 state)."""
  root = tmp_path_factory.mktemp("init")
  file = root / "resnet18.npz"
  _, expected = torchvision_file(file, resnet18_config())
  config = one_step_config(init=str(file))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(source_only, "METHOD", dataclasses.replace(source_only.METHOD, train_step=frozen_step))
    loop.train_and_evaluate(config, root / "run")
  return root / "run", file, expected, restored(config, root / "run")


def test_a_run_starts_with_the_files_backbone_exactly_and_the_head_of_a_run_without_it(init_run):
  run, file, expected, state = init_run
  for (kind, keys), value in expected.items():
    leaf = getattr(state, kind)["backbone"]
    for key in keys:
      leaf = leaf[key]
    np.testing.assert_array_equal(leaf, value, err_msg=f"{kind} {keys}")
  plain = one_step_config()
  fresh = jax.device_get(jax.jit(functools.partial(source_only.init, plain))(jax.random.key(plain.seed)))
  jax.tree.map(np.testing.assert_array_equal, state.params["head"], fresh.params["head"])
  assert not np.array_equal(state.params["backbone"]["conv1"]["kernel"], fresh.params["backbone"]["conv1"]["kernel"])
  recorded = json.loads((run / "config.json").read_text())["model"]
  assert recorded["init"] == str(file)
  assert recorded["init_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()


def test_a_resume_with_another_file_at_the_same_path_is_refused(init_run, tmp_path):
  run, file, _, _ = init_run
  shutil.copytree(run, tmp_path / "run")
  other = tmp_path / file.name
  torchvision_file(other, resnet18_config(), seed=1)
  with pytest.raises(errors.ConfigError, match=r"differs in: model.init, model.init_sha256\)"):
    loop.train_and_evaluate(one_step_config(init=str(other)), tmp_path / "run")
  shutil.copy(other, file)  # the same path, other contents
  with pytest.raises(errors.ConfigError, match=r"differs in: model.init_sha256\)"):
    loop.train_and_evaluate(one_step_config(init=str(file)), tmp_path / "run")


@pytest.mark.parametrize("change, message", [
    ("reshape", r"layer1.0.conv1.weight has shape \(64, 64, 1, 1\) in the file, \(64, 64, 3, 3\) in the model"),
    ("drop", r"it has no layer4.1.bn2.running_var \(the model's: shape \(512,\)\)"),
    ("add", r"the model has no layer1.2.conv1.weight \(shape \(64, 64, 3, 3\) in the file\)"),
])
def test_a_file_of_another_architecture_stops_before_anything_is_written(tmp_path, change, message):
  file = tmp_path / "resnet18.npz"
  state_dict, _ = torchvision_file(file, resnet18_config())
  if change == "reshape":  # a bottleneck's 1x1 where resnet18 has a 3x3
    state_dict["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  elif change == "drop":
    del state_dict["layer4.1.bn2.running_var"]
  else:  # a third block, as resnet34 has
    state_dict["layer1.2.conv1.weight"] = np.zeros((64, 64, 3, 3), np.float32)
  np.savez(file, **state_dict)
  with pytest.raises(errors.ConfigError, match=f"^config.model.init={file} is not a torchvision resnet18 state dict: "
                     f"{message}$"):
    loop.train_and_evaluate(one_step_config(init=str(file)), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_missing_or_unreadable_file_is_named(tmp_path):
  with pytest.raises(errors.MissingInputError, match=f"config.model.init={tmp_path}/nowhere.pth: no such file; .*"
                     "resnet18-f37072fd.pth"):
    loop.train_and_evaluate(one_step_config(init=str(tmp_path / "nowhere.pth")), tmp_path / "run")
  damaged = tmp_path / "damaged.npz"
  damaged.write_bytes(b"not a zip file")
  with pytest.raises(errors.CorruptInputError, match=f"config.model.init={damaged} is not a readable state dict"):
    loop.train_and_evaluate(one_step_config(init=str(damaged)), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_none_and_empty_name_no_file():
  for value in ("", "none"):
    assert backbone_init.read(one_step_config(init=value), None) is None
