"""RegDA with the uniform, cl and hm source samplers on the embedded benchmark: the README's sampling demo.

  python -m dapose_jax pose_vae --config configs/demo.py:sampling --workdir OUT/vae
  python experiments/sampling_demo.py --out OUT --scores OUT/vae/pose_vae/scores.json [--seeds 0 1 2]
      [--samplers uniform cl hm] [--config configs/demo.py:sampling] [--method regda] [--override key=value ...]
      [--plot docs/pose_bins_demo.png] [--samples docs/pose_bins_samples.png]

Runs ``python -m dapose_jax.main`` once per (seed, sampler) into OUT/SAMPLER_sSEED (``demo_table.run``: a finished
run is reused), seeds in the outer loop, every run with ``--config.sampling.scores`` (the ``pose_bins`` evaluator of
the config reads it; ``uniform`` does not sample by it). Then writes OUT/sampling.json and OUT/sampling.md: per
sampler the mean ± std over seeds of the final target PCK (``all``) and of the final per-bin values of
``target_bins``; ``--plot``: PCK and EvalPose over the bins, one line per sampler (mean over seeds); ``--samples``:
source training samples of the lowest and of the highest bins with their keypoints, and OUT/source_bins.json (what
the source's bins hold: sizes, scores, elbow and knee flexion).
"""

import argparse
import json
import pathlib
import sys

import numpy as np

import demo_table
from dapose_jax.augment import transforms
from dapose_jax.auxiliary import pose_vae
from dapose_jax.data import sampling, sources
from dapose_jax.evaluators import pose_bins
from dapose_jax.plots import drawing
from dapose_jax.pose import metrics
from dapose_jax.run import finished

BINS = "target_bins"  # the pose_bins evaluator of configs/demo.py:sampling


def summary(per_seed):
  """{"pck", "evalpose": (mean, std) of the final target values, "bins", "images", "pck_bins", "evalpose_bins":
  per-bin lists (means over seeds)} of one sampler's results."""
  finals = [r["final"] for r in per_seed]
  target, evalpose = np.array([f["target"]["all"] for f in finals]), np.array([f[BINS]["evalpose"] for f in finals])
  per_bin = [pose_bins.per_bin(f[BINS]) for f in finals]
  bins = per_bin[0][0]
  return {"pck": (target.mean(), target.std()), "evalpose": (evalpose.mean(), evalpose.std()),
          "per_seed_pck": target.tolist(), "bins": bins,
          "images": [finals[0][BINS][f"images_bin{b}"] for b in bins],
          "pck_bins": np.mean([p for _, p, _ in per_bin], axis=0).tolist(),
          "evalpose_bins": np.mean([e for _, _, e in per_bin], axis=0).tolist()}


def markdown(table, seeds):
  lines = [f"| sampler (seeds {', '.join(map(str, seeds))}) | target PCK@0.05 all | target EvalPose |", "|---|---|---|"]
  lines += [f"| {name} | {s['pck'][0]:.1f} ± {s['pck'][1]:.1f} | {s['evalpose'][0]:.1f} ± {s['evalpose'][1]:.1f} |"
            for name, s in table.items()]
  first = next(iter(table.values()))
  lines += ["", "| bin | target images | " + " | ".join(f"PCK {n}" for n in table) + " | "
            + " | ".join(f"EvalPose {n}" for n in table) + " |", "|---" * (2 + 2 * len(table)) + "|"]
  for i, b in enumerate(first["bins"]):
    lines.append(f"| {b} | {first['images'][i]:.0f} | " + " | ".join(f"{s['pck_bins'][i]:.1f}" for s in table.values())
                 + " | " + " | ".join(f"{s['evalpose_bins'][i]:.1f}" for s in table.values()) + " |")
  return "\n".join(lines) + "\n"


def plot(table, path):
  bins = next(iter(table.values()))["bins"]
  panels = [drawing.line_plot(bins, {name: s[key] for name, s in table.items()}, x_label="difficulty bin",
                              title=f"target {label} per pose-VAE bin (mean over seeds)")
            for key, label in (("pck_bins", "PCK@0.05"), ("evalpose_bins", "EvalPose"))]
  drawing.save_png(path, np.concatenate(panels, axis=1))


GROUPS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 25))  # bin ranges of the source summary


def source_bins(config, scores_path, path, per_row=8, side=96):
  """What the source's bins hold: per group of bins (``GROUPS``) the samples, their mean score and the mean and std
  of the flexion (180 degrees - the joint angle) at elbows and knees; and, into ``path``, a picture of the first
  ``per_row`` samples of bin 1 (first row) and of the ``per_row`` highest scores (second row), at ``side`` px with
  their keypoints, each labelled with its bin and score."""
  scores = np.asarray(json.loads(pathlib.Path(scores_path).read_text())["scores"])
  value_range = sampling.value_range(scores, config.sampling.upper_quantile)
  sample_bins = sampling.bins(scores, config.sampling.bins, value_range)
  source = sources.make_source(config.source, "train")
  keypoints, _ = pose_vae.read_keypoints(source)
  names = list(source.keypoint_set.angles)
  limbs = [names.index(n) for n in names if n.endswith(("elbow", "knee"))]
  flexion = 180 - np.degrees(np.asarray(metrics.joint_angles(keypoints, source.keypoint_set)))[:, limbs].mean(1)
  groups = []
  for first, last in GROUPS:
    chosen = (sample_bins >= first) & (sample_bins <= last)
    groups.append({"bins": f"{first}-{last}" if last > first else str(first), "samples": int(chosen.sum()),
                   "mean_score": float(scores[chosen].mean()) if chosen.any() else None,
                   "mean_flexion": float(flexion[chosen].mean()) if chosen.any() else None,
                   "std_flexion": float(flexion[chosen].std()) if chosen.any() else None})
  low, high = np.flatnonzero(sample_bins == 1)[:per_row], np.argsort(scores)[::-1][:per_row]
  rows = []
  for chosen in (low, high):
    tiles = []
    for i in chosen:
      sample = source[int(i)]
      image, kps = transforms.test_transform(sample["image"], sample["keypoints"], side, pad=False)
      tile = drawing.draw_keypoints(image, kps, source.keypoint_set, sample["visible"])
      drawing.put_label(tile, f"bin {sample_bins[i]} {scores[i]:.2f}", (2, 2))
      tiles.append(tile)
    rows.append(drawing.grid(tiles, columns=per_row))
  drawing.save_png(path, drawing.grid(rows, columns=1, border=0))
  return {"groups": groups, "bin_sizes": np.bincount(sample_bins, minlength=config.sampling.bins + 1)[1:].tolist(),
          "correlation_score_flexion": float(np.corrcoef(scores, flexion)[0, 1]),
          "pictured": {"low": low.tolist(), "high": high.tolist()}}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--scores", type=pathlib.Path, required=True)
  parser.add_argument("--config", default="configs/demo.py:sampling")
  parser.add_argument("--method", default="regda")
  parser.add_argument("--samplers", nargs="+", default=["uniform", "cl", "hm"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--override", nargs="*", default=[])
  parser.add_argument("--plot", type=pathlib.Path)
  parser.add_argument("--samples", type=pathlib.Path)
  args = parser.parse_args()

  scores = args.scores.expanduser().resolve()
  results = {name: [] for name in args.samplers}
  for seed in args.seeds:
    for name in args.samplers:
      overrides = [f"sampling.name={name}", f"sampling.scores={scores}", *args.override]
      results[name].append(demo_table.run(args.config, args.method, seed, args.out / f"{name}_s{seed}", overrides))
  table = {name: summary(per_seed) for name, per_seed in results.items()}
  for name, per_seed in results.items():
    table[name]["wall_seconds"] = [r.get("wall_seconds") for r in per_seed]
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "sampling.json").write_text(json.dumps({"seeds": args.seeds, "config": args.config,
                                                      "method": args.method, "samplers": table}, indent=2) + "\n")
  text = markdown(table, args.seeds)
  (args.out / "sampling.md").write_text(text)
  print(text)
  if args.plot:
    plot(table, args.plot)
  if args.samples:
    config = finished.read_config(args.out / f"{args.samplers[0]}_s{args.seeds[0]}" / "config.json")
    held = source_bins(config, scores, args.samples)
    (args.out / "source_bins.json").write_text(json.dumps(held, indent=2) + "\n")
    print(json.dumps(held["groups"], indent=1))


if __name__ == "__main__":
  sys.exit(main())
