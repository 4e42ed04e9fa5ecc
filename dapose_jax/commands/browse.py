"""The ``browse`` command: a contact sheet of a data set's samples as a run sees them, keypoints drawn.

  python -m dapose_jax browse --config configs/demo.py:smoke [--domain source|target] [--split train|test]
      [--count 16] [--columns N] [--tile_size PX] [--out DIR] [--seed N] [--overwrite]

(also ``dapose-jax browse ...``). ``--split train`` shows the first samples of the training stream with their
augmentation, exactly as a run of the config trains on them (``pipeline.train_iterator``, seeded as
``loop.train_iterators`` seeds it); ``--split test`` the first samples of the test split in the test transform,
as the evaluators see them. Each tile is labelled with its position in that stream (test: the sample's index) and
the sheet ends with a legend of the keypoint colours (``drawing``: left warm, right cool, centre green), the
quickest way to catch a wrong flip pair or joint map. Writes ``DIR/contact_sheet.png`` with ``--out DIR``, else
``runs/browse/CONFIG[_VARIANT]_DOMAIN_SPLIT.png`` in the current folder (``default_sheet``, e.g.
runs/browse/demo_smoke_source_train.png), making the folders, prints the path, and never replaces a sheet without
``--overwrite``.
"""

import functools
import itertools
import math
import pathlib
import sys

import numpy as np
from absl import flags
from ml_collections import config_flags

from dapose_jax import errors
from dapose_jax.commands import cli
from dapose_jax.config import defaults, files
from dapose_jax.pose import skeletons

# JAX, OpenCV and the data pipeline are imported in the functions that use them: --help must not load them
FLAGS = flags.FLAGS
SHEET = "contact_sheet.png"  # the sheet's name in --out
DEFAULT_FOLDER = pathlib.Path("runs", "browse")  # the sheets without --out: in runs/ (which .gitignore leaves out)


def define_flags():
  cli.define_config_flag()
  flags.DEFINE_enum("domain", "source", defaults.DOMAINS, "The data set of the config to show.")
  flags.DEFINE_enum("split", "train", ("train", "test"), "train: augmented, as the run trains on it; test: the test "
                    "transform, as the evaluators see it.")
  flags.DEFINE_integer("count", 16, "How many samples to show.", lower_bound=1)
  flags.DEFINE_integer("columns", None, "Tiles per row (default: a square grid).", lower_bound=1)
  flags.DEFINE_integer("tile_size", None, "Side of a tile in pixels; samples are resized to it (default: the "
                       "config's image_size, as the model sees them).", lower_bound=16)
  flags.DEFINE_string("out", None, f"Folder of {SHEET} (default: the sheet is "
                      f"{DEFAULT_FOLDER}/CONFIG[_VARIANT]_DOMAIN_SPLIT.png in the current folder).")
  flags.DEFINE_integer("seed", None, "--split=train: the seed of the stream's shuffle and augmentation (default: the "
                       "one a run of the config uses, config.seed, + 1 for the target).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing sheet.")


def samples(config, domain, split, seed=None):
  """The samples of ``config[domain]``'s ``split`` in the order and form a run sees them: dicts of image
  (S, S, 3) uint8, keypoints (K, 2) in its pixels, visible (K,). Train: the endless augmented stream (seeded
  by ``seed``, default the run's; with ``augment.on_device`` each batch augmented as the train step of its step
  augments it); test: every sample once, in the test transform."""
  import jax

  from dapose_jax.augment import device_augment
  from dapose_jax.data import pipeline, sources
  from dapose_jax.run import loop

  source = sources.make_source(config[domain], split)
  if split == "train":
    seed = loop.stream_seed(config, domain) if seed is None else seed
    batches = loop.train_iterator(config, domain, source, seed=seed)
    params = device_augment.from_config(config, domain)
    if params is not None:
      on_device = jax.jit(functools.partial(device_augment.augment_at, seed, params=params))
      batches = (jax.device_get(on_device(step, batch)) for step, batch in enumerate(batches, 1))
  else:
    batches = pipeline.eval_batches(source, batch_size=config.eval_batch_size, image_size=config.image_size,
                                    resize_pad=config[domain].resize_pad)
  for batch in batches:
    real = batch["mask"] > 0 if "mask" in batch else np.ones(len(batch["image"]), bool)  # test: padding is not
    for i in np.flatnonzero(real):
      yield {key: batch[key][i] for key in ("image", "keypoints", "visible")}


def contact_sheet(items, keypoint_set, columns=None, tile_size=None):
  """The ``items`` (dicts of image, keypoints, visible) with their keypoints drawn, as tiles of ``tile_size``
  (default: the image's size) labelled with their position, ``columns`` per row (default: a square grid),
  above the legend of the keypoint colours."""
  import cv2

  from dapose_jax.plots import drawing

  tiles = []
  for index, item in enumerate(items):
    image, keypoints = item["image"], np.asarray(item["keypoints"], np.float64)
    if tile_size is not None and tile_size != image.shape[0]:
      keypoints = keypoints * [tile_size / image.shape[1], tile_size / image.shape[0]]
      shrink = tile_size < image.shape[0]
      image = cv2.resize(image, (tile_size, tile_size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    tile = drawing.draw_keypoints(image, keypoints, keypoint_set, item["visible"])
    drawing.put_label(tile, str(index), (2, 2))
    tiles.append(tile)
  sheet = drawing.grid(tiles, columns or math.ceil(math.sqrt(len(tiles))))
  return np.concatenate([sheet, drawing.legend(keypoint_set, sheet.shape[1])])


def default_sheet(config_argument, domain, split):
  """The sheet's path without --out: ``DEFAULT_FOLDER/CONFIG[_VARIANT]_DOMAIN_SPLIT.png``, CONFIG the stem of the
  ``--config`` file and VARIANT its variant's tokens joined by _ (``configs/demo.py:smoke`` and ``demo:smoke`` are
  demo_smoke)."""
  file, variant = files.resolve(config_argument)
  tokens = [token.strip() for token in variant.split(",") if token.strip()]
  return DEFAULT_FOLDER / f"{'_'.join([file.stem, *tokens, domain, split])}.png"


def main(argv):
  from dapose_jax.plots import drawing

  cli.expect_no_arguments(argv)
  cli.log_progress_to_stderr()
  if FLAGS.split == "test" and FLAGS.seed is not None:
    raise errors.ConfigError("--seed seeds the training stream's shuffle and augmentation; --split=test has neither")
  config = FLAGS.config
  if FLAGS.out:
    path = pathlib.Path(FLAGS.out).expanduser() / SHEET
  else:
    path = default_sheet(config_flags.get_config_filename(FLAGS["config"]), FLAGS.domain, FLAGS.split)
  if path.exists() and not FLAGS.overwrite:
    raise errors.UserError(f"{path} exists; --overwrite replaces it, or choose another --out")
  keypoint_set = skeletons.get(config[FLAGS.domain].keypoint_set)
  items = list(itertools.islice(samples(config, FLAGS.domain, FLAGS.split, FLAGS.seed), FLAGS.count))
  sheet = contact_sheet(items, keypoint_set, FLAGS.columns, FLAGS.tile_size)
  path.parent.mkdir(parents=True, exist_ok=True)
  drawing.save_png(path, sheet)
  print(f"{len(items)} {FLAGS.split} samples of {FLAGS.domain} ({config[FLAGS.domain].name}): {path}")


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
