"""The command-line commands, one module per ``dapose-jax COMMAND`` (the only modules that parse flags)."""
