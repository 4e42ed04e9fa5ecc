"""TFDS builder for FreiHAND (training set), stored as the mirrored hand crops tllib makes.

FreiHAND releases N = 32,560 annotated training frames, each rendered in four versions: gs (green screen),
hom (homogenised), sample and auto (two automatic colourisations). Version v of frame i is the file
``training/rgb/%08d.jpg`` % (i + 32560 * v), with v counted in the order gs, hom, sample, auto. tllib's
``FreiHand`` (task 'all') uses all 4N images. This builder does tllib's per-sample work once, at build time:

- 2D keypoints = projection K . xyz of the 3D keypoints, already in Hand21 order (wrist, then per finger
  MCP -> tip).
- The stored image is the square 1.5x keypoint crop, made as for RHD (``common.crop_hand``: one pixel narrower
  than the box, as tllib). Every sample is then mirrored, because tllib marks all of them ``left=False``.
  ``crop_box`` = [x0, y0, side] in pixels of the 224x224 frame and ``flipped`` (always true) record this. The
  projected label is x = x0 + side - 1 - u, y = y0 + v for a stored keypoint (u, v).
- Every keypoint is visible.

Splits, as tllib: the list of samples is concatenated in the order gs, auto, sample, hom (tllib's order, not
the file-numbering order), each version listing frames 0..N-1. ``random.seed(42); random.shuffle`` is
applied to it; 'test' is the first min(int(0.2 * 4N), 3200) samples (3200 for the full release) and 'train'
the rest, both stored in the shuffled order.

N is the length of the annotation lists, so a subset works: it keeps the first N frames, and its files keep
the release's names (the 32,560 offset between versions is fixed).

Encoding: JPEG at quality 95. The frames are JPEGs already, and the pipeline resizes and colour-jitters the
crops, so re-encoding loses nothing that matters. A typical crop takes 6-12 KB; PNG would take three to four
times as much.
"""

import numpy as np
import tensorflow_datasets as tfds

from dapose_jax import errors
from dapose_jax.data.builders import common

RELEASE_SIZE = 32560  # frames per version in the release; fixes the file numbering
FILE_VERSIONS = ("gs", "hom", "sample", "auto")  # version index in the file numbering
TLLIB_VERSIONS = ("gs", "auto", "sample", "hom")  # order of tllib's concatenated sample list


def image_id(version, index):
  return index + RELEASE_SIZE * FILE_VERSIONS.index(version)


def project(xyz, intrinsic_matrix):
  uv = xyz @ intrinsic_matrix.T
  return uv[:, :2] / uv[:, 2:]


class Freihand(common.Builder, skip_registration=True):
  """FreiHAND training set, 4 versions x 32,560 frames, cropped at 1.5x the hand box and mirrored."""

  LAYOUT = (
      "  MANUAL_DIR/training_K.json     list of N 3x3 camera matrices (N = 32560)\n"
      "  MANUAL_DIR/training_xyz.json   list of N 21x3 keypoints in camera coordinates (metres)\n"
      "  MANUAL_DIR/training_mano.json  list of N MANO parameter sets (1x61)\n"
      "  MANUAL_DIR/training/rgb/00000000.jpg ... 00130239.jpg   224x224; version v of frame i is i + 32560 v, "
      "v = gs, hom, sample, auto\n"
      "  (training/mask/, evaluation/ and training_verts.json are not read)")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download FreiHAND_pub_v2.zip (about 4 GB), the FreiHAND dataset (Zimmermann et al., ICCV 2019), from "
      f"https://lmb.informatik.uni-freiburg.de/projects/freihand/ and unzip it so that:\n{LAYOUT}")
  HOMEPAGE = "https://lmb.informatik.uni-freiburg.de/projects/freihand/"
  CITATION = """@inproceedings{Zimmermann19,
  title = {FreiHAND: A Dataset for Markerless Capture of Hand Pose and Shape from Single RGB Images},
  author = {Zimmermann, Christian and Ceylan, Duygu and Yang, Jimei and Russell, Bryan and Argus, Max and
            Brox, Thomas},
  booktitle = {Proceedings of the IEEE International Conference on Computer Vision (ICCV)},
  year = {2019}
}"""

  def _features(self):
    return common.features(
        21,
        keypoints3d=common.tensor(21, 3),  # training_xyz.json
        intrinsic_matrix=common.tensor(3, 3),  # training_K.json
        mano=common.tensor(61),  # training_mano.json
        image_id=np.int32,  # training/rgb/%08d.jpg
        frame_index=np.int32,  # index into the annotation lists
        version=tfds.features.Text(),  # gs, hom, sample or auto
        flipped=np.bool_,  # always true: tllib mirrors every FreiHAND sample
        crop_box=common.crop_box_feature())

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    lists = {name: self._load_list(root / f"training_{name}.json") for name in ("K", "xyz", "mano")}
    lengths = {name: len(value) for name, value in lists.items()}
    if len(set(lengths.values())) != 1:
      raise errors.CorruptInputError(f"the annotation lists in {root} differ in length: "
                                     + ", ".join(f"training_{name}.json has {n}" for name, n in lengths.items()))
    num_frames = lengths["K"]
    if not 0 < num_frames <= RELEASE_SIZE:
      raise errors.CorruptInputError(f"{root / 'training_K.json'}: expected 1 to {RELEASE_SIZE} frames, got "
                                     f"{num_frames}")
    annotations = [self._frame(root, lists, i) for i in range(num_frames)]
    # (version, frame index) samples, stored in tllib's shuffled order
    train, test = common.tllib_split((version, i) for version in TLLIB_VERSIONS for i in range(num_frames))
    common.require_all((self._image_path(root, *s) for s in test + train), self.LAYOUT,
                       f"of the {4 * num_frames} images that the {num_frames} annotated frames need")
    return {"train": self._generate_examples(root, annotations, train),
            "test": self._generate_examples(root, annotations, test)}

  def _load_list(self, path):
    data = common.read_json(path, self.LAYOUT)
    if not isinstance(data, list):
      raise errors.CorruptInputError(f"{path}: expected a list with one entry per frame, got {type(data).__name__}")
    return data

  def _frame(self, root, lists, i):
    """(K (3, 3), xyz (21, 3), mano (61,)) of frame i, checked."""
    arrays = []
    for name, shape in (("K", (3, 3)), ("xyz", (21, 3)), ("mano", (61,))):
      try:
        value = np.asarray(lists[name][i], np.float64)
      except (TypeError, ValueError):  # ragged or not numbers
        value = np.zeros(0)
      if name == "mano":  # the release stores [[61 numbers]]: 48 pose, 10 shape, 3 translation
        value = value.reshape(-1)
      if value.shape != shape:
        raise errors.CorruptInputError(f"{root / f'training_{name}.json'}: entry {i}: expected {np.prod(shape)} "
                                       f"numbers of shape {shape}, got {str(lists[name][i]):.200}")
      arrays.append(value)
    return tuple(arrays)

  def _image_path(self, root, version, index):
    return root / "training" / "rgb" / f"{image_id(version, index):08d}.jpg"

  def _generate_examples(self, root, annotations, samples):
    for key, (version, index) in enumerate(samples):
      intrinsic_matrix, xyz, mano = annotations[index]
      path = self._image_path(root, version, index)
      hand = self._read_image(f"frame {index} ({version})", common.crop_hand, path, project(xyz, intrinsic_matrix),
                              flip=True)
      if hand is None:
        continue
      jpeg, keypoints, crop_box = hand
      yield key, {
          "image": jpeg, "keypoints": keypoints, "visible": np.ones(21, np.float32),
          "keypoints3d": xyz.astype(np.float32), "intrinsic_matrix": intrinsic_matrix.astype(np.float32),
          "mano": mano.astype(np.float32), "image_id": image_id(version, index), "frame_index": index,
          "version": version, "flipped": True, "crop_box": crop_box,
      }
