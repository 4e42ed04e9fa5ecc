"""Import PyTorch weights into our Flax networks: the one reader of state-dict files, the key map of torchvision's
ResNet (`dapose_jax.models.resnet`) and of tllib's pose networks (`dapose_jax.models.pose`), and the conversion that
names every key the two sides do not share alike.

Key mapping (torchvision -> Flax, relative to the backbone module):
  `conv1.weight` (O, I, kh, kw)        -> params `conv1/kernel` (kh, kw, I, O)
  `bn1.weight`, `bn1.bias`             -> params `bn1/scale`, `bn1/bias`
  `bn1.running_mean`, `.running_var`   -> batch_stats `bn1/mean`, `bn1/var`
  `layer2.0.downsample.0` / `.1`       -> `layer2_0/downsample_conv` / `downsample_bn`
`num_batches_tracked` and `fc.*` are ignored. A PoseNet's `backbone.*` is such a ResNet; its other parts:
  `upsampling.{3i}.*` (ConvTranspose2d)  -> `upsampling/deconv{i}`
  `upsampling.{3i+1}.*` (BatchNorm)      -> `upsampling/bn{i}`
  `head.weight`, `head.bias`             -> `head/kernel`, `head/bias`
  `head.0` / `head.1` / `head.3` (RegDA) -> `head/conv1` / `head/bn` / `head/conv2`; `head_adv` alike
"""

import argparse
import os
import pathlib
import pickle
import re
import zipfile
from typing import Mapping, NamedTuple, Optional

import numpy as np

from dapose_jax import errors
from dapose_jax.interop import torch_reader

_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)
_FLAX_TO_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias",
                       "mean": "running_mean", "var": "running_var"}
_FLAX_TO_TORCH_MODULE = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
# how to write a file that ``read_state_dict`` reads
WRITE_FIX = "give numeric arrays: np.savez(path, **{key: np.asarray(tensor)}), a .safetensors file or torch.save's .pth"
_REGDA_HEAD_LAYERS = {"conv1": "0", "bn": "1", "conv2": "3"}  # tllib _make_head(2): Conv, BN, ReLU, Conv


def torch_key(flax_path) -> str:
  """The PyTorch state-dict key of a Flax leaf path of a ResNet, such as ("layer1_0", "bn1", "mean") ->
  "layer1.0.bn1.running_mean", or of a PoseNet, such as ("upsampling", "bn1", "mean") -> "upsampling.4.running_mean"
  (see the module docstring)."""
  *modules, leaf = flax_path
  top = modules[0] if modules else None
  if top == "upsampling":
    kind, index = re.fullmatch(r"(deconv|bn)(\d+)", modules[1]).groups()
    parts = [top, str(3 * int(index) + (kind == "bn"))]
  elif top in ("head", "head_adv"):
    parts = [top] + [_REGDA_HEAD_LAYERS[m] for m in modules[1:]]
  else:
    parts = [_FLAX_TO_TORCH_MODULE.get(m, m.replace("_", ".")) for m in modules]
  return ".".join(parts + [_FLAX_TO_TORCH_LEAF[leaf]])


def _to_flax(value):
  """A PyTorch array in Flax's layout: a conv kernel (O, I, kh, kw) as (kh, kw, I, O), anything else as it is."""
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def load_torchvision_resnet(params, batch_stats, state_dict: Mapping[str, np.ndarray],
                            module: Optional[str] = "backbone"):
  """New (params, batch_stats) with the ResNet at top-level `module` taken from `state_dict`.

  `state_dict` maps torchvision names to arrays (see `read_state_dict`). Use
  module=None when `params` / `batch_stats` are those of a bare ResNet. Raises
  ValueError listing every missing key, unexpected key and shape mismatch.
  """
  sub_params = params[module] if module else params
  sub_stats = batch_stats[module] if module else batch_stats
  new_params, new_stats, mismatches = convert_tree(sub_params, sub_stats, state_dict, torch_key)
  if mismatches:
    problems = [f"{kind} key {m}" if kind != "mis-shaped" else str(m)
                for kind in Mismatch.KINDS for m in mismatches if m.kind == kind]
    raise ValueError("torchvision state dict does not match the model:\n  " + "\n  ".join(problems))
  if module:
    return {**params, module: new_params}, {**batch_stats, module: new_stats}
  return new_params, new_stats


class Mismatch(NamedTuple):
  """A key that a model and a state dict do not share alike: one of ``KINDS``, the key, and its shape in the file
  (in Flax's layout where the model has the key) and in the model, None on the side that lacks it."""
  kind: str
  key: str
  file_shape: Optional[tuple]
  model_shape: Optional[tuple]

  KINDS = ("missing", "mis-shaped", "unexpected")

  def __str__(self):
    """The key, and for a mis-shaped one both shapes."""
    if self.kind != "mis-shaped":
      return self.key
    return f"{self.key}: checkpoint shape {self.file_shape} (after transpose) != model shape {self.model_shape}"


def convert_tree(params, batch_stats, state_dict, key_of, where="", prepare=None,
                 ignored_prefixes=_IGNORED_PREFIXES):
  """New (params, batch_stats) with each leaf taken from ``state_dict[key_of(flax_path)]`` (``prepare(flax_path,
  array)`` first when given, then ``_to_flax``), and the mismatches found (``Mismatch``, each naming its key after
  ``where``): the missing and mis-shaped keys in the order of the leaves, then the unexpected ones sorted; a leaf
  with a problem is left as it was. Keys ending in ``.num_batches_tracked`` or starting with one of
  ``ignored_prefixes`` are never unexpected."""
  import jax  # here, not at the top: the import command's --help reads pose_checkpoints, which must not load JAX
  import jax.numpy as jnp

  used, mismatches = set(), []

  def convert(path, leaf):
    flax_path = tuple(p.key for p in path)
    name = key_of(flax_path)
    if name not in state_dict:
      mismatches.append(Mismatch("missing", f"{where}{name}", None, tuple(leaf.shape)))
      return leaf
    used.add(name)
    value = np.asarray(state_dict[name])
    value = _to_flax(prepare(flax_path, value) if prepare else value)
    if value.shape != tuple(leaf.shape):
      mismatches.append(Mismatch("mis-shaped", f"{where}{name}", value.shape, tuple(leaf.shape)))
      return leaf
    return jnp.asarray(value, leaf.dtype)

  new_params = jax.tree_util.tree_map_with_path(convert, params)
  new_stats = jax.tree_util.tree_map_with_path(convert, batch_stats)
  mismatches += [Mismatch("unexpected", f"{where}{k}", tuple(np.shape(state_dict[k])), None)
                 for k in sorted(state_dict) if k not in used
                 and not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(ignored_prefixes)]
  return new_params, new_stats, mismatches


def read_state_dict(path) -> dict[str, np.ndarray]:
  """Read a state dict from `.npz`, `.safetensors` (needs safetensors) or `.pth`/`.pt`/`.pth.tar` (with torch when it
  is installed, else `torch_reader`); the tensors of nested dicts (a checkpoint such as {"model": state dict,
  "teacher": ..., "epoch": 3}) come back under dotted keys (`model.backbone.conv1.weight`), other values are
  dropped. Besides tensors, a PyTorch file may hold only the `argparse.Namespace` of its training arguments."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    return _read_npz(path)
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
    return torch_reader.flatten(_torch_load(torch, path))
  raise ValueError(f"unsupported checkpoint format {ext!r} ({path}); "
                   "expected .npz, .safetensors, .pth, .pt or .pth.tar")


def _read_npz(path):
  """The arrays of an ``np.savez`` file; a ValueError that says why for a file that is no such archive or holds an
  object array (which only a pickle could read)."""
  if not zipfile.is_zipfile(path):
    raise ValueError("not an .npz archive (np.savez writes one)")
  with np.load(path, allow_pickle=False) as data:
    arrays = {}
    for key in data.files:
      try:
        arrays[key] = data[key]
      except ValueError:  # an object array
        raise ValueError(f"array {key!r} holds Python objects, not numbers") from None
    return arrays


def read_named(path, key, what="state dict", missing_hint=""):
  """``read_state_dict`` of a file that a user named as ``key`` (e.g. ``config.model.init=PATH``): one line naming
  ``key`` for a missing file, a reader package that is not installed, or a file that is no readable ``what``."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise errors.MissingInputError(f"{key}: no such file{missing_hint}")
  try:
    return read_state_dict(path)
  except ImportError as error:
    raise errors.MissingInputError(f"{key}: {error}") from None
  except errors.UserError:
    raise
  except Exception as error:  # noqa: BLE001  a damaged or foreign file: the readers' messages do not name it
    raise errors.CorruptInputError(f"{key} is not a readable {what} ({errors.one_line(error)}); {WRITE_FIX}") \
        from None


def _torch_load(torch, path):
  """What ``torch.load`` reads of ``path`` with ``weights_only=True`` and the training arguments allowed."""
  # tllib and UDAPE save their argparse.Namespace beside the weights; nothing else needs to be unpickled
  with torch.serialization.safe_globals([argparse.Namespace]):
    try:
      return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
      reason = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), None)
      if reason is None:
        raise
      raise errors.CorruptInputError(
          f"{path} holds more than tensors and the training arguments ({reason}); if you trust the file, save its "
          "state dicts alone with torch.save and import that") from None
