"""The ``import`` command: a published PyTorch pose checkpoint (tllib's PoseResNet, RegDA's PoseResNet2d, UDAPE's
or DAML's student and teacher) as a run folder that ``evaluate`` and ``predict`` read.

  dapose-jax import --config=configs/surreal_lsp.py:regda --checkpoint=best.pth
      --workdir=runs/regda_published [--network=student|teacher|model]

(also ``python -m dapose_jax import ...``). The config names the model (backbone, upsampling width, keypoint set)
and the method, whose state takes the weights: a ``head.*``-only checkpoint (tllib ``PoseResNet``) needs a single-head
method (source_only), a ``head.*`` + ``head_adv.*`` one (RegDA ``PoseResNet2d``) the method regda. The files and
layouts it reads, how their keys map to our networks and which network goes where: ``interop.pose_checkpoints``.

The run folder holds ``config.json`` (the config of the method's own stage, as ``train`` records it) and an Orbax
checkpoint at step 0 in ``checkpoints/`` (``storage.checkpoints.write``; its progress names the imported file). The
optimiser states are fresh, and a method that stylises holds an empty style network: the folder is for
``evaluate`` and ``predict`` (and as ``config.regda.pretrained=DIR/checkpoints``), not for resuming a training.
"""

import functools
import pathlib
import sys

from absl import flags

from dapose_jax import errors, methods
from dapose_jax.commands import cli
from dapose_jax.interop import pose_checkpoints

FLAGS = flags.FLAGS


def import_run(config, checkpoint, workdir, network=None):
  """Writes ``workdir`` (which must be new or empty) as a run of ``config`` holding the weights of the PyTorch
  ``checkpoint`` at step 0; returns the folder. Nothing is written when the checkpoint does not fit."""
  import jax  # here, not at the top: --help must not load JAX

  from dapose_jax.storage import checkpoints, workdirs

  workdir = pathlib.Path(workdir).expanduser().resolve()
  if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
    raise errors.UserError(f"--workdir {workdir} exists and is not empty; give a new folder to import into")
  method = methods.get(config.method)
  if method.eval_heatmaps is None:
    raise errors.ConfigError(f"config.method={config.method!r} has no pose network to import into")
  config = method.stages(config, workdir)[-1].config  # the method's own stage, as its run records it
  # a file that is no checkpoint fails before the slow init
  found = pose_checkpoints.networks(pose_checkpoints.read_checkpoint(checkpoint))
  state = jax.jit(functools.partial(method.init, config))(jax.random.key(config.seed))
  state = pose_checkpoints.with_networks(found, checkpoint, config, state, network)
  workdirs.record_config(methods.as_recorded(config), workdir)
  progress = {"best": None, "history": [], "devices": jax.device_count(),
              "imported_from": str(pathlib.Path(checkpoint).expanduser().resolve())}
  checkpoints.write(workdir / workdirs.CHECKPOINTS, 0, state, progress)
  return workdir


def define_flags():
  cli.define_config_flag()
  flags.DEFINE_string("checkpoint", None, f"The PyTorch checkpoint: a {', '.join(pose_checkpoints.FORMATS)} file.")
  flags.DEFINE_string("workdir", None, "The run folder to write (new or empty): config.json and checkpoints/0.")
  flags.DEFINE_enum("network", None, list(pose_checkpoints.NETWORK_NAMES), "Take this network of the checkpoint for "
                    "every network of the method (default: student to student, teacher to teacher; a "
                    "single-network method takes the model, else the teacher).")
  flags.mark_flags_as_required(["checkpoint", "workdir"])


def main(argv):
  cli.expect_no_arguments(argv)
  cli.log_progress_to_stderr()
  workdir = import_run(FLAGS.config, FLAGS.checkpoint, FLAGS.workdir, FLAGS.network)
  print(f"wrote {workdir}; evaluate it with: dapose-jax evaluate --config={workdir} --checkpoint={workdir}")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
