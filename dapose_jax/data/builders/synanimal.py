"""TFDS builders for SynAnimal (Mu et al., CVPR 2020), the synthetic source of UDAPE's animal tasks.

The release renders each animal 10,000 times (640 x 480 PNG, ``<prefix>img.png``) with the image position
of every mesh vertex (``<prefix>kpts.npy``, one row [x, y, ...] per vertex). As UDAPE
(``synthetic_animal_sp_all.py`` and ``synthetic_animal_sp_all_other.py``, ``generate_data_file``):

- images are the folder's ``*img.png`` in sorted order; UDAPE's cached ``train_idxs.npy`` /
  ``valid_idxs.npy`` index that list (8000 / 2000 per animal) and give the stored 'train' / 'test' splits,
  in the files' order, animal after animal;
- the keypoints are the rows of fixed mesh vertices (``VERTEX_IDS``): Animal18 for horse and tiger,
  Animal14 for hound and sheep;
- every keypoint is visible, except one outside the image (UDAPE zeroes those);
- the crop square is centred on the extent of all vertices clipped to the image, side 1.25 x its longer
  edge (``common.udape_box``); the extent itself (UDAPE's ``bbox``) is the box PCK-bbox normalises by
  (``annotated_box``).

One builder per animal, plus the pairs UDAPE trains on with ``--animal all`` (horse + tiger, hound + sheep).
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data import pickles
from dapose_jax.data.builders import common

# Mesh vertex of each keypoint, in keypoint-set order (UDAPE generate_data_file).
VERTEX_IDS = {
    "horse": (1718, 1684, 1271, 1634, 1650, 1643, 1659, 925, 392, 564, 993, 726, 1585, 1556, 427, 1548, 967, 877),
    "tiger": (2753, 2679, 2032, 1451, 1287, 3085, 1632, 229, 1441, 1280, 2201, 1662, 266, 158, 270, 152, 219, 129),
    "hound": (2028, 2580, 878, 977, 1541, 1734, 799, 1575, 1446, 602, 780, 1580, 466, 631),
    "sheep": (2046, 1944, 1875, 1900, 1868, 1894, 173, 1829, 1422, 821, 622, 575, 1370, 716),
}

LAYOUT = (
    "  MANUAL_DIR/synthetic_animal/<animal>_combineds5r5_texture/<prefix>img.png   renders (640x480)\n"
    "  MANUAL_DIR/synthetic_animal/<animal>_combineds5r5_texture/<prefix>kpts.npy  one row [x, y, ...] per "
    "mesh vertex\n"
    "  MANUAL_DIR/cached_data/synthetic_animal/<animal>_combineds5r5_texture/train_idxs.npy, valid_idxs.npy")


class _SynAnimal(common.AnimalBuilder, skip_registration=True):
  """Shared reader; subclasses name the animals (one keypoint set). Splits: UDAPE's train_idxs and valid_idxs."""

  LAYOUT = LAYOUT
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download <animal>_combineds5r5_texture.zip for each animal from https://www.cs.jhu.edu/~qiuwch/animal/ "
      "(UDAPE's get_dataset.sh) and unzip them into MANUAL_DIR/synthetic_animal/. "
      f"{common.CACHED_DATA_NOTE} Expected layout:\n{LAYOUT}")
  HOMEPAGE = "https://www.cs.jhu.edu/~qiuwch/animal/"
  CITATION = """@inproceedings{Mu20,
  title = {Learning From Synthetic Animals},
  author = {Mu, Jiteng and Qiu, Weichao and Hager, Gregory D. and Yuille, Alan L.},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2020}
}"""

  def _features(self):
    k = len(VERTEX_IDS[self.ANIMALS[0]])
    # Raw annotation: the keypoint vertices in render pixels, UDAPE's box [x_min, x_max, y_min, y_max] over all
    # vertices (not clipped), the crop square [x0, y0, side] in render pixels.
    return common.features(
        k, keypoints_original=common.tensor(k, 2), bbox=common.tensor(4), crop_box=common.crop_box_feature(),
        animal=tfds.features.Text(),
        image_index=np.int32)  # position in the animal's sorted list of renders

  @staticmethod
  def annotated_box(example):
    """UDAPE's box of every mesh vertex (the whole rendered body, not clipped to the render) in pixels of the
    stored crop."""
    x_min, x_max, y_min, y_max = example["bbox"]
    return common.udape_stored_box([x_min, y_min, x_max, y_max], example["crop_box"], example["image"].shape[1])

  def _animal_samples(self, root, animal):
    folder = common.require(root / "synthetic_animal" / f"{animal}_combineds5r5_texture", LAYOUT)
    renders = sorted(folder.glob("*img.png"), key=str)
    if not renders:
      raise errors.MissingInputError(f"no *img.png renders in {folder}; expected layout:\n{LAYOUT}")
    cached = root / "cached_data" / "synthetic_animal" / f"{animal}_combineds5r5_texture"
    return {split: [(renders[i], i) for i in common.load_indices(cached / file_name, len(renders), LAYOUT)]
            for split, file_name in (("train", "train_idxs.npy"), ("test", "valid_idxs.npy"))}

  def _example(self, animal, sample):
    render, index = sample
    vertices = _load_vertices(render.with_name(render.name[:-len("img.png")] + "kpts.npy"), animal)
    image = self._read_image(f"{animal} render {index}", common.read_rgb, render, LAYOUT)
    if image is None:
      return None
    h, w = image.shape[:2]
    x_min, y_min = vertices[:, :2].min(axis=0)
    x_max, y_max = vertices[:, :2].max(axis=0)
    box = common.udape_box(np.clip(x_min, 0, w), np.clip(y_min, 0, h), np.clip(x_max, 0, w), np.clip(y_max, 0, h))
    points = vertices[list(VERTEX_IDS[animal]), :2]
    x, y = points[:, 0], points[:, 1]
    # UDAPE zeroes keypoints outside the render and skips those at y <= 0.
    visible = ((x >= 0) & (x <= w) & (y > 0) & (y <= h)).astype(np.float32)
    encoded, keypoints = common.udape_sample(image, box, points)
    return {"image": encoded, "keypoints": keypoints, "visible": visible,
            "keypoints_original": points.astype(np.float32),
            "bbox": np.array([x_min, x_max, y_min, y_max], np.float32),
            "crop_box": box, "animal": animal, "image_index": int(index)}


def _load_vertices(path, animal):
  vertices = pickles.read_npy(common.require(path, LAYOUT))
  needed = max(VERTEX_IDS[animal]) + 1
  if vertices.ndim != 2 or vertices.shape[1] < 2 or vertices.shape[0] < needed:
    raise errors.CorruptInputError(f"{path}: expected one row [x, y, ...] per mesh vertex, at least {needed} rows "
                                   f"for the {animal} keypoint vertices, got shape {vertices.shape}")
  return vertices.astype(np.float64)


class SynAnimalHorse(_SynAnimal, skip_registration=True):
  name = "synanimal_horse"
  ANIMALS = ("horse",)


class SynAnimalTiger(_SynAnimal, skip_registration=True):
  name = "synanimal_tiger"
  ANIMALS = ("tiger",)


class SynAnimalHorseTiger(_SynAnimal, skip_registration=True):
  """UDAPE's ``--animal all`` for Animal18."""

  name = "synanimal_horse_tiger"
  ANIMALS = ("horse", "tiger")


class SynAnimalHound(_SynAnimal, skip_registration=True):
  name = "synanimal_hound"
  ANIMALS = ("hound",)


class SynAnimalSheep(_SynAnimal, skip_registration=True):
  name = "synanimal_sheep"
  ANIMALS = ("sheep",)


class SynAnimalHoundSheep(_SynAnimal, skip_registration=True):
  """UDAPE's ``--animal all`` for Animal14."""

  name = "synanimal_hound_sheep"
  ANIMALS = ("hound", "sheep")


BUILDERS = {b.name: b for b in (SynAnimalHorse, SynAnimalTiger, SynAnimalHorseTiger, SynAnimalHound,
                                SynAnimalSheep, SynAnimalHoundSheep)}
