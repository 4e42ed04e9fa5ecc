"""Label-free model selection, judged on finished runs: how well each criterion (a value every evaluation logged,
e.g. an evaluator of config.evals on the target's unlabelled training images) follows the target test PCK, and the
target PCK of the evaluation it would select.

  python experiments/selection_study.py RUN [RUN ...] --criteria EVALUATOR[/KEY] [...] [--truth target/all]
      [--out DIR]

Per criterion (KEY defaults to ``all``): Spearman's rank correlation with the truth over the evaluations of all runs
pooled, and its mean over the runs; per run, the truth at the evaluation where the criterion is largest, beside the
oracle (the truth's own largest value, what selecting on target labels gives) and the last evaluation. Prints a
markdown table and writes it to DIR/selection.md with one scatter plot per criterion (DIR/selection_NAME.png:
criterion against truth, one colour per run, up to four runs).
"""

import argparse
import pathlib
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from dapose_jax.plots import drawing  # noqa: E402
from dapose_jax.run import comparison  # noqa: E402


def paired(series, criterion, truth):
  """(steps, criterion values, truth values) of the evaluations that logged both."""
  steps = sorted(set(series[criterion]) & set(series[truth]))
  return (np.array(steps), np.array([series[criterion][s] for s in steps]),
          np.array([series[truth][s] for s in steps]))


def study(runs, criteria, truth):
  """{criterion: {"pooled_rho", "mean_rho", "selected", "oracle", "last", "runs": [(steps, values, truth)]}}."""
  logged = {run: comparison.read_metrics(run) for run in runs}
  out = {}
  for criterion in criteria:
    per_run = [paired(series, criterion, truth) for series in logged.values()]
    pooled = stats.spearmanr(np.concatenate([v for _, v, _ in per_run]), np.concatenate([t for _, _, t in per_run]))
    rhos = [stats.spearmanr(v, t).statistic for _, v, t in per_run if len(v) > 2]
    out[criterion] = {"pooled_rho": float(pooled.statistic), "mean_rho": float(np.mean(rhos)) if rhos else np.nan,
                      "selected": float(np.mean([t[np.argmax(v)] for _, v, t in per_run])),
                      "oracle": float(np.mean([t.max() for _, _, t in per_run])),
                      "last": float(np.mean([t[-1] for _, _, t in per_run])), "runs": per_run}
  return out


def markdown(results, truth, runs):
  lines = [f"{len(runs)} run(s); truth {truth}; selected / oracle / last: mean over the runs of the truth at the "
           "evaluation each picks", "", "| criterion | Spearman (pooled) | Spearman (mean per run) | selected | oracle | "
           "last |", "|---|---|---|---|---|---|"]
  for name, r in results.items():
    lines.append(f"| {name} | {r['pooled_rho']:.2f} | {r['mean_rho']:.2f} | {r['selected']:.1f} | {r['oracle']:.1f} | "
                 f"{r['last']:.1f} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", type=pathlib.Path)
  parser.add_argument("--criteria", nargs="+", required=True)
  parser.add_argument("--truth", default="target/all")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/selection_study"))
  args = parser.parse_args()
  criteria = [c if "/" in c else f"{c}/all" for c in args.criteria]
  results = study(args.runs, criteria, args.truth)
  table = markdown(results, args.truth, args.runs)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "selection.md").write_text(table + "\n")
  for name, r in results.items():
    points = {run.name: (v, t) for run, (_, v, t) in list(zip(args.runs, r["runs"]))[:len(drawing.PLOT_COLOURS)]}
    path = args.out / f"selection_{name.replace('/', '_')}.png"
    drawing.save_png(path, drawing.series_plot(points, title=f"{args.truth} against {name}", x_label=name,
                                               connect=False))
  print(table)


if __name__ == "__main__":
  main()
