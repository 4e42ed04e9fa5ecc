"""Builds a data set from its manually downloaded release into TFDS ArrayRecord files (no TensorFlow needed).

  python -m dapose_jax.data.build --dataset lsp --manual_dir ~/data/lsp [--data_dir ~/tensorflow_datasets]

(also ``dapose-jax build ...``). TFDS writes into a temporary ``<data_dir>/<name>/incomplete.*`` folder and
renames it to the version folder only when every split is written, so an interrupted build is never read
(``make_source`` still reports the data set as missing). A re-run rebuilds from scratch; a leftover
``incomplete.*`` folder from a killed build may be deleted. A re-run after a finished build does nothing.
"""

import pathlib
import sys
import time

import tensorflow_datasets as tfds
from absl import flags

from dapose_jax import cli
from dapose_jax.data import builders

FLAGS = flags.FLAGS


def build(name, manual_dir, data_dir="~/tensorflow_datasets"):
  """Builds ``name`` into ``data_dir`` (if not built yet) and returns its builder."""
  builder = builders.REGISTRY[name](data_dir=str(pathlib.Path(data_dir).expanduser()),
                                    file_format="array_record")
  manual_dir = pathlib.Path(manual_dir).expanduser()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def define_flags():
  flags.DEFINE_enum("dataset", None, sorted(builders.REGISTRY), "The data set to build.")
  flags.DEFINE_string("manual_dir", None, "The data set's release, downloaded by hand and unpacked; a build that "
                      "misses a file names it and shows the expected layout.")
  flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where the built data sets live.")
  flags.mark_flags_as_required(["dataset", "manual_dir"])


def main(argv):
  cli.expect_no_arguments(argv)
  start = time.perf_counter()
  builder = build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir)
  splits = ", ".join(f"{name}: {split.num_examples} examples" for name, split in builder.info.splits.items())
  print(f"{FLAGS.dataset} is built in {builder.data_dir} ({splits}; {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
