"""The ``plot`` command: the logged curves of runs in one PNG, seeds of one configuration as mean ± a band.

  dapose-jax plot RUN [RUN ...] --out curves.png [--series loss,target/all] [--overwrite]

One panel per series of ``metrics.jsonl`` (default: the loss, the first learning rate and every evaluator's
``all``; a train scalar by its name, an evaluation value as EVALUATOR/KEY), one line per group of runs (grouped
and labelled as ``dapose-jax table`` groups them, ``run.comparison``): the mean over the group's seeds at the steps
each logged, shaded ± one standard deviation. At most four groups.
"""

import pathlib
import sys

from absl import flags

from dapose_jax import errors
from dapose_jax.commands import cli

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("out", None, "The PNG to write.")
  flags.DEFINE_list("series", [], "The series to draw, e.g. loss,target/all (default: the loss, the first learning "
                    "rate and every evaluator's 'all').")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
  flags.mark_flag_as_required("out")


def main(argv):
  from dapose_jax.plots import drawing  # here, not at the top: --help must not load OpenCV or JAX
  from dapose_jax.run import comparison

  if len(argv) < 2:
    raise errors.UserError("give one or more run folders")
  out = pathlib.Path(FLAGS.out).expanduser()
  if out.exists() and not FLAGS.overwrite:
    raise errors.UserError(f"{out} exists; pass --overwrite to replace it")
  grouped = comparison.groups(argv[1:])
  if len(grouped) > len(drawing.PLOT_COLOURS):
    raise errors.UserError(f"{len(grouped)} groups of runs; plot at most {len(drawing.PLOT_COLOURS)} at once")
  panels = []
  for name, lines in comparison.curves(grouped, FLAGS.series).items():
    panels.append(drawing.series_plot(
        {label: (steps, mean) for label, (steps, mean, _) in lines.items()}, title=name, x_label="step",
        bands={label: (mean - std, mean + std) for label, (_, mean, std) in lines.items()}))
  out.parent.mkdir(parents=True, exist_ok=True)
  drawing.save_png(out, drawing.grid(panels, columns=min(2, len(panels))))
  print(f"wrote {out}: {len(panels)} series of {len(grouped)} group(s)")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
