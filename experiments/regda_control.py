"""Control for the RegDA demo rows: continue RegDA's stage 1 (source-only, KL, SGD) for as many steps as
stage 2 ran, from the same stage-1 checkpoint, so that the gain of stage 2 can be told apart from the gain
of simply training longer.

  python experiments/regda_control.py --table runs/demo_table --seeds 0 1 2 --steps 200

For each seed it copies TABLE/regda_sSEED/pretrain (checkpoints at the end of stage 1) to
TABLE/regda_control_sSEED, resumes it with ``epochs`` raised by steps / iters_per_epoch (same learning-rate
schedule, same data order), and prints target/source 'all' PCK: stage 1 end, control end, RegDA stage 2 end.
"""

import argparse
import json
import pathlib
import shutil

from dapose_jax import train
from dapose_jax.methods import regda
from dapose_jax.config_tasks import demo_config


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--table", type=pathlib.Path, required=True)
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()

  rows = []
  for seed in args.seeds:
    config = demo_config()
    config.method = "regda"
    config.seed = seed
    stage1 = regda.pretrain_config(config)
    stage1.epochs += args.steps // stage1.iters_per_epoch
    pretrain, control = args.table / f"regda_s{seed}" / "pretrain", args.table / f"regda_control_s{seed}"
    if not (control / "results.json").exists():
      shutil.rmtree(control, ignore_errors=True)
      shutil.copytree(pretrain, control, ignore=shutil.ignore_patterns("results.json", "config.json"))
      train.train_and_evaluate(stage1, control)
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
