"""Mistakes a user can fix. The command line shows their message in one line, without a traceback; every
other exception (a bug of ours, or of a library) is one line too, naming the file that holds its traceback
(``commands.cli``)."""


class UserError(Exception):
  """A mistake in the command line, the config, the files a run reads or the workdir it writes."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the key and what it accepts."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or folder that a run reads is not there; the message says how to make or name it."""


class CorruptInputError(UserError, ValueError):
  """A file that a run reads is there but cannot be decoded (e.g. a truncated image); the message names the file
  or the sample and how to replace or rebuild it."""


class WriteError(UserError, OSError):
  """A file or folder that a command writes cannot be written (a full disk, a read-only folder); the message names
  it, the cause and what to do."""


class Stopped(Exception):
  """Training stopped on a signal after writing a checkpoint; the command exits with ``exit_status``."""

  def __init__(self, message, exit_status):
    super().__init__(message)
    self.exit_status = exit_status


def one_line(error, typed=True, limit=300):
  """The message of ``error`` as one short line, prefixed by its type when ``typed``: of the exception at the end of
  a traceback quoted in it, if any; without the JSON spec and details that TensorStore appends; at most ``limit``
  characters (None: all)."""
  text = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
  if "Traceback (most recent call last)" in text:
    text = text.rstrip().splitlines()[-1].split(": ", 1)[-1]
  text = " ".join(text.split(" [tensorstore_spec")[0].split(" See full TensorStore details")[0].split())
  if limit is not None and len(text) > limit:
    text = text[:limit] + "..."
  return f"{type(error).__name__}: {text}" if typed else text
