"""``python -m dapose_jax.main --config FILE --workdir DIR``: the ``train`` command (``dapose_jax.commands.train``)."""

from dapose_jax.commands import cli, train

if __name__ == "__main__":
  cli.run_command(train)
