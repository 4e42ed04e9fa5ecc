"""The ``style`` command: ``python -m dapose_jax style --config configs/demo.py --workdir DIR
[--config.style.steps=N ...]`` (also ``dapose-jax style ...``) writes ``DIR/style_net.msgpack`` and
``DIR/style_net.json`` (see ``style_net``) as a run of the method ``style_decoder`` in DIR does
(``methods/style_decoder.py``: the decoder trained by the training loop, in DIR/training until it is written, or
a released decoder (``--config.style.decoder``) converted without training). A network file that exists is reused.
"""

import pathlib
import sys

from dapose_jax.commands import cli


def train_decoder(config, workdir):
  """Path of ``WORKDIR/style_net.msgpack``, made (or reused) by the method ``style_decoder``'s run in WORKDIR;
  ``config.style.net`` is not read."""
  from dapose_jax.auxiliary import style_net  # here, not at the top: --help must not load JAX
  from dapose_jax.methods import base
  from dapose_jax.run import loop

  workdir = pathlib.Path(workdir).expanduser().resolve()
  loop.run(base.updated(config, method="style_decoder", style={"net": ""}), workdir)
  return workdir / style_net.STYLE_NET


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  cli.start_jax()
  print(train_decoder(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
