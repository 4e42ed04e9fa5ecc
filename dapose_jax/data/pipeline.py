"""Grain input pipelines: seeded shuffle, per-process sharding, keypoint-consistent augmentation, batching.

Batches hold uint8 images and keypoints; normalisation and heatmap targets are computed on the device.
"""

import functools
import os
import sys

import grain
import jax
import numpy as np

from dapose_jax.augment import transforms


def _train_sample(sample, rng, *, image_size, augment):
  if augment.enabled and not augment.on_device:
    image, kps = sample["image"], sample["keypoints"]
    if augment.resize_pad:  # LSP: squared by padding before the random crop, as UDAPE's LSP_mt does
      image, kps = transforms.resize_pad(image, kps, image_size)
    image, kps = transforms.train_augment(
        image, kps, rng, size=image_size,
        rotation_degrees=augment.rotation, scale=(augment.scale_min, augment.scale_max),
        color=augment.color, blur=augment.blur)
  elif augment.enabled:  # dapose_jax.augment.device_augment augments it in the train step; any aspect ratio is padded
    image, kps = transforms.resize_pad(sample["image"], sample["keypoints"], image_size)
  else:
    image, kps = transforms.test_transform(sample["image"], sample["keypoints"], image_size,
                                           pad=augment.resize_pad)
  return {"image": image, "keypoints": kps.astype(np.float32), "visible": sample["visible"].astype(np.float32)}


def _train_pair(pair, rng, *, image_size, augment):
  """``_train_sample`` of a pair's base and driving sample with the same random draws: one transform for both."""
  seed = rng.integers(2**63)
  return {name: _train_sample(pair[name], np.random.default_rng(seed), image_size=image_size, augment=augment)
          for name in ("base", "driving")}


def _test_sample(sample, *, image_size, resize_pad):
  """The test transform of a sample, and ``scale``: the stored image's pixels per input pixel along x and y (from
  where its corners (0, 0) and (W, H) land), which maps a difference of input positions back to that image. A
  sample's annotated ``box`` [x0, y0, x1, y1] (``sources``) goes through the transform with the keypoints."""
  height, width = sample["image"].shape[:2]
  num_keypoints = len(sample["keypoints"])
  box = np.reshape(sample.get("box", np.zeros((0, 2))), (-1, 2))
  points = np.concatenate([sample["keypoints"], box, [[0.0, 0.0], [width, height]]]).astype(np.float32)
  image, points = transforms.test_transform(sample["image"], points, image_size, pad=resize_pad)
  scale = np.array([width, height], np.float64) / (points[-1] - points[-2])
  out = {"image": image, "keypoints": points[:num_keypoints].astype(np.float32),
         "visible": sample["visible"].astype(np.float32), "scale": scale.astype(np.float32)}
  if "box" in sample:
    out["box"] = points[num_keypoints:-2].reshape(4).astype(np.float32)
  return out


def train_iterator(source, *, batch_size, image_size, augment, seed, num_threads=2, prefetch=4, workers=0,
                   start=0, sampler=None, pairs=False):
  """Infinite iterator of this process's share of each global training batch, from batch ``start`` on.

  Global batch j holds elements j*B .. j*B+B-1 of one seeded shuffled, repeated and augmented stream that every
  process defines alike (an element's augmentation is seeded by its position), and process p loads only its
  consecutive share of each; so the global batches do not depend on the number of processes, and a run resumes
  (on any number of processes) by starting at the batch of its step. A ``sampler`` (``dapose_jax.data.sampling``: the
  source index of each stream position, a pure function of the position) replaces the shuffled passes. With
  ``pairs`` (a source of dict(base, driving) samples) a batch is {"base": batch, "driving": batch}, the two
  samples of a pair augmented by the same draws (``_train_pair``).
  """
  local = batch_size // jax.process_count()
  if sampler is None:
    stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  else:
    stream = grain.MapDataset.range(sys.maxsize).seed(seed).map(functools.partial(
        _sampled_element, source=source, sampler=sampler))
  stream = stream.random_map(functools.partial(_train_pair if pairs else _train_sample, image_size=image_size,
                                               augment=augment))
  share = grain.MapDataset.range(len(stream) // batch_size * local).map(functools.partial(
      _element_of_share, stream=stream, global_batch=batch_size, local=local, offset=jax.process_index() * local))
  ds = share.batch(local, drop_remainder=True)[start:]
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  if workers:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it)


def train_batch_shapes(batch_size, image_size, num_keypoints, pairs=False):
  """The global shapes and dtypes (``jax.ShapeDtypeStruct``) of one batch of ``train_iterator``: uint8 images,
  float32 keypoints in input pixels and visibilities; {"base", "driving"} of those with ``pairs``."""
  batch = {"image": jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), np.uint8),
           "keypoints": jax.ShapeDtypeStruct((batch_size, num_keypoints, 2), np.float32),
           "visible": jax.ShapeDtypeStruct((batch_size, num_keypoints), np.float32)}
  return {"base": batch, "driving": batch} if pairs else batch


def worker_count(workers, pipelines=2):
  """Grain worker processes per training pipeline: ``workers`` if >= 0; -1 (auto) shares the cores this process
  may run on, less 2 for the train loop and the runtime's host threads, among the run's ``pipelines`` (source and
  target); 0 (threads in this process only) on 3 cores or fewer."""
  if workers >= 0:
    return workers
  return max(0, (len(os.sched_getaffinity(0)) - 2) // pipelines)


def _sampled_element(position, *, source, sampler):
  return source[sampler(position)]


def _element_of_share(k, *, stream, global_batch, local, offset):
  """Element ``k`` of one process's share: its (k // local)-th global batch, position offset + k % local."""
  return stream[k // local * global_batch + offset + k % local]


def eval_batches(source, *, batch_size, image_size, resize_pad, num_threads=2):
  """Every sample of ``source`` once, in global batches of ``batch_size`` split over processes.

  The last batch is padded with zero samples whose ``mask`` is 0, so every process runs the same
  number of equally shaped batches; ``index`` is each row's sample index in ``source`` (0 for padding).
  """
  n = len(source)
  local = batch_size // jax.process_count()
  offset = jax.process_index() * local
  num_batches = -(-n // batch_size)
  prepare = functools.partial(_test_sample, image_size=image_size, resize_pad=resize_pad)

  def load_batch(j):
    indices = j * batch_size + offset + np.arange(local)
    samples = [prepare(source[int(i)]) for i in indices if i < n]
    mask = np.zeros(local, np.float32)
    mask[: len(samples)] = 1
    padding = jax.tree.map(np.zeros_like, samples[0] if samples else prepare(source[0]))
    samples += [padding] * (local - len(samples))
    batch = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    batch["mask"] = mask
    batch["index"] = np.where(mask > 0, indices, 0).astype(np.int32)
    return batch

  ds = grain.MapDataset.range(num_batches).map(load_batch)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2)))
