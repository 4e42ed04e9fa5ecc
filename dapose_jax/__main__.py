"""``python -m dapose_jax COMMAND ...``, the same as the ``dapose-jax`` script."""

from dapose_jax.commands import cli

if __name__ == "__main__":
  cli.main()
