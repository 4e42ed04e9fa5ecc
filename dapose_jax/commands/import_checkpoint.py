"""The ``import`` command: a published PyTorch pose checkpoint (tllib's PoseResNet, RegDA's PoseResNet2d, UDAPE's
or DAML's student and teacher) as a run folder that ``evaluate`` and ``predict`` read.

  python -m dapose_jax.commands.import_checkpoint --config=configs/surreal_lsp.py:regda --checkpoint=best.pth
      --workdir=runs/regda_published [--network=student|teacher|model]

(also ``dapose-jax import ...``). The config names the model (backbone, upsampling width, keypoint set) and the
method, whose state takes the weights: a ``head.*``-only checkpoint (tllib ``PoseResNet``) needs a single-head
method (source_only), a ``head.*`` + ``head_adv.*`` one (RegDA ``PoseResNet2d``) the method regda.

Files: ``.pth`` / ``.pt`` (``torch.save``; reading needs PyTorch, loaded with ``weights_only=True``),
``.safetensors`` (needs the safetensors package) and ``.npz``; the last two are flat {key: array} maps. Layouts:
a bare state dict; ``{"model": state dict, ...}`` (tllib's source_only.py, erm.py, regda.py, and RegDA's stage 1;
``"state_dict"`` is read the same); ``{"student": ..., "teacher": ..., ...}`` (UDAPE's train_human.py and
train_animal.py). In a flat file these are the keys ``model.backbone.conv1.weight``, ``teacher.head.bias``, ...
Entries beside the networks (optimiser and scheduler states, ``epoch``, ``args``) are ignored, and so are a
``module.`` prefix (``torch.nn.DataParallel``, as UDAPE saves), ``backbone.fc.*`` (tllib's backbones keep
torchvision's unused classifier) and ``num_batches_tracked``.

Key mapping (PyTorch -> our PoseNet, see ``models/pose.py``; the backbone as ``weights.torch_key``):
  ``upsampling.{3i}.weight`` (in, out, 4, 4)     -> ``upsampling/deconv{i}/kernel`` (4, 4, in, out)
  ``upsampling.{3i+1}.*`` (BatchNorm)            -> ``upsampling/bn{i}``
  ``head.weight`` (K, C, 1, 1), ``head.bias``    -> ``head/kernel`` (1, 1, C, K), ``head/bias``
  ``head.0`` / ``head.1`` / ``head.3`` (RegDA)   -> ``head/conv1`` / ``head/bn`` / ``head/conv2``; ``head_adv`` alike
The transposed convolution's kernel is only transposed, not flipped: ``conv_transpose_4x4s2`` flips it itself.

Which network goes where: a method with a teacher (mean_teacher, daml) gets the checkpoint's student as its
student and its teacher as its teacher (a single ``model`` as both); a method without one gets the ``model``, or
else the teacher (the network UDAPE evaluates). ``--network`` puts one named network everywhere instead, e.g.
``student`` for UDAPE's stage-1 ``best_pt``, whose teacher is untrained.

The run folder holds ``config.json`` (the config of the method's own stage, as ``train`` records it) and an Orbax
checkpoint at step 0 in ``checkpoints/`` (``loop.checkpoint_args``; its progress names the imported file). The
optimiser states are fresh, and a method that stylises holds an empty style network: the folder is for
``evaluate`` and ``predict`` (and as ``config.regda.pretrained=DIR/checkpoints``), not for resuming a training.
"""

import argparse
import functools
import logging
import pathlib
import pickle
import re
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from dapose_jax import errors, methods
from dapose_jax.commands import cli
from dapose_jax.interop import weights
from dapose_jax.run import loop
from dapose_jax.storage import workdirs

log = logging.getLogger("dapose_jax")
FLAGS = flags.FLAGS

FORMATS = (".pth", ".pt", ".safetensors", ".npz")
NETWORK_NAMES = ("model", "student", "teacher")  # how the checkpoints name their networks
_ALIASES = {"state_dict": "model"}
# a state's pose networks: (its parameter field, its BatchNorm statistics field), and the checkpoint networks it
# takes, in order of preference, with and without a teacher in the state
_STATE_NETWORKS = {"student": ("params", "batch_stats"), "teacher": ("teacher_params", "teacher_batch_stats")}
_PREFERENCES = {"student": ("student", "model", "teacher"), "teacher": ("teacher", "model", "student"),
                "alone": ("model", "teacher", "student")}
_IGNORED_PREFIXES = ("backbone.fc.",)
_REGDA_HEAD_LAYERS = {"conv1": "0", "bn": "1", "conv2": "3"}  # tllib _make_head(2): Conv, BN, ReLU, Conv
_MAX_LISTED = 20  # problems named per kind in an error; the rest are counted


def read_checkpoint(path) -> dict[str, np.ndarray]:
  """The arrays of a checkpoint file as one flat map, nested dicts joined with '.' (``student.backbone.bn1.bias``)."""
  path = pathlib.Path(path).expanduser()
  if path.suffix.lower() not in FORMATS:
    raise errors.ConfigError(f"--checkpoint {path}: expected a {', '.join(FORMATS)} file")
  if not path.is_file():
    raise errors.MissingInputError(f"--checkpoint {path}: no such file")
  try:
    if path.suffix.lower() in (".pth", ".pt"):
      return dict(_flatten(_torch_load(path)))
    return weights.read_state_dict(path)
  except ImportError as error:
    raise errors.UserError(str(error)) from None
  except errors.UserError:
    raise
  except Exception as error:  # noqa: BLE001  whatever the format's reader makes of a file that is not one
    raise errors.CorruptInputError(f"{path} is not a readable {path.suffix} checkpoint ({errors.one_line(error)})") \
        from None


def _torch_load(path):
  try:
    import torch
  except ImportError as error:
    raise ImportError(f"reading {path} needs PyTorch (pip install torch), or convert it to .npz or .safetensors "
                      "on a machine that has it") from error
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


def _flatten(tree, prefix=""):
  """(dotted key, array) of every tensor in nested dicts; other values (numbers, arguments, lists) are skipped."""
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _flatten(value, f"{prefix}{key}.")
  elif hasattr(tree, "detach"):  # a torch.Tensor
    tensor = tree.detach().cpu()
    yield prefix[:-1], (tensor.float() if tensor.is_floating_point() else tensor).numpy()


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


def torch_key(flax_path) -> str:
  """The PyTorch state-dict key of a PoseNet leaf path, e.g. ("upsampling", "bn1", "mean") ->
  "upsampling.4.running_mean" (see the module docstring)."""
  top, *modules, leaf = flax_path
  if top == "upsampling":
    kind, index = re.fullmatch(r"(deconv|bn)(\d+)", modules[0]).groups()
    modules = [str(3 * int(index) + (kind == "bn"))]
  elif top in ("head", "head_adv"):
    modules = [_REGDA_HEAD_LAYERS[m] for m in modules]
  return f"{top}.{weights.torch_key((*modules, leaf))}"


def _is_transposed_convolution(flax_path):
  return flax_path[0] == "upsampling" and flax_path[1].startswith("deconv")


def convert_network(params, batch_stats, state_dict, where):
  """New (params, batch_stats) of one PoseNet from a PyTorch ``state_dict``, and the problems found (each naming
  the key and ``where``: the checkpoint network it comes from); the trees are unchanged where there are some."""
  return weights.convert_tree(params, batch_stats, state_dict, torch_key, where, prepare=_as_convolution,
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
  problems = {"missing": [], "mis-shaped": [], "unexpected": []}
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
    params, stats, found_problems = convert_network(getattr(state, params_field), getattr(state, stats_field),
                                                    state_dict, where)
    for kind, listed in found_problems.items():
      problems[kind] += [p for p in listed if p not in problems[kind]]
    replaced.update({params_field: params, stats_field: stats})
    chosen[role] = source
  if any(problems.values()):
    raise errors.ConfigError(_mismatch_message(path, config, problems))
  log.info("imported %s into %s: %s", path, config.method,
           ", ".join(f"{role} <- {source}" for role, source in chosen.items()))
  return state.replace(**replaced)


def _mismatch_message(path, config, problems):
  hint = "fix those keys of the config or give the checkpoint they were trained with"
  if any(".head_adv." in f".{key}" for key in problems["unexpected"]):
    hint = "a RegDA checkpoint (head_adv.*) needs config.method=regda"
  elif any(".head_adv." in f".{key}" for key in problems["missing"]):
    hint = "a single-head checkpoint (tllib's PoseResNet) needs a single-head method, e.g. config.method=source_only"
  lines = [f"{path} does not match the model of this config (method {config.method}, backbone "
           f"{config.model.backbone}, upsampling width {config.model.upsampling_features}, keypoint set "
           f"{config.source.keypoint_set}): {hint}"]
  for kind, listed in problems.items():
    lines += [f"  {kind} key {item}" for item in listed[:_MAX_LISTED]]
    if len(listed) > _MAX_LISTED:
      lines.append(f"  ... and {len(listed) - _MAX_LISTED} more {kind} keys")
  return "\n".join(lines)


def import_run(config, checkpoint, workdir, network=None):
  """Writes ``workdir`` (which must be new or empty) as a run of ``config`` holding the weights of the PyTorch
  ``checkpoint`` at step 0; returns the folder. Nothing is written when the checkpoint does not fit."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
    raise errors.UserError(f"--workdir {workdir} exists and is not empty; give a new folder to import into")
  method = methods.get(config.method)
  if method.eval_heatmaps is None:
    raise errors.ConfigError(f"config.method={config.method!r} has no pose network to import into")
  config = method.stages(config, workdir)[-1].config  # the method's own stage, as its run records it
  found = networks(read_checkpoint(checkpoint))  # a file that is no checkpoint fails before the slow init
  state = jax.jit(functools.partial(method.init, config))(jax.random.key(config.seed))
  state = with_networks(found, checkpoint, config, state, network)
  workdirs.record_config(methods.as_recorded(config), workdir)
  progress = {"best": None, "history": [], "devices": jax.device_count(),
              "imported_from": str(pathlib.Path(checkpoint).expanduser().resolve())}
  options = ocp.CheckpointManagerOptions(create=True)
  with ocp.CheckpointManager(workdir / workdirs.CHECKPOINTS, options=options) as mngr:
    mngr.save(0, args=loop.checkpoint_args(state, progress))
    mngr.wait_until_finished()
  return workdir


def define_flags():
  cli.define_config_flag()
  flags.DEFINE_string("checkpoint", None, f"The PyTorch checkpoint: a {', '.join(FORMATS)} file.")
  flags.DEFINE_string("workdir", None, "The run folder to write (new or empty): config.json and checkpoints/0.")
  flags.DEFINE_enum("network", None, list(NETWORK_NAMES), "Take this network of the checkpoint for every network "
                    "of the method (default: student to student, teacher to teacher; a single-network method "
                    "takes the model, else the teacher).")
  flags.mark_flags_as_required(["checkpoint", "workdir"])


def main(argv):
  cli.expect_no_arguments(argv)
  cli.log_progress_to_stderr()
  workdir = import_run(FLAGS.config, FLAGS.checkpoint, FLAGS.workdir, FLAGS.network)
  print(f"wrote {workdir}; evaluate it with: dapose-jax evaluate --config={workdir} --checkpoint={workdir}")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
