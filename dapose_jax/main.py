"""The ``train`` command: ``python -m dapose_jax.main --config configs/demo.py --workdir DIR [--config.key=value]``
(also ``dapose-jax train ...``)."""

import sys

from dapose_jax import cli, train


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  cli.start_jax()
  train.run(cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
