"""The ``reconstruction`` command: ``python -m dapose_jax reconstruction --config configs/demo.py --workdir
DIR [--config.reconstruction.keypoints=predictor --config.reconstruction.predictor=RUN/pretrain/best ...]`` (also
``dapose-jax reconstruction ...``) writes ``DIR/reconstruction.msgpack`` and ``DIR/reconstruction.png``: the
geometric reconstruction's generator trained by the training loop as the method ``reconstruction``
(``methods/reconstruction.py``, in DIR/training until it is written). A network file that exists is reused.
"""

import logging
import pathlib
import sys

from dapose_jax.commands import cli
from dapose_jax.methods import base, reconstruction
from dapose_jax.run import loop

log = logging.getLogger("dapose_jax")


def train_generator(config, workdir):
  """Path of ``WORKDIR/reconstruction.msgpack``: returned as is when it exists, else trained and written."""
  path = pathlib.Path(workdir).expanduser().resolve() / reconstruction.NET
  if path.exists():
    log.info("reconstruction: using the existing %s", path)
  else:
    loop.run(base.updated(config, method="reconstruction", reconstruction={"net": str(path)}), path.parent)
  return path


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  cli.start_jax()
  print(train_generator(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
