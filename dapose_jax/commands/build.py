"""Builds a data set from its manually downloaded release into TFDS ArrayRecord files (no TensorFlow needed).

  python -m dapose_jax build --dataset lsp --manual_dir ~/data/lsp [--data_dir ~/tensorflow_datasets]

(also ``dapose-jax build ...``). TFDS writes into a temporary ``<data_dir>/<name>/incomplete.*`` folder and
renames it to the version folder only when every split is written, so an interrupted build is never read
(``make_source`` still reports the data set as missing). A re-run rebuilds from scratch; a leftover
``incomplete.*`` folder from a killed build may be deleted. A re-run after a finished build does nothing.

Every image is decoded once during the build: a corrupt or truncated file stops it with an error naming the file
and its sample, and nothing is left for ``make_source`` to read. With ``--skip_corrupt`` such samples are left
out instead, each with a warning, and listed in ``skipped.json`` in the built version folder (``SKIPPED``).
"""

import json
import pathlib
import sys
import time

from absl import flags

from dapose_jax.commands import cli
from dapose_jax.config import datasets

FLAGS = flags.FLAGS
SKIPPED = "skipped.json"  # in the version folder: [{sample, file, error}, ...] of the samples a build left out


def build(name, manual_dir, data_dir="~/tensorflow_datasets", skip_corrupt=False):
  """Builds ``name`` into ``data_dir`` (if not built yet) and returns its builder. With ``skip_corrupt``, samples
  whose image file cannot be decoded are left out and listed in ``SKIPPED``; without, such a file fails the
  build (``common.CorruptImageError``)."""
  import tensorflow_datasets as tfds  # here, not at the top: --help must not load TFDS

  from dapose_jax.data import builders

  builder = builders.REGISTRY[name](data_dir=str(pathlib.Path(data_dir).expanduser()),
                                    file_format="array_record", skip_corrupt=skip_corrupt)
  manual_dir = pathlib.Path(manual_dir).expanduser()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  if builder.skipped:
    skipped = sorted(builder.skipped, key=lambda s: (s["file"], s["sample"]))  # thread pools finish in any order
    (pathlib.Path(builder.data_dir) / SKIPPED).write_text(json.dumps(skipped, indent=1) + "\n")
  return builder


def skipped_samples(builder):
  """The ``SKIPPED`` list of a built data set ([] if its build left nothing out)."""
  path = pathlib.Path(builder.data_dir) / SKIPPED
  return json.loads(path.read_text()) if path.exists() else []


def define_flags():
  flags.DEFINE_enum("dataset", None, datasets.BUILDABLE, "The data set to build.")
  flags.DEFINE_string("manual_dir", None, "The data set's release, downloaded by hand and unpacked; a build that "
                      "misses a file names it and shows the expected layout.")
  flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where the built data sets live.")
  flags.DEFINE_bool("skip_corrupt", False, "Leave out the samples whose image file cannot be decoded (truncated "
                    f"or corrupt), each with a warning, and list them in {SKIPPED} next to the built data, instead "
                    "of failing the build.")
  flags.mark_flags_as_required(["dataset", "manual_dir"])


def main(argv):
  cli.expect_no_arguments(argv)
  start = time.perf_counter()
  builder = build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir, skip_corrupt=FLAGS.skip_corrupt)
  splits = ", ".join(f"{name}: {split.num_examples} examples" for name, split in builder.info.splits.items())
  skipped = skipped_samples(builder)
  if skipped:
    splits += (f"; {len(skipped)} corrupt sample{'s' if len(skipped) > 1 else ''} skipped, listed in "
               f"{pathlib.Path(builder.data_dir) / SKIPPED}")
  print(f"{FLAGS.dataset} is built in {builder.data_dir} ({splits}; {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
