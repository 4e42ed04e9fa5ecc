"""The ``table`` command: the results of finished runs side by side, seeds of one configuration averaged.

  dapose-jax table RUN [RUN ...] [--which final|best] [--format markdown|csv] [--out FILE]

Runs are grouped by their recorded config without the seed, labelled by the keys in which the groups differ
(``run.comparison``); each row is a group and an evaluator of ``results.json``, each value the mean ± standard
deviation over the group's seeds. Printed, and written to ``--out`` where given (an existing file only with
``--overwrite``).
"""

import pathlib
import sys

from absl import flags

from dapose_jax import errors
from dapose_jax.commands import cli

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_enum("which", "final", ("final", "best"), "The last evaluation of each run, or the one its "
                    "config.select_on selected.")
  flags.DEFINE_enum("format", "markdown", ("markdown", "csv"), "Markdown tables or CSV lines.")
  flags.DEFINE_string("out", None, "Also write the table here.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")


def main(argv):
  from dapose_jax.run import comparison  # here, not at the top: --help must not load JAX

  if len(argv) < 2:
    raise errors.UserError("give one or more finished run folders")
  out = pathlib.Path(FLAGS.out).expanduser() if FLAGS.out else None
  if out and out.exists() and not FLAGS.overwrite:
    raise errors.UserError(f"{out} exists; pass --overwrite to replace it")
  table = comparison.rows(comparison.groups(argv[1:]), FLAGS.which)
  text = comparison.markdown(table) if FLAGS.format == "markdown" else comparison.csv(table)
  print(text)
  if out:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
