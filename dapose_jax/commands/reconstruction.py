"""The ``reconstruction`` command: ``python -m dapose_jax reconstruction --config configs/demo.py --workdir
DIR [--config.reconstruction.keypoints=predictor --config.reconstruction.predictor=RUN/pretrain/best ...]`` (also
``dapose-jax reconstruction ...``) writes ``DIR/reconstruction.msgpack`` and ``DIR/reconstruction.png`` as a run of
the method ``reconstruction`` in DIR does: the geometric reconstruction's generator trained by the training loop
(``methods/reconstruction.py``, in DIR/training until it is written). A network file that exists is reused.
"""

import pathlib
import sys

from dapose_jax.commands import cli


def train_generator(config, workdir):
  """Path of ``WORKDIR/reconstruction.msgpack``, made (or reused) by the method ``reconstruction``'s run in
  WORKDIR; ``config.reconstruction.net`` is not read."""
  from dapose_jax.methods import base, reconstruction  # here, not at the top: --help must not load JAX
  from dapose_jax.run import loop

  workdir = pathlib.Path(workdir).expanduser().resolve()
  loop.run(base.updated(config, method="reconstruction", reconstruction={"net": ""}), workdir)
  return workdir / reconstruction.NET


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  cli.start_jax()
  print(train_generator(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
