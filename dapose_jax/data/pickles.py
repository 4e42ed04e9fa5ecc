"""Reading the pickled annotation files of data set releases without running anything they contain.

RHD's ``anno_<set>.pickle`` (written by Python 2) and UDAPE's cached AnimalPose ``<split>_anno.npy`` (object arrays,
``np.save``) hold only dicts, lists, tuples, numbers, strings and numpy arrays. A pickle can hold calls of any
importable function (``os.system`` ...), which a plain ``pickle.load`` or ``np.load(allow_pickle=True)`` runs. The
unpickler here imports nothing but the globals those files reference (``GLOBALS``: ``numpy.ndarray``,
``numpy.dtype`` and the array rebuild function, under its numpy 1 and numpy 2 module names) and refuses any other in
one line naming the file and the global, before anything runs.
"""

import os
import pickle

import numpy as np

from dapose_jax import errors

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array rebuild function, whichever module holds it
# Every global that the genuine files reference (their GLOBAL / STACK_GLOBAL opcodes, pickletools.genops); numpy 2's
# np.save names the rebuild function numpy._core.multiarray._reconstruct.
GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}
HOLDS = "dicts, lists, numbers, strings and numpy arrays"
REPLACE = "replace it with the file of the release"


class _Unpickler(pickle.Unpickler):
  """Unpickles with ``GLOBALS`` only; Python 2 byte strings are read as latin-1, as numpy arrays need."""

  def __init__(self, file, path):
    super().__init__(file, encoding="latin1")
    self._path = path

  def find_class(self, module, name):
    if (module, name) in GLOBALS:
      return GLOBALS[(module, name)]
    raise errors.CorruptInputError(f"{self._path}: refuses to unpickle {module}.{name}: an annotation file holds only "
                                   f"{HOLDS}; {REPLACE}")


def _unpickled(file, path):
  """What the pickle stream at ``file``'s position holds, ``errors.CorruptInputError`` naming ``path`` if it cannot
  be read with ``GLOBALS`` alone."""
  try:
    return _Unpickler(file, path).load()
  except errors.UserError:
    raise
  except Exception as error:  # noqa: BLE001  whatever a damaged pickle raises
    raise errors.CorruptInputError(f"{path} is not a readable pickle of {HOLDS} ({errors.one_line(error)}); "
                                   f"{REPLACE}") from None


def read_pickle(path):
  """The object pickled in the file ``path``."""
  with open(path, "rb") as file:
    return _unpickled(file, os.fspath(path))


def read_npy(path):
  """The array in the ``.npy`` file ``path``; an object array's elements are unpickled as ``read_pickle`` does."""
  path = os.fspath(path)
  with open(path, "rb") as file:
    try:
      version = np.lib.format.read_magic(file)
      header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
      dtype = header(file)[2]
      if not dtype.hasobject:
        file.seek(0)
        return np.load(file, allow_pickle=False)
    except Exception as error:  # noqa: BLE001  whatever a damaged header raises
      raise errors.CorruptInputError(f"{path} is not a readable .npy file ({errors.one_line(error)}); {REPLACE}") \
          from None
    array = _unpickled(file, path)  # np.save pickles an object array whole after the header
  if not isinstance(array, np.ndarray):
    raise errors.CorruptInputError(f"{path} holds a pickled {type(array).__name__}, not an array; {REPLACE}")
  return array
