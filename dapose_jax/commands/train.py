"""The ``train`` command: ``dapose-jax train --config configs/demo.py --workdir DIR [--config.key=value]``
(also ``python -m dapose_jax.main ...``)."""

import sys

from dapose_jax.commands import cli


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  from dapose_jax.run import loop  # here, not at the top: --help must not load JAX

  cli.start_jax()
  loop.run(cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
