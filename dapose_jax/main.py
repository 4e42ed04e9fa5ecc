"""Command line: ``python -m dapose_jax.main --config configs/demo.py --workdir DIR [--config.key=value]``."""

import logging
import sys

import cv2
import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dapose_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Python config file with get_config(arg), e.g. configs/demo.py:smoke.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics, checkpoints and results.json.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (Slurm, Kubernetes, Cloud TPU; "
                  "elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID).")
flags.mark_flags_as_required(["config", "workdir"])


log = logging.getLogger("dapose_jax")


def _log_progress_to_stderr():
  """Our progress lines at INFO; other libraries (Orbax is chatty) only at absl's --verbosity level."""
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  log.addHandler(handler)
  log.setLevel(logging.INFO)
  log.propagate = False
  if not FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.multihost:
    jax.distributed.initialize()
  _log_progress_to_stderr()
  cv2.setNumThreads(1)  # the input pipeline parallelises over samples; OpenCV's own threads only contend
  log.info("JAX devices: %d (%d local), process %d of %d", jax.device_count(), jax.local_device_count(),
               jax.process_index(), jax.process_count())
  train.run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
