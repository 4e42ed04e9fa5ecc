"""Random-access data sources by name: each item is dict(image uint8 (H, W, 3), keypoints (K, 2), visible (K,)), or
with ``pairs`` dict(base=item, driving=item) of two poses of the same figure (the training loop asks for pairs
where the data config's ``pairs`` is set): the renderer's two poses ('synthetic'), or two stored frames of one
video sequence in the base's crop for the built data sets that have a pair index (``dapose_jax.data.pairs``:
Human3.6M, SURREAL built from the raw release).

Every source reports the keypoint set it stores (``source.keypoint_set``, a ``skeletons.KeypointSet``): the
embedded renderer declares it in ``SyntheticPose``, the TFDS builders' in ``config.datasets``. A data config's
``keypoint_set`` is filled from ``config.datasets`` when the config is made (``config.defaults.domain``) and checked
against the source's when the source is opened. Built TFDS data sets (see ``dapose_jax.commands.build``) also
carry their raw annotations (LSP: ``joints14``, ``image_id``), which the pipeline ignores. A built sample that cannot be decoded
raises ``CorruptSampleError`` naming the data set, the split and the index.

The samples of a data set whose release annotates a person or animal box (AnimalPose; SynAnimal, the box of its
rendered mesh) also hold ``box`` [x0, y0, x1, y1] in pixels of the stored image, made from the stored annotation by
the builder's ``annotated_box``, and their source says ``annotated_boxes = True`` (a source without the attribute
has no boxes); PCK-bbox normalises by it (``dapose_jax.evaluators.coordinates``).
"""

import dataclasses
import pathlib

from dapose_jax import errors
from dapose_jax.pose import skeletons


class MissingDatasetError(errors.MissingInputError):
  pass


class CorruptSampleError(errors.CorruptInputError):
  pass


def make_source(data_config, split, pairs=False):
  """The source named by ``data_config.name`` for ``split`` ('train' or 'test'), of pairs with ``pairs``."""
  name = data_config.name
  if name == "synthetic":
    from dapose_jax.data import synthetic

    size = data_config.train_size if split == "train" else data_config.test_size
    source = synthetic.SyntheticPose(
        style=data_config.style, split=split, num_samples=size,
        image_size=data_config.render_size, seed=data_config.seed, pairs=pairs)
  else:
    from dapose_jax.data import pairs as dataset_pairs

    if pairs and not dataset_pairs.has_index(name):
      raise errors.ConfigError(f"pairs=True: data set {name!r} has no pair index yet (pairs come from 'synthetic' "
                               f"and the video data sets {sorted(dataset_pairs.SEQUENCES)}); set its config's "
                               "pairs=False (the geometric method then pairs two views of each image)")
    source = _built_source(_builder_class(name), name, data_config.data_dir, split)
    if pairs:
      source = dataset_pairs.PairedSplit(source, name)
  if data_config.keypoint_set != source.keypoint_set.name:
    raise errors.ConfigError(f"data set {name!r} stores {source.keypoint_set.name} keypoints, but its config says "
                     f"keypoint_set={data_config.keypoint_set!r}; leave keypoint_set as the config file sets it")
  return source


def _builder_class(name):
  from dapose_jax.data import builders

  if name not in builders.REGISTRY:
    raise MissingDatasetError(
        f"dataset {name!r} is not available: dapose_jax can build {sorted(builders.REGISTRY)} (python -m "
        "dapose_jax.commands.build) and embeds 'synthetic' (e.g. --config configs/demo.py); the other real "
        "benchmarks have no builder yet (docs/datasets.md).")
  return builders.REGISTRY[name]


class BuiltSplit:
  """One split of a built TFDS data set, read by index, with the keypoint set its builder declares. ``where``
  names the split in errors, e.g. "data set 'lsp' split 'test'"; ``rebuild`` says how to build it again;
  ``annotated_box`` (the builder's, or None) makes each sample's ``box``."""

  def __init__(self, data_source, keypoint_set, where, rebuild, annotated_box=None):
    self._data = data_source
    self.keypoint_set = keypoint_set
    self._where = where
    self._rebuild = rebuild
    self._annotated_box = annotated_box
    self.annotated_boxes = annotated_box is not None  # whether each sample holds ``box``

  def __len__(self):
    return len(self._data)

  def __getitem__(self, index):
    try:
      sample = self._data[index]
    except IndexError:  # past the end: ends an iteration
      raise
    except Exception as error:  # noqa: BLE001  e.g. TFDS's decoder gets None from OpenCV for a truncated JPEG
      raise self._corrupt(index, errors.one_line(error)) from error
    if sample["image"] is None or not sample["image"].size:
      raise self._corrupt(index, "empty image")
    if self._annotated_box is not None:
      sample["box"] = self._annotated_box(sample)
    return sample

  def without_images(self):
    """The split's TFDS data source with every field decoded but the image, left as its JPEG bytes (TFDS's
    ``SkipDecoding``): for reading metadata. Each record is still read from disk whole."""
    if not len(self._data):
      return self._data
    import tensorflow_datasets as tfds

    return dataclasses.replace(self._data, decoders={"image": tfds.decode.SkipDecoding()})

  def _corrupt(self, index, cause):
    return CorruptSampleError(f"{self._where} sample {index} cannot be decoded ({cause}); {self._rebuild} (a build "
                              "checks every image)")

  def __repr__(self):
    return f"BuiltSplit({self._data!r}, keypoint_set={self.keypoint_set.name})"


def _built_source(builder_class, name, data_dir, split):
  if split not in builder_class.SPLITS:
    raise errors.ConfigError(f"unknown split {split!r} of {name!r}; expected one of {sorted(builder_class.SPLITS)}")
  data_dir = pathlib.Path(data_dir).expanduser()
  builder = builder_class(data_dir=str(data_dir))
  if not builder.is_prepared():
    raise MissingDatasetError(
        f"dataset {name!r} is not built in {data_dir}. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}\n"
        f"Then build it once (seconds to minutes):\n  {_build_command(name, data_dir)}")
  rebuild = f"delete {builder.data_dir} and build it again with {_build_command(name, data_dir)}"
  return BuiltSplit(builder.as_data_source(split=builder_class.SPLITS[split]),
                    skeletons.get(builder_class.keypoint_set()), f"data set {name!r} split {split!r}", rebuild,
                    builder_class.annotated_box)


def _build_command(name, data_dir):
  return f"python -m dapose_jax build --dataset {name} --manual_dir MANUAL_DIR --data_dir {data_dir}"
