"""EPE and PCK-bbox at 0.02 and 0.05 of one trained run for each decoding (argmax, quarter, dark), as a markdown
table: the same predictions, decoded three ways (``dapose_jax.pose.decoding``).

  python experiments/decoding_table.py runs/demo [--split test]

The run folder's newest checkpoint (or a ``best`` or step folder) on both domains' ``--split``; distances in the
original images' pixels (the evaluators' default).
"""

import argparse

import dapose_jax
from dapose_jax.commands import evaluate
from dapose_jax.config import defaults
from dapose_jax.pose import decoding

THRESHOLDS = (0.02, 0.05)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run", help="a run folder, its best/ folder or one step folder")
  parser.add_argument("--split", default="test")
  args = parser.parse_args()
  model = dapose_jax.load(args.run)
  evals = {}
  for decoder in decoding.DECODERS:
    for domain in defaults.DOMAINS:
      evals[f"{domain}/{decoder}/epe"] = dict(type="epe", domain=domain, split=args.split, decoding=decoder)
      for t in THRESHOLDS:
        evals[f"{domain}/{decoder}/pck_bbox@{t}"] = dict(type="pck_bbox", domain=domain, split=args.split,
                                                         decoding=decoder, threshold=t)
  results, _ = evaluate.evaluate(model.restored, model.mesh, evals)
  print(f"{args.run}, step {model.step}, {args.split} split\n")
  print("| domain | decoding | EPE (px) | PCK-bbox@0.02 | PCK-bbox@0.05 |\n|---|---|---|---|---|")
  for domain in defaults.DOMAINS:
    for decoder in decoding.DECODERS:
      row = [results[f"{domain}/{decoder}/epe"]["all"]]
      row += [results[f"{domain}/{decoder}/pck_bbox@{t}"]["all"] for t in THRESHOLDS]
      print(f"| {domain} | {decoder} | " + " | ".join(f"{value:.2f}" for value in row) + " |")


if __name__ == "__main__":
  main()
