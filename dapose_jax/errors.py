"""Mistakes a user can fix. The command line shows their message in one line, without a traceback; every
other exception keeps its traceback (a bug of ours, or of a library)."""


class UserError(Exception):
  """A mistake in the command line, the config, the files a run reads or the workdir it writes."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the key and what it accepts."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or folder that a run reads is not there; the message says how to make or name it."""


class CorruptInputError(UserError, ValueError):
  """A file that a run reads is there but cannot be decoded (e.g. a truncated image); the message names the file
  or the sample and how to replace or rebuild it."""


class Stopped(Exception):
  """Training stopped on a signal after writing a checkpoint; the command exits with ``exit_status``."""

  def __init__(self, message, exit_status):
    super().__init__(message)
    self.exit_status = exit_status
