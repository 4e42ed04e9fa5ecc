"""The ``pose_vae`` command: train Dua et al.'s pose VAE on the source training keypoints and score the difficulty
of every source training sample (``dapose_jax.auxiliary.pose_vae``).

  dapose-jax pose_vae --config configs/demo.py --workdir DIR [--config.pose_vae.steps=N ...]

writes ``DIR/pose_vae/params.msgpack`` and ``DIR/pose_vae/scores.json`` and prints the scores file's path.
"""

import sys

from dapose_jax.commands import cli


def define_flags():
  cli.define_run_flags()


def main(argv):
  cli.expect_no_arguments(argv)
  from dapose_jax.auxiliary import pose_vae  # here, not at the top: --help must not load JAX

  cli.start_jax()
  print(pose_vae.run(cli.FLAGS.config, cli.FLAGS.workdir))


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
