"""TFDS builder for Hand-3D-Studio (H3D) in tllib's pre-cropped release ``H3D_crop``.

tllib's ``Hand3DStudio`` does not read the original H3D release. It reads its own ``H3D_crop`` archive: images
already cropped around the hand (1.5x the hand box, per its docstring) and ``annotation.json``, a list of
{'name': image path under H3D_crop, 'keypoint2d': 21x2 pixels of that image, 'keypoint3d': 21x3,
'intrinsic_matrix': 3x3, 'without_object': 0 or 1}. The keypoints are already in Hand21 order (wrist, then per
finger MCP -> tip). tllib neither crops nor flips these images, so this builder stores each image as it is, with
its keypoints unchanged. Every keypoint is visible.

Only tllib's default task 'noobject' is built: the entries with ``without_object == 1``, in file order. As
tllib does, the list is shuffled with ``random.seed(42); random.shuffle``. 'test' is its first
min(int(0.2 N), 3200) entries and 'train' the rest, both stored in the shuffled order.

Encoding: a JPEG file in RGB is stored byte for byte. Any other file is decoded and stored as JPEG at quality
95, the setting the RHD and FreiHAND crops use.
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data.builders import common


class H3d(common.Builder, skip_registration=True):
  """Hand-3D-Studio as tllib's H3D_crop: hands without objects, stored as released."""

  LAYOUT = (
      "  MANUAL_DIR/H3D_crop/annotation.json   list of {'name': path under H3D_crop, 'keypoint2d': 21x2, "
      "'keypoint3d': 21x3, 'intrinsic_matrix': 3x3, 'without_object': 0/1}\n"
      "  MANUAL_DIR/H3D_crop/part1/ ... part5/  the images that 'name' points to\n"
      "  (MANUAL_DIR may also be the H3D_crop folder itself)")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Get H3D_crop.tar, tllib's cropped release of Hand-3D-Studio (Zhao et al., ICASSP 2020). tllib's download "
      "link (cloud.tsinghua.edu.cn) is dead (tllib issue #268) and its crop script was never published, so "
      "ask tllib's or H3D's authors (https://www.yangangwang.com/papers/ZHAO-H3S-2020-02.html) for a copy. "
      f"Unpack it so that:\n{LAYOUT}")
  HOMEPAGE = "https://www.yangangwang.com/papers/ZHAO-H3S-2020-02.html"
  CITATION = """@inproceedings{Zhao20,
  title = {Hand-3D-Studio: A New Multi-View System for 3D Hand Reconstruction},
  author = {Zhao, Zhengyi and Wang, Tianyao and Xia, Siyu and Wang, Yangang},
  booktitle = {Proceedings of the IEEE International Conference on Acoustics, Speech and Signal Processing
               (ICASSP)},
  pages = {2478--2482},
  year = {2020}
}"""

  def _features(self):
    return common.features(
        21,  # keypoints: 'keypoint2d'
        keypoints3d=common.tensor(21, 3),  # 'keypoint3d'
        intrinsic_matrix=common.tensor(3, 3),
        image_file=tfds.features.Text(),  # 'name', relative to H3D_crop
        annotation_index=np.int32)  # position in annotation.json

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    root = root / "H3D_crop" if (root / "H3D_crop").exists() else root
    path = root / "annotation.json"
    entries = common.read_json(path, self.LAYOUT)
    if not isinstance(entries, list):
      raise errors.CorruptInputError(f"{path}: expected a list of annotations, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
      self._check(entry, path, i)
    # tllib's task 'noobject', stored in tllib's shuffled order
    train, test = common.tllib_split(i for i, entry in enumerate(entries) if int(entry["without_object"]) == 1)
    common.require_all((root / entries[i]["name"] for i in test + train), self.LAYOUT, f"images that {path} names")
    return {"train": self._generate_examples(root, entries, train),
            "test": self._generate_examples(root, entries, test)}

  def _check(self, entry, path, i):
    if not isinstance(entry, dict) or not {"name", "without_object", "keypoint2d"} <= entry.keys():
      raise errors.CorruptInputError(f"{path}: entry {i} lacks 'name', 'without_object' or 'keypoint2d': "
                                     f"{str(entry):.200}")
    for key, shape in (("keypoint2d", (21, 2)), ("keypoint3d", (21, 3)), ("intrinsic_matrix", (3, 3))):
      try:
        value_shape = np.asarray(entry.get(key), np.float64).shape
      except (TypeError, ValueError):
        value_shape = None
      if value_shape != shape:
        raise errors.CorruptInputError(f"{path}: entry {i} ({entry['name']}): expected {key!r} of shape {shape}, "
                                       f"got {str(entry.get(key)):.200}")

  def _generate_examples(self, root, entries, indices):
    for key, i in enumerate(indices):
      entry = entries[i]
      # the file's own bytes when it is an RGB JPEG
      image = self._read_image(f"entry {i} of annotation.json", common.jpeg_file, root / entry["name"])
      if image is None:
        continue
      jpeg, _ = image
      yield key, {
          "image": jpeg,
          "keypoints": np.asarray(entry["keypoint2d"], np.float32), "visible": np.ones(21, np.float32),
          "keypoints3d": np.asarray(entry["keypoint3d"], np.float32),
          "intrinsic_matrix": np.asarray(entry["intrinsic_matrix"], np.float32),
          "image_file": entry["name"], "annotation_index": i,
      }
