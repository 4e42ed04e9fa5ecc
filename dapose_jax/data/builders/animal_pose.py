"""TFDS builders for AnimalPose (Cao et al., ICCV 2019), a real target of UDAPE's animal tasks (Animal14).

As UDAPE reads it (``animal_pose.py``, run by ``train_animal_other.py``):

- the samples are the annotations in UDAPE's cached ``real_animal_pose/<animal>/train_anno.npy`` /
  ``test_anno.npy`` (object arrays of the release's annotation dicts: ``image_id``, ``bbox`` [x_min, y_min,
  x_max, y_max], ``keypoints`` 20 x [x, y, v], ``category_id``), in the files' order, animal after animal
  (sorted); they give the stored 'train' / 'test' splits. The release's ``keypoints.json`` only maps image
  ids to file names (``'images'``, a dict);
- keypoints: 14 of the 20 (``FROM_20``: eyes, paws, knees, elbows); visibility is v, and 0 where y <= 0;
- the crop square is centred on the annotated box, side 1.25 x its longer edge (``common.udape_box``); the box
  is stored too, and PCK-bbox normalises by it (``annotated_box``).

UDAPE's ``--animal all`` is dog + sheep (builder ``animal_pose_dog_sheep``). Two copies of the cached folder
in UDAPE's repository name the five animals differently (datasets.md 1.10); the builder checks each
annotation's ``category_id`` against the names in ``keypoints.json`` ``'categories'`` when that list is
there, so a mislabelled folder fails the build instead of training on the wrong animal.
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data import pickles
from dapose_jax.data.builders import common

# The release's 20 keypoints, in file order.
NAMES20 = ("left_eye", "right_eye", "nose", "left_ear", "right_ear", "left_front_elbow", "right_front_elbow",
           "left_back_elbow", "right_back_elbow", "left_front_knee", "right_front_knee", "left_back_knee",
           "right_back_knee", "left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw", "throat",
           "withers", "tailbase")
# Index in the release of each Animal14 keypoint (UDAPE pts_index).
FROM_20 = (0, 1, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8)
ANIMALS = ("cat", "cow", "dog", "horse", "sheep")

LAYOUT = (
    "  MANUAL_DIR/animal-pose/keypoints.json   'images': {image id: file name}, 'annotations', 'categories'\n"
    "  MANUAL_DIR/animal-pose/images/<file name>\n"
    "  MANUAL_DIR/cached_data/real_animal_pose/<animal>/train_anno.npy, test_anno.npy")


class _AnimalPose(common.AnimalBuilder, skip_registration=True):
  """Shared reader; subclasses name the animals. Splits: UDAPE's train_anno and test_anno."""

  LAYOUT = LAYOUT
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download the Animal-Pose dataset (https://sites.google.com/view/animal-pose/: the images and "
      "keypoints.json) into MANUAL_DIR/animal-pose/. "
      f"{common.CACHED_DATA_NOTE} Expected layout:\n{LAYOUT}")
  HOMEPAGE = "https://sites.google.com/view/animal-pose/"
  CITATION = """@inproceedings{Cao19,
  title = {Cross-Domain Adaptation for Animal Pose Estimation},
  author = {Cao, Jinkun and Tang, Hongyang and Fang, Hao-Shu and Shen, Xiaoyong and Lu, Cewu and Tai, Yu-Wing},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year = {2019}
}"""

  def _features(self):
    # Raw annotation in image pixels: the 20 keypoints [x, y, v], the box [x_min, y_min, x_max, y_max], the crop
    # square [x0, y0, side].
    return common.features(
        len(FROM_20), joints20=common.tensor(len(NAMES20), 3), bbox=common.tensor(4),
        crop_box=common.crop_box_feature(), animal=tfds.features.Text(), image_id=np.int32, category_id=np.int32)

  @staticmethod
  def annotated_box(example):
    """The release's box of the animal (``bbox``) in pixels of the stored crop."""
    return common.udape_stored_box(example["bbox"], example["crop_box"], example["image"].shape[1])

  def _split_generators(self, dl_manager):
    self._release = _read_release(dl_manager.manual_dir)  # read once, for every animal
    return super()._split_generators(dl_manager)

  def _animal_samples(self, root, animal):
    json_path, file_names, categories = self._release
    samples = {}
    for split, file_name in (("train", "train_anno.npy"), ("test", "test_anno.npy")):
      path = root / "cached_data" / "real_animal_pose" / animal / file_name
      samples[split] = _load_annotations(path)
      for i, annotation in enumerate(samples[split]):
        named = categories.get(annotation["category_id"])
        if named is not None and named != animal:
          raise errors.CorruptInputError(
              f"{path}: annotation {i} has category_id {annotation['category_id']}, which {json_path} names "
              f"{named!r}, not {animal!r}; use the cached_data folder at the top of UDAPE's repository")
        image_id = int(annotation["image_id"])
        if str(image_id) not in file_names:
          raise errors.CorruptInputError(f"{json_path}: image id {image_id} (from {path}) is not in 'images'")
        annotation["image"] = root / "animal-pose" / "images" / file_names[str(image_id)]
    return samples

  def _example(self, animal, annotation):
    image = self._read_image(f"{animal} image_id {int(annotation['image_id'])}", common.read_rgb,
                             annotation["image"], LAYOUT)
    if image is None:
      return None
    joints20 = annotation["keypoints"]
    x_min, y_min, x_max, y_max = annotation["bbox"]
    box = common.udape_box(x_min, y_min, x_max, y_max)
    points = joints20[list(FROM_20)]
    visible = ((points[:, 2] > 0) & (points[:, 1] > 0)).astype(np.float32)
    encoded, keypoints = common.udape_sample(image, box, points[:, :2])
    return {"image": encoded, "keypoints": keypoints, "visible": visible, "joints20": joints20.astype(np.float32),
            "bbox": np.array([x_min, y_min, x_max, y_max], np.float32), "crop_box": box, "animal": animal,
            "image_id": int(annotation["image_id"]), "category_id": int(annotation["category_id"])}


def _read_release(root):
  """(path, {image id: file name}, {category id: name}) of the release's keypoints.json."""
  json_path = root / "animal-pose" / "keypoints.json"
  release = common.read_json(json_path, LAYOUT)
  file_names = release.get("images") if isinstance(release, dict) else None
  if not isinstance(file_names, dict):
    raise errors.CorruptInputError(f"{json_path}: expected 'images' to be a dict image id -> file name (the "
                                   "Animal-Pose release's keypoints.json, not a COCO-style conversion)")
  categories = {c.get("id"): c.get("name") for c in release.get("categories", []) if isinstance(c, dict)}
  return json_path, file_names, categories


def _load_annotations(path):
  """UDAPE's cached annotation list, each checked: image_id, category_id, bbox (4,), keypoints (20, 3)."""
  raw = pickles.read_npy(common.require(path, LAYOUT))
  annotations = []
  for i, item in enumerate(raw.reshape(-1)):
    try:
      keypoints = np.asarray(item["keypoints"], np.float64).reshape(-1, 3)
      bbox = np.asarray(item["bbox"], np.float64)
      annotation = {"image_id": item["image_id"], "category_id": item.get("category_id", -1),
                    "bbox": bbox, "keypoints": keypoints}
    except (KeyError, TypeError, ValueError, AttributeError):
      raise errors.CorruptInputError(f"{path}: item {i} is not an annotation dict with image_id, bbox and "
                                     "keypoints (20 x [x, y, v])") from None
    if keypoints.shape != (len(NAMES20), 3) or bbox.shape != (4,):
      raise errors.CorruptInputError(f"{path}: item {i} has {keypoints.shape[0]} keypoints and a bbox of shape "
                                     f"{bbox.shape}; expected {len(NAMES20)} keypoints [x, y, v] and [x_min, y_min, "
                                     "x_max, y_max]")
    annotations.append(annotation)
  return annotations


class AnimalPoseDog(_AnimalPose, skip_registration=True):
  name = "animal_pose_dog"
  ANIMALS = ("dog",)


class AnimalPoseSheep(_AnimalPose, skip_registration=True):
  name = "animal_pose_sheep"
  ANIMALS = ("sheep",)


class AnimalPoseDogSheep(_AnimalPose, skip_registration=True):
  """UDAPE's ``--animal all``."""

  name = "animal_pose_dog_sheep"
  ANIMALS = ("dog", "sheep")


class AnimalPoseCat(_AnimalPose, skip_registration=True):
  name = "animal_pose_cat"
  ANIMALS = ("cat",)


class AnimalPoseCow(_AnimalPose, skip_registration=True):
  name = "animal_pose_cow"
  ANIMALS = ("cow",)


class AnimalPoseHorse(_AnimalPose, skip_registration=True):
  name = "animal_pose_horse"
  ANIMALS = ("horse",)


BUILDERS = {b.name: b for b in (AnimalPoseDog, AnimalPoseSheep, AnimalPoseDogSheep, AnimalPoseCat,
                                AnimalPoseCow, AnimalPoseHorse)}
