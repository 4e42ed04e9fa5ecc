"""TFDS builders for Leeds Sports Pose (LSP) and LSP-extended, stored as JPEG bytes in ArrayRecord.

Each example keeps the released 14 joints (``joints14`` = [x, y, flag]) and adds them in Body16 order
(``keypoints``, ``visible``) as tllib's ``LSP`` dataset maps them. Both builders have one split, 'train',
holding every image in file order: tllib uses all 2000 LSP images both as target training data and as the
test set, so ``sources.make_source`` reads this one split for 'train' and 'test' and nothing is stored twice.
"""

import numpy as np

from dapose_jax import errors
from dapose_jax.data.builders import common

# LSP-14 index for each Body16 keypoint (tllib lsp.py); pelvis and thorax are filled with head-top.
BODY16_FROM_LSP14 = (0, 1, 2, 3, 4, 5, 13, 13, 12, 13, 6, 7, 8, 9, 10, 11)
# Pelvis and thorax are dummies: never supervised or evaluated.
BODY16_MASK = np.array([1] * 6 + [0, 0] + [1] * 8, np.float32)


def to_body16(joints14, visible14):
  """(14, 2) positions and (14,) visibility in LSP order -> (16, 2), (16,) in Body16 order."""
  index = list(BODY16_FROM_LSP14)
  return joints14[index].astype(np.float32), (BODY16_MASK * visible14[index]).astype(np.float32)


class _LeedsSportsPose(common.Builder, skip_registration=True):
  """Shared reader; subclasses give the joints.mat layout, file names and flag convention."""

  # tllib trains and tests on all of LSP.
  SPLITS = {"train": "train", "test": "train"}
  JOINTS_AXES: tuple[int, int]  # leading axes of the released array: 3 = [x, y, flag], 14 = joints
  IMAGE_DIGITS: int  # im0001.jpg (LSP) or im00001.jpg (LSP-extended)
  FLAG_MEANS_VISIBLE: bool
  HOMEPAGE = "http://sam.johnson.io/research/lsp.html"

  def _features(self):
    return common.features(16, joints14=common.tensor(14, 3), image_id=np.int32)

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    joints = self._load_joints(root / "joints.mat")
    # Example i is image i + 1, as in the release.
    images = [root / "images" / f"im{i:0{self.IMAGE_DIGITS}d}.jpg" for i in range(1, len(joints) + 1)]
    common.require_all(images, self.LAYOUT, f"of the {len(images)} images that joints.mat annotates")
    return {"train": self._generate_examples(images, joints)}

  def _load_joints(self, path):
    """joints.mat -> (N, 14, 3) [x, y, flag] in LSP-14 order."""
    raw = common.read_mat(path, self.LAYOUT).get("joints")
    if raw is None or raw.ndim != 3 or raw.shape[:2] != self.JOINTS_AXES:
      shape = None if raw is None else raw.shape
      raise errors.CorruptInputError(f"{path}: expected an array 'joints' of shape ({self.JOINTS_AXES[0]}, "
                                     f"{self.JOINTS_AXES[1]}, N), got {shape}")
    return raw.transpose(2, self.JOINTS_AXES.index(14), self.JOINTS_AXES.index(3))

  def _generate_examples(self, images, joints):
    for i, (path, joints14) in enumerate(zip(images, joints)):
      flag = joints14[:, 2]
      keypoints, visible = to_body16(joints14[:, :2], flag if self.FLAG_MEANS_VISIBLE else 1 - flag)
      # the file's own bytes; a rare non-RGB file is re-encoded
      image = self._read_image(f"sample {i} (image_id {i + 1})", common.jpeg_file, path)
      if image is None:
        continue
      jpeg, _ = image
      yield i, {"image": jpeg, "keypoints": keypoints, "visible": visible, "joints14": joints14.astype(np.float32),
                "image_id": i + 1}


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
