"""Control for the RegDA demo rows: continue RegDA's stage 1 (source-only, KL, SGD) for as many steps as
stage 2 ran, from the same stage-1 checkpoint, so that the gain of stage 2 can be told apart from the gain
of simply training longer.

  python experiments/regda_control.py --table runs/demo_table --seeds 0 1 2 --steps 200

For each seed it writes the last stage-1 checkpoint of TABLE/regda_sSEED/pretrain (train state, evaluation
history; the data iterators continue from the step) into TABLE/regda_control_sSEED, resumes it
with ``epochs`` raised by steps / iters_per_epoch (same learning-rate schedule, the data order continues),
and prints target/source 'all' PCK: stage 1 end, control end, RegDA stage 2 end. The checkpoint is
rewritten rather than copied because stage-1 runs made before the source-only state gained its ``style``
field lack it.
"""

import argparse
import functools
import json
import pathlib
import runpy

import jax

from dapose_jax.methods import regda, source_only
from dapose_jax.run import loop
from dapose_jax.storage import checkpoints

DEMO = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "demo.py"))


def continue_from(stage1_config, pretrain, control):
  """Writes pretrain's last checkpoint, with the current state layout, as control's first checkpoint."""
  template = jax.eval_shape(functools.partial(source_only.init, stage1_config), jax.random.key(0))
  saved = {f: getattr(template, f) for f in ("step", "params", "batch_stats", "opt_state")}
  step = checkpoints.saved_steps(pretrain / "checkpoints")[-1]
  restored, progress = checkpoints.read(pretrain / "checkpoints", step, saved)
  checkpoints.write(control / "checkpoints", step, source_only.State(**restored, style={}), progress)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--table", type=lambda p: pathlib.Path(p).resolve(), required=True)
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()

  rows = []
  for seed in args.seeds:
    config = DEMO["get_config"]("regda")
    config.seed = seed
    stage1 = regda.pretrain_config(config)
    stage1.epochs += args.steps // stage1.iters_per_epoch
    pretrain, control = args.table / f"regda_s{seed}" / "pretrain", args.table / f"regda_control_s{seed}"
    if not (control / "results.json").exists():
      if not (control / "checkpoints").exists():
        continue_from(stage1, pretrain, control)
      loop.train_and_evaluate(stage1, control)
    results = lambda path: json.loads((path / "results.json").read_text())["final"]
    rows.append({"seed": seed, "stage1": results(pretrain), "control": results(control),
                 "regda": results(args.table / f"regda_s{seed}")})
  (args.table / "regda_control.json").write_text(json.dumps(rows, indent=2) + "\n")
  for row in rows:
    print(f"seed {row['seed']}: " + "  ".join(
        f"{name} target {row[name]['target']['all']:.1f} source {row[name]['source']['all']:.1f}"
        for name in ("stage1", "control", "regda")))


if __name__ == "__main__":
  main()
