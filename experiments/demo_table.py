"""Source-only vs RegDA on the embedded benchmark, several seeds: the README's demo table.

  python experiments/demo_table.py --out runs/demo_table [--seeds 0 1 2] [--methods source_only regda]
      [--config configs/demo.py] [--override key=value ...]

An override may name the seed as {seed}, e.g. to start DAML from the mean teacher's stage 1 of the same
seed: --override 'daml.pretrained=runs/demo_table/mean_teacher_s{seed}/pretrain/best'.

Runs ``python -m dapose_jax.main`` once per (method, seed) into OUT/METHOD_sSEED (an existing finished run
is reused), then writes OUT/table.md and OUT/table.json: ``dapose-jax table`` of those runs (``run.comparison``:
every evaluator's values at the final step, mean ± std over seeds; the final step needs no target labels for model
selection).
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from dapose_jax.run import comparison  # noqa: E402


def run(config, method, seed, workdir, overrides):
  if (workdir / "results.json").exists():
    return json.loads((workdir / "results.json").read_text())
  cmd = [sys.executable, "-m", "dapose_jax.main", f"--config={config}", f"--workdir={workdir}",
         f"--config.method={method}", f"--config.seed={seed}",
         *[f"--config.{o.format(seed=seed)}" for o in overrides]]
  print(" ".join(cmd), flush=True)
  start = time.time()
  subprocess.run(cmd, check=True)
  results = json.loads((workdir / "results.json").read_text())
  results["wall_seconds"] = time.time() - start
  (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--methods", nargs="+", default=["source_only", "regda"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--override", nargs="*", default=[])
  args = parser.parse_args()

  folders = []
  for method in args.methods:
    for seed in args.seeds:
      folders.append(args.out / f"{method}_s{seed}")
      run(args.config, method, seed, folders[-1], args.override)
  table = comparison.rows(comparison.groups(folders))  # grouped by config without the seed (method=...)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
  (args.out / "table.md").write_text(comparison.markdown(table) + "\n")
  print(comparison.markdown(table))


if __name__ == "__main__":
  main()
