"""Random-access data sources by name: each item is dict(image uint8 (H, W, 3), keypoints (K, 2), visible (K,)).

Built TFDS data sets (see ``dapose_jax.data.build``) also carry their raw annotations (LSP: ``joints14``,
``image_id``), which the pipeline ignores.
"""

import pathlib

from dapose_jax import skeletons


class MissingDatasetError(FileNotFoundError):
  pass


def make_source(data_config, split):
  """The source named by ``data_config.name`` for ``split`` ('train' or 'test')."""
  name = data_config.name
  if name == "synthetic":
    from dapose_jax.data import synthetic

    size = data_config.train_size if split == "train" else data_config.test_size
    return synthetic.SyntheticPose(
        style=data_config.style, split=split, num_samples=size,
        image_size=data_config.render_size, seed=data_config.seed)
  from dapose_jax.data import builders

  if name in builders.REGISTRY:
    return _built_source(builders.REGISTRY[name], name, data_config.data_dir, split)
  raise MissingDatasetError(
      f"dataset {name!r} is not available: dapose_jax can build {sorted(builders.REGISTRY)} (python -m "
      "dapose_jax.data.build) and embeds 'synthetic' (e.g. --config configs/demo.py); the other real "
      "benchmarks have no builder yet (see the README's status table).")


def _built_source(builder_class, name, data_dir, split):
  if split not in builder_class.SPLITS:
    raise ValueError(f"unknown split {split!r} of {name!r}; expected one of {sorted(builder_class.SPLITS)}")
  data_dir = pathlib.Path(data_dir).expanduser()
  builder = builder_class(data_dir=str(data_dir))
  if not builder.is_prepared():
    raise MissingDatasetError(
        f"dataset {name!r} is not built in {data_dir}. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}\n"
        f"Then build it once (seconds to minutes):\n  python -m dapose_jax.data.build --dataset {name} "
        f"--manual_dir MANUAL_DIR --data_dir {data_dir}")
  return builder.as_data_source(split=builder_class.SPLITS[split])


def keypoint_set(data_config):
  if data_config.name == "synthetic":
    return skeletons.BODY16
  return skeletons.get(data_config.keypoint_set)
