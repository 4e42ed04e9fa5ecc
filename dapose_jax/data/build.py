"""Builds a data set from its manually downloaded release into TFDS ArrayRecord files (no TensorFlow needed).

  python -m dapose_jax.data.build --dataset lsp --manual_dir ~/data/lsp [--data_dir ~/tensorflow_datasets]

TFDS writes into a temporary ``<data_dir>/<name>/incomplete.*`` folder and renames it to the version folder
only when every split is written, so an interrupted build is never read (``make_source`` still reports the
data set as missing). A re-run rebuilds from scratch; a leftover ``incomplete.*`` folder from a killed
build may be deleted. A re-run after a finished build does nothing.
"""

import argparse
import pathlib
import time

import tensorflow_datasets as tfds

from dapose_jax.data import builders


def build(name, manual_dir, data_dir="~/tensorflow_datasets"):
  """Builds ``name`` into ``data_dir`` (if not built yet) and returns its builder."""
  builder = builders.REGISTRY[name](data_dir=str(pathlib.Path(data_dir).expanduser()),
                                    file_format="array_record")
  manual_dir = pathlib.Path(manual_dir).expanduser()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  names = sorted(builders.REGISTRY)
  parser.add_argument("--dataset", required=True, choices=names, metavar="NAME", help=f"one of {', '.join(names)}")
  parser.add_argument("--manual_dir", required=True,
                      help="the data set's release, downloaded by hand and unpacked; a build that misses a file "
                           "names it and shows the expected layout")
  parser.add_argument("--data_dir", default="~/tensorflow_datasets")
  args = parser.parse_args()
  start = time.perf_counter()
  builder = build(args.dataset, args.manual_dir, args.data_dir)
  splits = ", ".join(f"{name}: {split.num_examples} examples" for name, split in builder.info.splits.items())
  print(f"{args.dataset} is built in {builder.data_dir} ({splits}; {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  main()
