"""The four rows of the geometric method's ablation (the paper's Table A) on the embedded benchmark.

  python experiments/geometric_demo.py --out OUT [--seeds 0 1 2] [--config configs/demo.py:table_a]
      [--override key=value ...] [--picture docs/geometric_demo.png]

Per seed, the row "both" runs first (``python -m dapose_jax.main --config.method=geometric``, ``demo_table.run``: a
finished run is reused) into OUT/both_sSEED and makes the style network, stage 1 and the generator there; the rows
"baseline", "pseudo" and "reconstruction" start from those (``--config.style.net``, ``geometric.pretrained`` and
``generator``), so the four rows differ only in stage 2. Writes OUT/table_a.json and OUT/table_a.md: per row the mean ± std over seeds of the
final target PCK (``all``) and of the last evaluation's pseudo-label diagnostics (``target_labels``).
``--picture``: for the first target test pairs of the first seed, a row each: the base image with its true
keypoints | with the keypoints of the "baseline" row (no reconstruction loss) | of the "reconstruction" row (the
same stages plus the loss) | the driving image | its reconstruction by the generator from the "reconstruction"
row's keypoints of base and driving.
"""

import argparse
import json
import pathlib

import jax
import numpy as np

import demo_table
from dapose_jax import parallel
from dapose_jax.augment import transforms
from dapose_jax.data import sources
from dapose_jax.methods import reconstruction
from dapose_jax.plots import drawing
from dapose_jax.pose import decoding
from dapose_jax.run import finished
from dapose_jax.storage import workdirs

ROWS = ("both", "baseline", "pseudo", "reconstruction")
LABELS = "target_labels"  # the pseudo_labels evaluator of configs/demo.py:table_a
KEYS = ("accuracy_used", "accuracy_2d", "accuracy_3d", "overlap", "wrong_twice")


def picture(out, seed, path, count=4, scale=2):
  """The module docstring's picture of ``count`` target test pairs (runs of ``seed`` in ``out``), each tile
  enlarged ``scale`` times."""
  mesh = parallel.make_mesh()
  models = {row: finished.load(finished.read_config(out / f"{row}_s{seed}" / workdirs.CONFIG),
                                out / f"{row}_s{seed}" / workdirs.BEST, mesh) for row in ("baseline", "reconstruction")}
  config = models["reconstruction"].config
  split = sources.make_source(config.target, "test", pairs=True)
  size, stride = config.image_size, config.image_size // config.heatmap_size
  pairs = [split[i] for i in range(count)]
  prepared = {name: [transforms.test_transform(p[name]["image"], p[name]["keypoints"], size, config.target.resize_pad)
                     for p in pairs] for name in ("base", "driving")}
  images = {name: np.stack([image for image, _ in prepared[name]]) for name in prepared}
  heatmaps = {row: {name: np.asarray(m.method.eval_heatmaps(m.config, m.state, images[name])) for name in images}
              for row, m in models.items()}
  found = {row: decoding.argmax_2d(maps["base"])[0] * stride for row, maps in heatmaps.items()}
  generator = reconstruction.load(config, models["reconstruction"].keypoint_set.num_keypoints,
                                  config.geometric.generator)
  drawn = reconstruction.model(config).apply(
      generator, images["base"] / 255.0, decoding.heatmap_keypoints(config, heatmaps["reconstruction"]["base"]),
      decoding.heatmap_keypoints(config, heatmaps["reconstruction"]["driving"]), train=False)["image"]
  drawn = np.clip(np.round(np.asarray(jax.device_get(drawn)) * 255), 0, 255).astype(np.uint8)
  ks = models["reconstruction"].keypoint_set
  enlarge = lambda image: np.repeat(np.repeat(image, scale, 0), scale, 1)  # keypoints scale exactly by ``scale``
  tiles = []
  for n in range(count):
    base = enlarge(images["base"][n])
    row = [drawing.draw_keypoints(base, scale * prepared["base"][n][1], ks, pairs[n]["base"]["visible"]),
           drawing.draw_keypoints(base, scale * found["baseline"][n], ks),
           drawing.draw_keypoints(base, scale * found["reconstruction"][n], ks), enlarge(images["driving"][n]),
           enlarge(drawn[n])]
    if n == 0:
      for tile, text in zip(row, ("truth", "baseline", "+ rec", "driving", "rec")):
        drawing.put_label(tile, text, (2, 2))
    tiles += row
  drawing.save_png(path, drawing.grid(tiles, columns=5))
  print(f"picture: {path}")


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--config", default="configs/demo.py:table_a")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--override", nargs="*", default=[])
  parser.add_argument("--picture", type=pathlib.Path)
  args = parser.parse_args()
  results = {row: [] for row in ROWS}
  for seed in args.seeds:
    first = (args.out / f"both_s{seed}").resolve()
    shared = [f"geometric.pretrained={first / 'pretrain' / 'best'}",
              f"geometric.generator={first / 'reconstruction' / 'reconstruction.msgpack'}",
              f"style.net={first / 'style' / 'style_net.msgpack'}"]
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
  shown = lambda row, key, value: "–" if key in ("accuracy_3d", "overlap") and row in ("baseline", "reconstruction") \
      else f"{value:.1f}"  # rows without 3D pseudo-labels
  lines += [f"| {row} | {t['pck'][0]:.1f} ± {t['pck'][1]:.1f} | " + " | ".join(shown(row, k, t[k]) for k in KEYS)
            + " |" for row, t in table.items()]
  (args.out / "table_a.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  if args.picture:
    picture(args.out.resolve(), args.seeds[0], args.picture)


if __name__ == "__main__":
  main()
