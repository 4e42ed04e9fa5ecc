"""What the commands share: the --config / --workdir / --multihost flags, the progress log, JAX start-up, and
the ``dapose-jax COMMAND`` dispatcher (also ``python -m dapose_jax COMMAND``).

A command is a module with ``define_flags()`` and ``main(argv)``, run by ``run_command``; each can also be
run on its own with ``python -m MODULE``.
"""

import importlib
import logging
import os
import pathlib
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dapose_jax import errors

FLAGS = flags.FLAGS
log = logging.getLogger("dapose_jax")
HELP = {"-h", "--help", "-?", "--helpshort", "--helpfull"}

COMMANDS = {
    "train": ("dapose_jax.commands.train", "train a method (with the stages it needs) and evaluate it"),
    "style": ("dapose_jax.commands.style", "train the AdaIN style network (or convert a released one)"),
    "build": ("dapose_jax.commands.build", "build a data set from its downloaded release into TFDS files"),
    "evaluate": ("dapose_jax.commands.evaluate", "a trained checkpoint's PCK tables (and more metrics) on a split, as "
                 "JSON"),
    "predict": ("dapose_jax.commands.predict", "keypoints of images (JSON and a drawn PNG each) from a trained "
                "checkpoint"),
    "browse": ("dapose_jax.commands.browse", "draw a data set's samples, augmented as a run sees them, with their "
               "keypoints"),
    "import": ("dapose_jax.commands.import_checkpoint", "a published PyTorch checkpoint (tllib, RegDA, UDAPE, DAML) as "
               "a run folder for evaluate and predict"),
    "pose_vae": ("dapose_jax.commands.pose_vae", "train the pose VAE on the source poses and score each one's "
                 "difficulty"),
    "reconstruction": ("dapose_jax.commands.reconstruction", "pre-train the geometric reconstruction's generator "
                       "(W and G) on source pairs"),
    "table": ("dapose_jax.commands.table", "finished runs' results side by side, seeds of one configuration as mean ± "
              "std (markdown or CSV)"),
    "plot": ("dapose_jax.commands.plot", "runs' logged curves in one PNG, seeds of one configuration as mean ± a band"),
    "compile": ("dapose_jax.commands.compile", "compile a config's programs for a GPU or TPU (no device needed) and "
                "report their FLOPs, memory traffic, memory, largest batch and roofline bound"),
}


def define_config_flag(recorded=False):
  """--config (required): a Python file with get_config(variant), or with ``recorded`` also a run's config.json
  (or the run folder holding it); any key can be overridden."""
  help_text = ("Python config file with get_config(variant), e.g. configs/demo.py:smoke, or a config of the package "
               "by name, e.g. demo:smoke; override any key with --config.KEY=VALUE.")
  if recorded:
    help_text = ("The run's config: the config file, variant and overrides it was trained with (e.g. "
                 "configs/demo.py:smoke), or the config.json the run recorded (RUN/config.json, or RUN); override any "
                 "key with --config.KEY=VALUE, e.g. --config.target.name=lsp to evaluate on another data set.")
  config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)
  FLAGS["config"].parser = _FileOrRecordedConfig(FLAGS["config"].parser, recorded)
  flags.mark_flag_as_required("config")


def define_model_flags():
  """--config (a config file, or a run's config.json) and --checkpoint: a trained run's model
  (``run.finished``)."""
  define_config_flag(recorded=True)
  flags.DEFINE_string("checkpoint", None, "A run folder (its newest checkpoint), RUN/best (its best state) or one "
                      "step folder (RUN/checkpoints/STEP).")
  flags.mark_flag_as_required("checkpoint")


class _FileOrRecordedConfig(flags.ArgumentParser):
  """--config's parser: a config file, or the name of one of the package's configs (``demo:smoke``,
  ``config.files.resolve``), for ml_collections' own parser; with ``recorded``, a recorded config.json (or a folder
  holding one) is read here."""

  def __init__(self, files, recorded):
    self._files, self._recorded = files, recorded

  def parse(self, argument):
    from dapose_jax.config import files

    path = pathlib.Path(argument).expanduser()
    if not (self._recorded and (path.is_dir() or path.suffix == ".json")):
      file, variant = files.resolve(argument)
      return self._files.parse(f"{file}:{variant}" if variant else str(file))
    from dapose_jax.run import finished  # imports JAX: only for a recorded config
    from dapose_jax.storage import workdirs

    config = finished.read_config(path / workdirs.CONFIG if path.is_dir() else path)
    config.lock()
    return config

  def flag_type(self):
    return self._files.flag_type()




def define_run_flags():
  """--config, --workdir, --print_config, --multihost and its coordinator flags."""
  define_config_flag()
  flags.DEFINE_string("workdir", None, "Directory of the run: config.json, metrics, checkpoints, results.json.")
  flags.DEFINE_bool("print_config", False, "Print every key of the config (as --config.KEY overrides it) with its "
                    "value and exit; no --workdir needed.")
  flags.DEFINE_bool("multihost", False, "Start jax.distributed first: one process per host (or per GPU). JAX finds "
                    "the coordinator, process count and id on Slurm, Open MPI, Kubernetes and Cloud TPU; elsewhere "
                    "give them with the three flags below (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                    "JAX_PROCESS_ID).")
  flags.DEFINE_string("coordinator_address", None, "With --multihost: HOST:PORT of process 0, the same for all.")
  flags.DEFINE_integer("num_processes", None, "With --multihost: how many processes take part.", lower_bound=1)
  flags.DEFINE_integer("process_id", None, "With --multihost: this process's index, 0 .. num_processes - 1.",
                       lower_bound=0)
  flags.register_validator("workdir", lambda workdir: workdir is not None or FLAGS["print_config"].value,
                           "the run's directory is required")


def expect_no_arguments(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")


def log_progress_to_stderr():
  """Our progress lines at INFO; other libraries (Orbax is chatty) only at absl's --verbosity level."""
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  log.addHandler(handler)
  log.setLevel(logging.INFO)
  log.propagate = False
  if not FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)


COMPILATION_CACHE_ENVIRONMENT = "DAPOSE_JAX_COMPILATION_CACHE"
COMPILATION_CACHE_OFF = ("", "off", "0", "false", "no")


def compilation_cache_dir():
  """Where compiled XLA programs persist between runs, so that a second run of the same shapes skips most of
  its compilation: $DAPOSE_JAX_COMPILATION_CACHE, else $XDG_CACHE_HOME (default ~/.cache)/dapose_jax/jax_cache;
  None when that variable is set to off (or "", 0, false, no)."""
  chosen = os.environ.get(COMPILATION_CACHE_ENVIRONMENT)
  if chosen is not None:
    return None if chosen.strip().lower() in COMPILATION_CACHE_OFF else os.path.expanduser(chosen)
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
  return os.path.join(cache_home, "dapose_jax", "jax_cache")


def enable_compilation_cache():
  """JAX's persistent compilation cache in ``compilation_cache_dir()``, before anything compiles; a directory
  set through JAX's own JAX_COMPILATION_CACHE_DIR is kept."""
  import jax

  directory = compilation_cache_dir()
  if directory and not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", directory)


def start_jax():
  """For the commands that train: the persistent compilation cache, jax.distributed with --multihost, the
  progress log, one OpenCV thread."""
  import cv2  # here, not at the top: the dispatcher and --help need neither OpenCV nor JAX
  import jax

  enable_compilation_cache()
  if FLAGS.multihost:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes need it; GPUs use NCCL
    jax.distributed.initialize(**multihost_arguments())
  log_progress_to_stderr()
  if jax.process_count() > 1 and jax.default_backend() == "cpu" and jax.config.jax_enable_compilation_cache:
    # Measured with jax 0.12.1: CPU processes joined by gloo hang at the first evaluation when the persistent
    # compilation cache is on (also with a folder per process); without it they run.
    jax.config.update("jax_enable_compilation_cache", False)
    log.warning("the persistent compilation cache is off: several CPU processes hang with it")
  cv2.setNumThreads(1)  # the input pipeline parallelises over samples; OpenCV's own threads only contend
  log.info("JAX devices: %d (%d local), process %d of %d", jax.device_count(), jax.local_device_count(),
           jax.process_index(), jax.process_count())


MULTIHOST_ENVIRONMENT = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
                         "process_id": "JAX_PROCESS_ID"}


def multihost_arguments():
  """jax.distributed.initialize's arguments from the flags, else the environment; none given: JAX detects them."""
  given = {}
  for name, variable in MULTIHOST_ENVIRONMENT.items():
    value = FLAGS[name].value if FLAGS[name].value is not None else os.environ.get(variable)
    if value is not None:
      try:
        given[name] = value if name == "coordinator_address" else int(value)
      except ValueError:
        raise errors.ConfigError(f"{variable}={value!r}: expected a whole number") from None
  if given and set(given) != set(MULTIHOST_ENVIRONMENT):
    missing = [f"--{name} ({MULTIHOST_ENVIRONMENT[name]})" for name in MULTIHOST_ENVIRONMENT if name not in given]
    raise errors.ConfigError(f"--multihost got {sorted(given)} but not {', '.join(missing)}: give all three, or none "
                             "where JAX detects the cluster")
  if given and not 0 <= given["process_id"] < given["num_processes"]:
    raise errors.ConfigError(f"process id {given['process_id']} is not in 0 .. {given['num_processes'] - 1}")
  return given


def run_command(command, argv=None):
  """Defines ``command``'s flags, parses ``argv`` (default: the command line) and calls ``command.main``;
  ``--help`` shows the command's docstring and its flags. A mistake in the flags, the config file or its
  overrides, or a ``UserError`` of the run, ends the command with one line on stderr (exit status 2); a run
  stopped by a signal after its checkpoint says so and exits with 128 + the signal's number (SIGTERM 143,
  SIGINT 130), as a shell reports a process that the signal ended. Any other exception (a bug) is one line too,
  naming the file that holds its traceback (RUN/error.log, or a file in the system's temporary folder), exit
  status 1; with the environment variable DAPOSE_JAX_TRACEBACK=1 the traceback is printed instead."""
  before = set(FLAGS)
  command.define_flags()
  for name in sorted(set(FLAGS) - before):  # absl's --help lists the flags of the program's main module
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
  sys.modules["__main__"].__doc__ = command.__doc__
  if HELP.intersection((sys.argv if argv is None else argv)[1:]):  # absl's own --help exits with status 1
    print(f"{command.__doc__.strip()}\n\nflags:\n{FLAGS.module_help(sys.argv[0])}")
    sys.exit(0)
  app.run(_reporting_user_errors(command.main), argv=argv, flags_parser=_parse_flags)


def _parse_flags(argv):
  try:
    remaining = FLAGS(argv)
    if "config" in FLAGS:
      FLAGS.config.keys()  # a config file's own errors (a missing file, a bad variant) surface at first use
  except flags.Error as error:
    print(f"error: {errors.one_line(error, typed=False, limit=None)}", file=sys.stderr)
    sys.exit(2)
  except (errors.UserError, KeyError, ValueError, TypeError, AttributeError, OSError) as error:
    print(f"error in --config: {errors.one_line(error, typed=False, limit=None)}", file=sys.stderr)
    sys.exit(2)
  return remaining


TRACEBACK_ENVIRONMENT = "DAPOSE_JAX_TRACEBACK"
ERROR_LOG = "error.log"


def _reporting_user_errors(main):
  def run(argv):
    if "print_config" in FLAGS and FLAGS.print_config:
      from dapose_jax.config import defaults

      print("\n".join(f"{key} = {value!r}" for key, value in defaults.leaves(FLAGS.config)))
      return
    try:
      main(argv)
    except errors.UserError as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
    except errors.Stopped as stopped:
      print(stopped, file=sys.stderr)
      sys.exit(stopped.exit_status)
    except Exception as error:  # a bug, ours or a library's (KeyboardInterrupt and SystemExit pass)
      if os.environ.get(TRACEBACK_ENVIRONMENT, "").strip().lower() not in ("", "0", "false", "no", "off"):
        raise
      path = _write_traceback()
      print(f"error: unexpected {errors.one_line(error)} (the full traceback is in {path}; with "
            f"{TRACEBACK_ENVIRONMENT}=1 it is printed here)", file=sys.stderr)
      sys.exit(1)
  return run


def _write_traceback():
  """Writes the command line and the traceback of the exception being handled to RUN/error.log for a command that
  runs in a --workdir (one that exists and can be written), else to a new file in the system's temporary folder;
  returns the path."""
  import tempfile
  import time
  import traceback

  text = f"{' '.join(sys.argv)}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{traceback.format_exc()}"
  workdir = FLAGS["workdir"].value if "workdir" in FLAGS else None
  if workdir and pathlib.Path(workdir).expanduser().is_dir():
    path = pathlib.Path(workdir).expanduser().absolute() / ERROR_LOG
    try:
      path.write_text(text)
      return path
    except OSError:  # e.g. a full disk, the likely cause itself
      pass
  handle, path = tempfile.mkstemp(prefix="dapose_jax-error-", suffix=".log")
  with os.fdopen(handle, "w") as file:
    file.write(text)
  return path


def _usage():
  lines = ["usage: dapose-jax COMMAND [--flag=value ...]   (dapose-jax COMMAND --help lists its flags)", "",
           "commands:"]
  width = max(map(len, COMMANDS))
  lines += [f"  {name:<{width}} {summary}" for name, (_, summary) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv=None):
  """``dapose-jax COMMAND ...``: runs the command's module with the remaining arguments."""
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  if argv[1] == "--version":
    from importlib import metadata

    print(f"dapose-jax {metadata.version('dapose_jax')}")
    sys.exit(0)
  if argv[1] not in COMMANDS:
    print(f"dapose-jax: unknown command {argv[1]!r}\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  module, _ = COMMANDS[argv[1]]
  run_command(importlib.import_module(module), argv=[f"{argv[0]} {argv[1]}", *argv[2:]])
