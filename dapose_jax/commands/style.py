"""The ``style`` command: ``python -m dapose_jax style --config configs/demo.py --workdir DIR
[--config.style.steps=N ...]`` (also ``dapose-jax style ...``) writes ``DIR/style_net.msgpack`` and
``DIR/style_net.json`` (see ``style_net``): the decoder trained by the training loop as the method
``style_decoder`` (``methods/style_decoder.py``, in DIR/training until it is written), or a released decoder
(``--config.style.decoder``) converted without training. A network file that exists is reused.
"""

import logging
import pathlib
import sys

from dapose_jax.auxiliary import style_net
from dapose_jax.commands import cli
from dapose_jax.methods import base, style_decoder
from dapose_jax.run import loop

log = logging.getLogger("dapose_jax")


def train_decoder(config, workdir):
  """Path of ``WORKDIR/style_net.msgpack``: returned as is when it exists, else trained (or converted, when
  ``config.style.decoder`` names a released decoder) and written."""
  path = pathlib.Path(workdir).expanduser().resolve() / style_net.STYLE_NET
  if path.exists():
    log.info("style net: using the existing %s", path)
  elif config.style.decoder:
    log.info("style net: imported decoder %s (no training)", config.style.decoder)
    style_net.save(path, style_net.initial_params(config.style),
                   {**style_decoder.net_info(config), "final_loss": None, "history": []})
  else:
    loop.run(base.updated(config, method="style_decoder", style={"net": str(path)}), path.parent)
  return path


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  cli.start_jax()
  print(train_decoder(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
