"""Mistakes a user can fix. The command line shows their message in one line, without a traceback; every
other exception keeps its traceback (a bug of ours, or of a library)."""


class UserError(Exception):
  """A mistake in the command line, the config, the files a run reads or the workdir it writes."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the key and what it accepts."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or folder that a run reads is not there; the message says how to make or name it."""
