"""Random-access data sources by name: each item is dict(image uint8 (H, W, 3), keypoints (K, 2), visible (K,))."""

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
  raise MissingDatasetError(
      f"dataset {name!r} is not built. Real benchmark data must be built from the public release with "
      f"`python -m dapose_jax.data.build --dataset {name} --manual_dir DIR --data_dir "
      f"{data_config.get('data_dir', '~/tensorflow_datasets')}`; see the README's 'Datasets' section for "
      "where to obtain each release and the expected layout. Only the embedded 'synthetic' data set "
      "needs no files.")


def keypoint_set(data_config):
  if data_config.name == "synthetic":
    return skeletons.BODY16
  return skeletons.get(data_config.keypoint_set)
