"""TFDS builders for Leeds Sports Pose (LSP) and LSP-extended, stored as JPEG bytes in ArrayRecord.

Each example keeps the released 14 joints (``joints14`` = [x, y, flag]) and adds them in Body16 order
(``keypoints``, ``visible``) as tllib's ``LSP`` dataset maps them. Both builders have one split, 'train',
holding every image in file order: tllib uses all 2000 LSP images both as target training data and as the
test set, so ``sources.make_source`` reads this one split for 'train' and 'test' and nothing is stored twice.
"""

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

# LSP-14 index for each Body16 keypoint (tllib lsp.py); pelvis and thorax are filled with head-top.
BODY16_FROM_LSP14 = (0, 1, 2, 3, 4, 5, 13, 13, 12, 13, 6, 7, 8, 9, 10, 11)
# Pelvis and thorax are dummies: never supervised or evaluated.
BODY16_MASK = np.array([1] * 6 + [0, 0] + [1] * 8, np.float32)


def to_body16(joints14, visible14):
  """(14, 2) positions and (14,) visibility in LSP order -> (16, 2), (16,) in Body16 order."""
  index = list(BODY16_FROM_LSP14)
  return joints14[index].astype(np.float32), (BODY16_MASK * visible14[index]).astype(np.float32)


class _LeedsSportsPose(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared reader; subclasses give the joints.mat layout, file names and flag convention."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  JOINTS_AXES: tuple[int, int]  # leading axes of the released array: 3 = [x, y, flag], 14 = joints
  IMAGE_DIGITS: int  # im0001.jpg (LSP) or im00001.jpg (LSP-extended)
  FLAG_MEANS_VISIBLE: bool
  LAYOUT: str
  CITATION: str

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "keypoints": tfds.features.Tensor(shape=(16, 2), dtype=np.float32),
            "visible": tfds.features.Tensor(shape=(16,), dtype=np.float32),
            "joints14": tfds.features.Tensor(shape=(14, 3), dtype=np.float32),
            "image_id": np.int32,
        }),
        homepage="http://sam.johnson.io/research/lsp.html",
        citation=self.CITATION,
        disable_shuffling=True,  # index i is image i + 1, as in the release
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    joints = self._load_joints(root / "joints.mat")
    images = [root / "images" / f"im{i:0{self.IMAGE_DIGITS}d}.jpg" for i in range(1, len(joints) + 1)]
    missing = [str(p) for p in images if not p.exists()]
    if missing:
      raise FileNotFoundError(
          f"{len(missing)} of the {len(images)} images that joints.mat annotates are missing, first "
          f"{missing[0]}; expected layout:\n{self.LAYOUT}")
    return {"train": self._generate_examples(images, joints)}

  def _load_joints(self, path):
    """joints.mat -> (N, 14, 3) [x, y, flag] in LSP-14 order."""
    if not path.exists():
      raise FileNotFoundError(f"{path} is missing; expected layout:\n{self.LAYOUT}")
    raw = scipy.io.loadmat(path).get("joints")
    if raw is None or raw.ndim != 3 or raw.shape[:2] != self.JOINTS_AXES:
      shape = None if raw is None else raw.shape
      raise ValueError(f"{path}: expected an array 'joints' of shape ({self.JOINTS_AXES[0]}, "
                       f"{self.JOINTS_AXES[1]}, N), got {shape}")
    return raw.transpose(2, self.JOINTS_AXES.index(14), self.JOINTS_AXES.index(3))

  def _generate_examples(self, images, joints):
    for i, (path, joints14) in enumerate(zip(images, joints)):
      flag = joints14[:, 2]
      keypoints, visible = to_body16(joints14[:, :2], flag if self.FLAG_MEANS_VISIBLE else 1 - flag)
      yield i, {"image": _rgb_jpeg(path), "keypoints": keypoints, "visible": visible,
                "joints14": joints14.astype(np.float32), "image_id": i + 1}


def _rgb_jpeg(path):
  """The file's own bytes, or the decoded RGB pixels for a rare non-RGB file (re-encoded by TFDS)."""
  with Image.open(path) as image:  # reads the header only
    if image.format == "JPEG" and image.mode == "RGB":
      return path.read_bytes()
    return np.asarray(image.convert("RGB"))


_WHERE = ("The original host sam.johnson.io may be gone; mirrors of the archive exist (search for its file "
          "name; some GitHub repositories include it).")


class Lsp(_LeedsSportsPose):
  """Leeds Sports Pose: 2000 images, 14 joints, flag 1 = occluded."""

  JOINTS_AXES = (3, 14)
  IMAGE_DIGITS = 4
  FLAG_MEANS_VISIBLE = False
  LAYOUT = ("  MANUAL_DIR/joints.mat          'joints' of shape (3, 14, 2000) = [x, y, flag], flag 1 = occluded\n"
            "  MANUAL_DIR/images/im0001.jpg ... im2000.jpg")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download lsp_dataset.zip, the Leeds Sports Pose release (Johnson & Everingham, BMVC 2010; the scaled "
      f"version tllib uses, not lsp_dataset_original.zip). {_WHERE} Unzip it so that:\n{LAYOUT}")
  CITATION = """@inproceedings{Johnson10,
  title = {Clustered Pose and Nonlinear Appearance Models for Human Pose Estimation},
  author = {Johnson, Sam and Everingham, Mark},
  booktitle = {Proceedings of the British Machine Vision Conference},
  year = {2010},
  note = {doi:10.5244/C.24.12}
}"""


class LspExtended(_LeedsSportsPose):
  """LSP-extended: 10000 images, 14 joints, flag 1 = visible (inverted w.r.t. LSP)."""

  JOINTS_AXES = (14, 3)
  IMAGE_DIGITS = 5
  FLAG_MEANS_VISIBLE = True
  LAYOUT = ("  MANUAL_DIR/joints.mat           'joints' of shape (14, 3, 10000) = [x, y, flag], flag 1 = visible\n"
            "  MANUAL_DIR/images/im00001.jpg ... im10000.jpg")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download lspet_dataset.zip, the Leeds Sports Pose extended training set (Johnson & Everingham, CVPR "
      f"2011). {_WHERE} Unzip it so that:\n{LAYOUT}")
  CITATION = """@inproceedings{Johnson11,
  title = {Learning Effective Human Pose Estimation from Inaccurate Annotation},
  author = {Johnson, Sam and Everingham, Mark},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  year = {2011}
}"""
