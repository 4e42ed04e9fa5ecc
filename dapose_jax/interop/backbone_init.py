"""A fresh run's backbone from a torchvision ResNet state dict (``config.model.init``): the references' ImageNet
start. Read and checked before a run writes anything, recorded by its SHA-256, put into the state of a method that
declares ``Method.backbone_init`` (source-only, hence every method's stage 1) only when the run starts, never
on a resume. The head keeps its own initialisation; ``fc.*`` of the file is not used."""

import dataclasses
import hashlib
import pathlib

import jax
import numpy as np

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
  if not pathlib.Path(path).expanduser().is_file():
    raise errors.MissingInputError(f"{key}: no such file; name a torchvision ResNet state dict such as "
                                   f"{defaults.TORCHVISION_FILES.get(config.model.backbone, 'resnet101-63fe2227.pth')}")
  path = pathlib.Path(path).expanduser()
  try:
    state_dict = weights.read_state_dict(path)
  except ImportError as error:
    raise errors.MissingInputError(f"{key}: {error}") from None
  except Exception as error:  # a damaged or foreign file: the readers' own messages do not name it
    raise errors.CorruptInputError(f"{key} cannot be read as a state dict ({type(error).__name__}: {error})") from None
  params, stats = abstract_state.params[BACKBONE], abstract_state.batch_stats[BACKBONE]
  _check_matches(key, config.model.backbone, params, stats, state_dict)
  params, stats, problems = weights.convert_tree(params, stats, state_dict, weights.torch_key)
  assert not any(problems.values()), problems  # _check_matches found each of them
  return Initial(params, stats, sha256(path))


def _check_matches(key, backbone, params, stats, state_dict):
  used = set()
  for tree in (params, stats):
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      name = weights.torch_key(tuple(p.key for p in path))
      expected = tuple(leaf.shape)
      if name not in state_dict:
        raise errors.ConfigError(f"{key} is not a torchvision {backbone} state dict: it has no {name} (the model's: "
                                 f"shape {_torch_shape(expected)})")
      used.add(name)
      got = tuple(np.shape(state_dict[name]))
      if got != _torch_shape(expected):
        raise errors.ConfigError(f"{key} is not a torchvision {backbone} state dict: {name} has shape {got} in the "
                                 f"file, {_torch_shape(expected)} in the model")
  extra = [k for k in state_dict if k not in used and not k.endswith(".num_batches_tracked")
           and not k.startswith("fc.")]
  if extra:
    raise errors.ConfigError(f"{key} is not a torchvision {backbone} state dict: the model has no {extra[0]} "
                             f"(shape {tuple(np.shape(state_dict[extra[0]]))} in the file)")


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
