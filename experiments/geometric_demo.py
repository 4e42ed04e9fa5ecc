"""The four rows of the geometric method's ablation (the paper's Table A) on the embedded benchmark.

  python experiments/geometric_demo.py --out OUT [--seeds 0 1 2] [--config configs/demo.py:table_a]
      [--override key=value ...]

Per seed, the row "both" runs first (``python -m dapose_jax.main --config.method=geometric``, ``demo_table.run``: a
finished run is reused) into OUT/both_sSEED and makes stage 1 and the generator there; the rows "baseline",
"pseudo" and "reconstruction" start from those (``--config.geometric.pretrained`` and ``generator``), so the four
rows differ only in stage 2. Writes OUT/table_a.json and OUT/table_a.md: per row the mean ± std over seeds of the
final target PCK (``all``) and of the last evaluation's pseudo-label diagnostics (``target_labels``).
"""

import argparse
import json
import pathlib

import numpy as np

import demo_table

ROWS = ("both", "baseline", "pseudo", "reconstruction")
LABELS = "target_labels"  # the pseudo_labels evaluator of configs/demo.py:table_a
KEYS = ("accuracy_used", "accuracy_2d", "accuracy_3d", "overlap", "wrong_twice")


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--config", default="configs/demo.py:table_a")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--override", nargs="*", default=[])
  args = parser.parse_args()
  results = {row: [] for row in ROWS}
  for seed in args.seeds:
    first = (args.out / f"both_s{seed}").resolve()
    shared = [f"geometric.pretrained={first / 'pretrain' / 'best'}",
              f"geometric.generator={first / 'reconstruction' / 'reconstruction.msgpack'}"]
    for row in ROWS:
      extra = [f"geometric.ablation={row}", *(shared if row != "both" else []), *args.override]
      results[row].append(demo_table.run(args.config, "geometric", seed, args.out / f"{row}_s{seed}", extra))
  table = {}
  for row, runs in results.items():
    finals = [r["final"] for r in runs]
    pck = np.array([f["target"]["all"] for f in finals])
    table[row] = {"pck": (pck.mean(), pck.std()), "per_seed_pck": pck.tolist(),
                  **{key: float(np.nanmean([f[LABELS][key] for f in finals])) for key in KEYS},
                  "minutes": float(np.mean([r.get("wall_seconds", np.nan) for r in runs]) / 60)}
  (args.out / "table_a.json").write_text(json.dumps({"seeds": args.seeds, "table": table}, indent=2) + "\n")
  lines = [f"| row (seeds {', '.join(map(str, args.seeds))}) | target PCK@0.05 all | pseudo-labels correct (used) | "
           "2D | 3D | M2D/M3D overlap | wrong twice |", "|---|---|---|---|---|---|---|"]
  lines += [f"| {row} | {t['pck'][0]:.1f} ± {t['pck'][1]:.1f} | " + " | ".join(f"{t[k]:.1f}" for k in KEYS) + " |"
            for row, t in table.items()]
  (args.out / "table_a.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
