"""Published PyTorch pose checkpoints (tllib's PoseResNet, RegDA's PoseResNet2d, UDAPE's or DAML's student and
teacher) into the pose networks of a method's state.

Files: ``.pth`` / ``.pt`` (``torch.save``, read as ``weights.read_state_dict`` reads them), ``.safetensors``
(needs the safetensors package) and ``.npz``; the last two are flat {key: array} maps. Layouts: a bare state dict;
``{"model": state dict, ...}`` (tllib's source_only.py, erm.py, regda.py, and RegDA's stage 1; ``"state_dict"``
is read the same); ``{"student": ..., "teacher": ..., ...}`` (UDAPE's train_human.py and train_animal.py). In a
flat file these are the keys ``model.backbone.conv1.weight``, ``teacher.head.bias``, ... Entries beside the
networks (optimiser and scheduler states, ``epoch``, ``args``) are ignored, and so are a ``module.`` prefix
(``torch.nn.DataParallel``, as UDAPE saves), ``backbone.fc.*`` (tllib's backbones keep torchvision's unused
classifier) and ``num_batches_tracked``.

The keys map to our PoseNet (``models/pose.py``) as ``weights.torch_key`` says. The transposed convolution's
kernel (``upsampling.{3i}.weight``, (in, out, 4, 4)) is only transposed to (4, 4, in, out), not flipped:
``conv_transpose_4x4s2`` flips it itself.

Which network goes where: a method with a teacher (mean_teacher, daml) gets the checkpoint's student as its
student and its teacher as its teacher (a single ``model`` as both); a method without one gets the ``model``, or
else the teacher (the network UDAPE evaluates). ``network`` puts one named network everywhere instead, e.g.
``student`` for UDAPE's stage-1 ``best_pt``, whose teacher is untrained.
"""

import logging
import pathlib

import numpy as np

from dapose_jax import errors
from dapose_jax.interop import weights

log = logging.getLogger("dapose_jax")

FORMATS = (".pth", ".pt", ".safetensors", ".npz")
NETWORK_NAMES = ("model", "student", "teacher")  # how the checkpoints name their networks
_ALIASES = {"state_dict": "model"}
# a state's pose networks: (its parameter field, its BatchNorm statistics field), and the checkpoint networks it
# takes, in order of preference, with and without a teacher in the state
_STATE_NETWORKS = {"student": ("params", "batch_stats"), "teacher": ("teacher_params", "teacher_batch_stats")}
_PREFERENCES = {"student": ("student", "model", "teacher"), "teacher": ("teacher", "model", "student"),
                "alone": ("model", "teacher", "student")}
_IGNORED_PREFIXES = ("backbone.fc.",)
_MAX_LISTED = 20  # problems named per kind in an error; the rest are counted


def read_checkpoint(path) -> dict[str, np.ndarray]:
  """The arrays of a checkpoint file as one flat map, nested dicts joined with '.' (``student.backbone.bn1.bias``)."""
  path = pathlib.Path(path).expanduser()
  if path.suffix.lower() not in FORMATS:
    raise errors.ConfigError(f"--checkpoint {path}: expected a {', '.join(FORMATS)} file")
  return weights.read_named(path, f"--checkpoint {path}", what=f"{path.suffix} checkpoint")


def networks(flat):
  """{network name: state dict} of a flat checkpoint map: its ``model`` / ``student`` / ``teacher`` entries, or
  the whole map as ``model`` when it has none; a ``module.`` prefix on every key of one is dropped."""
  def name_of(key):
    head = key.split(".", 1)[0]
    return _ALIASES.get(head, head)

  grouped = any(name_of(key) in NETWORK_NAMES for key in flat)
  found = {}
  for key, value in flat.items():
    if grouped:
      name, key = name_of(key), key.split(".", 1)[-1]
      if name not in NETWORK_NAMES:
        continue
    else:
      name = "model"
    found.setdefault(name, {})[key] = value
  for name, state_dict in found.items():
    if all(key.startswith("module.") for key in state_dict):
      found[name] = {key.removeprefix("module."): value for key, value in state_dict.items()}
  if grouped:
    ignored = sorted({key.split(".", 1)[0] for key in flat if name_of(key) not in NETWORK_NAMES})
    if ignored:
      log.info("ignored the checkpoint's %s (not networks)", ", ".join(ignored))
  return found


def _is_transposed_convolution(flax_path):
  return flax_path[0] == "upsampling" and flax_path[1].startswith("deconv")


def convert_network(params, batch_stats, state_dict, where):
  """New (params, batch_stats) of one PoseNet from a PyTorch ``state_dict``, and the mismatches found
  (``weights.Mismatch``, each naming the key and ``where``: the checkpoint network it comes from); the trees are
  unchanged where there are some."""
  return weights.convert_tree(params, batch_stats, state_dict, weights.torch_key, where, prepare=_as_convolution,
                              ignored_prefixes=_IGNORED_PREFIXES)


def _as_convolution(flax_path, value):
  if _is_transposed_convolution(flax_path) and value.ndim == 4:
    return value.swapaxes(0, 1)  # ConvTranspose2d (in, out, kh, kw): the (out, in, kh, kw) of a Conv2d
  return value


def load_into_state(path, config, state, network=None):
  """``state`` (a fresh state of ``config.method``, or its ``jax.eval_shape``: only the shapes of its networks are
  read) with its pose network(s) taken from the checkpoint file ``path``; ``network`` (one of ``NETWORK_NAMES``)
  picks one checkpoint network for all of them. Raises a ``ConfigError`` naming every missing, mis-shaped and
  unexpected key."""
  return with_networks(networks(read_checkpoint(path)), path, config, state, network)


def with_networks(found, path, config, state, network=None):
  """``load_into_state`` of the ``networks`` found in the checkpoint file ``path``."""
  roles = [role for role, (field, _) in _STATE_NETWORKS.items() if hasattr(state, field)]
  mismatches = []
  replaced, chosen = {}, {}
  for role in roles:
    params_field, stats_field = _STATE_NETWORKS[role]
    wanted = (network,) if network else _PREFERENCES[role if "teacher" in roles else "alone"]
    source = next((name for name in wanted if name in found), None)
    if source is None:
      raise errors.ConfigError(f"{path} has no {' or '.join(wanted)} network (it has {', '.join(sorted(found))}); "
                               f"choose one with --network")
    state_dict = found[source]
    if not any(key.startswith(("backbone.", "upsampling.", "head.")) for key in state_dict):
      sample = ", ".join(sorted(state_dict)[:3])
      raise errors.CorruptInputError(f"{path} holds no pose network (backbone.*, upsampling.*, head.*): its "
                                     f"{source} keys are {sample}, ...")
    where = "" if len(found) == 1 else f"{source}."
    params, stats, found_mismatches = convert_network(getattr(state, params_field), getattr(state, stats_field),
                                                      state_dict, where)
    mismatches += [m for m in found_mismatches if m not in mismatches]
    replaced.update({params_field: params, stats_field: stats})
    chosen[role] = source
  if mismatches:
    raise errors.ConfigError(_mismatch_message(path, config, mismatches))
  log.info("imported %s into %s: %s", path, config.method,
           ", ".join(f"{role} <- {source}" for role, source in chosen.items()))
  return state.replace(**replaced)


def _mismatch_message(path, config, mismatches):
  by_kind = {kind: [m for m in mismatches if m.kind == kind] for kind in weights.Mismatch.KINDS}
  hint = "fix those keys of the config or give the checkpoint they were trained with"
  if any(".head_adv." in f".{m.key}" for m in by_kind["unexpected"]):
    hint = "a RegDA checkpoint (head_adv.*) needs config.method=regda"
  elif any(".head_adv." in f".{m.key}" for m in by_kind["missing"]):
    hint = "a single-head checkpoint (tllib's PoseResNet) needs a single-head method, e.g. config.method=source_only"
  lines = [f"{path} does not match the model of this config (method {config.method}, backbone "
           f"{config.model.backbone}, upsampling width {config.model.upsampling_features}, keypoint set "
           f"{config.source.keypoint_set}): {hint}"]
  for kind, listed in by_kind.items():
    lines += [f"  {kind} key {item}" for item in listed[:_MAX_LISTED]]
    if len(listed) > _MAX_LISTED:
      lines.append(f"  ... and {len(listed) - _MAX_LISTED} more {kind} keys")
  return "\n".join(lines)
