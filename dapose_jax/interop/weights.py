"""Import torchvision ResNet weights (ImageNet checkpoints) into `dapose_jax.models.resnet`.

Key mapping (torchvision -> Flax, relative to the backbone module):
  `conv1.weight` (O, I, kh, kw)        -> params `conv1/kernel` (kh, kw, I, O)
  `bn1.weight`, `bn1.bias`             -> params `bn1/scale`, `bn1/bias`
  `bn1.running_mean`, `.running_var`   -> batch_stats `bn1/mean`, `bn1/var`
  `layer2.0.downsample.0` / `.1`       -> `layer2_0/downsample_conv` / `downsample_bn`
`num_batches_tracked` and `fc.*` are ignored.
"""

import os
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dapose_jax.interop import torch_reader

_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)
_FLAX_TO_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias",
                       "mean": "running_mean", "var": "running_var"}
_FLAX_TO_TORCH_MODULE = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}


def torch_key(flax_path) -> str:
  """torchvision state-dict key of a Flax leaf path such as ("layer1_0", "bn1", "mean")."""
  *modules, leaf = flax_path
  parts = [_FLAX_TO_TORCH_MODULE.get(m, m.replace("_", ".")) for m in modules]
  return ".".join(parts + [_FLAX_TO_TORCH_LEAF[leaf]])


def _to_flax(name, value, target_shape):
  value = np.asarray(value)
  if value.ndim == 4:  # conv (O, I, kh, kw) -> (kh, kw, I, O)
    value = value.transpose(2, 3, 1, 0)
  if value.shape != tuple(target_shape):
    return None, (f"{name}: checkpoint shape {value.shape} (after transpose) "
                  f"!= model shape {tuple(target_shape)}")
  return value, None


def load_torchvision_resnet(params, batch_stats, state_dict: Mapping[str, np.ndarray],
                            module: Optional[str] = "backbone"):
  """New (params, batch_stats) with the ResNet at top-level `module` taken from `state_dict`.

  `state_dict` maps torchvision names to arrays (see `read_state_dict`). Use
  module=None when `params` / `batch_stats` are those of a bare ResNet. Raises
  ValueError listing every missing key, unexpected key and shape mismatch.
  """
  sub_params = params[module] if module else params
  sub_stats = batch_stats[module] if module else batch_stats
  new_params, new_stats, found = convert_tree(sub_params, sub_stats, state_dict, torch_key)
  problems = ([f"missing key {k}" for k in found["missing"]] + found["mis-shaped"]
              + [f"unexpected key {k}" for k in found["unexpected"]])
  if problems:
    raise ValueError("torchvision state dict does not match the model:\n  " + "\n  ".join(problems))
  if module:
    return {**params, module: new_params}, {**batch_stats, module: new_stats}
  return new_params, new_stats


def convert_tree(params, batch_stats, state_dict, key_of, where="", prepare=None,
                 ignored_prefixes=_IGNORED_PREFIXES):
  """New (params, batch_stats) with each leaf taken from ``state_dict[key_of(flax_path)]`` (``prepare(flax_path,
  array)`` first when given, then ``_to_flax``), and the problems found: {"missing": keys, "mis-shaped": messages,
  "unexpected": keys}, each naming its key after ``where``; a leaf with a problem is left as it was. Keys ending
  in ``.num_batches_tracked`` or starting with one of ``ignored_prefixes`` are never unexpected."""
  used, problems = set(), {"missing": [], "mis-shaped": [], "unexpected": []}

  def convert(path, leaf):
    flax_path = tuple(p.key for p in path)
    name = key_of(flax_path)
    if name not in state_dict:
      problems["missing"].append(f"{where}{name}")
      return leaf
    used.add(name)
    value = np.asarray(state_dict[name])
    value, error = _to_flax(f"{where}{name}", prepare(flax_path, value) if prepare else value, leaf.shape)
    if error:
      problems["mis-shaped"].append(error)
      return leaf
    return jnp.asarray(value, leaf.dtype)

  new_params = jax.tree_util.tree_map_with_path(convert, params)
  new_stats = jax.tree_util.tree_map_with_path(convert, batch_stats)
  problems["unexpected"] = [f"{where}{k}" for k in sorted(state_dict) if k not in used
                            and not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(ignored_prefixes)]
  return new_params, new_stats, problems


def read_state_dict(path) -> dict[str, np.ndarray]:
  """Read a state dict from `.npz`, `.safetensors` (needs safetensors) or `.pth`/`.pt`/`.pth.tar` (with torch when it
  is installed, else `torch_reader`); a state dict nested in a checkpoint dict comes back with dotted keys."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  if ext == ".safetensors":
    try:
      from safetensors.numpy import load_file
    except ImportError as e:
      raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors") from e
    return load_file(path)
  if ext in (".pth", ".pt", ".tar"):  # .tar: a checkpoint saved as .pth.tar
    try:
      import torch
    except ImportError:
      return torch_reader.read(path)
    return torch_reader.flatten(torch.load(path, map_location="cpu", weights_only=True))
  raise ValueError(f"unsupported checkpoint format {ext!r} ({path}); "
                   "expected .npz, .safetensors, .pth, .pt or .pth.tar")
