"""A fresh run's backbone from a torchvision ResNet state dict (``config.model.init``): the references' ImageNet
start. Read and checked before a run writes anything, recorded by its SHA-256, put into the state of a method that
declares ``Method.backbone_init`` (source-only, hence every method's stage 1) only when the run starts, never
on a resume. The head keeps its own initialisation; ``fc.*`` of the file is not used."""

import dataclasses
import hashlib
import pathlib

from dapose_jax import errors
from dapose_jax.config import defaults
from dapose_jax.interop import weights

BACKBONE = "backbone"


@dataclasses.dataclass(frozen=True)
class Initial:
  """The backbone's params and BatchNorm statistics of a file, and the file's SHA-256."""
  params: dict
  batch_stats: dict
  sha256: str


def sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def read(config, abstract_state):
  """The ``Initial`` of ``config.model.init`` for a state shaped as ``abstract_state`` (its ``params`` and
  ``batch_stats`` hold the backbone), or None when it names no file. One line names a missing or unreadable file,
  or the first key whose shape differs (both shapes) or that only one side has."""
  path = defaults.named_file(config.model.init)
  if not path:
    return None
  key = f"config.model.init={path}"
  example = defaults.TORCHVISION_FILES.get(config.model.backbone, "resnet101-63fe2227.pth")
  state_dict = weights.read_named(path, key, missing_hint=f"; name a torchvision ResNet state dict such as {example}")
  path = pathlib.Path(path).expanduser()
  params, stats = abstract_state.params[BACKBONE], abstract_state.batch_stats[BACKBONE]
  params, stats, mismatches = weights.convert_tree(params, stats, state_dict, weights.torch_key)
  if mismatches:
    raise errors.ConfigError(f"{key} is not a torchvision {config.model.backbone} state dict: "
                             f"{_described(mismatches[0])}")
  return Initial(params, stats, sha256(path))


def _described(mismatch):
  """A ``weights.Mismatch`` in words, its shapes in PyTorch's layout."""
  if mismatch.kind == "missing":
    return f"it has no {mismatch.key} (the model's: shape {_torch_shape(mismatch.model_shape)})"
  if mismatch.kind == "mis-shaped":
    return (f"{mismatch.key} has shape {_torch_shape(mismatch.file_shape)} in the file, "
            f"{_torch_shape(mismatch.model_shape)} in the model")
  return f"the model has no {mismatch.key} (shape {mismatch.file_shape} in the file)"


def _torch_shape(flax_shape):
  """A Flax conv kernel (kh, kw, I, O) is torch's (O, I, kh, kw)."""
  if len(flax_shape) == 4:
    kh, kw, i, o = flax_shape
    return (o, i, kh, kw)
  return flax_shape


def apply(state, initial):
  """``state`` with the backbone of ``initial`` (None: unchanged)."""
  if initial is None:
    return state
  return state.replace(params={**state.params, BACKBONE: initial.params},
                       batch_stats={**state.batch_stats, BACKBONE: initial.batch_stats})
