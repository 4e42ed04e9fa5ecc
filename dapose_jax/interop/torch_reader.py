"""Read the tensors of a ``torch.save`` file (``.pth``, ``.pt``) without PyTorch, unpickling nothing but tensors.

Since torch 1.6, ``torch.save`` writes a zip archive: ``<name>/data.pkl`` (the pickled object, whose storages are
persistent ids ``('storage', storage type, key, location, numel)``), ``<name>/data/<key>`` (each storage's raw
bytes), ``<name>/version`` and, in recent versions, ``<name>/byteorder`` (``little`` when absent). ``read``
unpickles ``data.pkl`` with an unpickler that knows only the tensor rebuild functions, ``collections.OrderedDict``,
the storage types and ``argparse.Namespace`` (the training arguments that tllib and UDAPE save beside the weights,
read as an inert object), so a file that asks for any other global (``os.system``, ``builtins.eval``, a model
class) is refused before anything runs. ``bfloat16`` tensors are returned as ``float32`` (numpy has no bfloat16; the
conversion is exact). The legacy format of torch < 1.6 (a bare pickle stream) is not read.
"""

import collections
import os
import pickle
import zipfile

import numpy as np

from dapose_jax import errors
from dapose_jax.interop import nested

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # widened to float32 in _read_storage
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  """Stands for ``torch.<name>`` (e.g. ``torch.FloatStorage``) in an unpickled persistent id."""

  def __init__(self, name):
    self.name = name


class _Storage:
  """A storage read from the archive: its elements as a 1-D native-endian array."""

  def __init__(self, array):
    self.array = array


def _rebuild_tensor(storage, storage_offset, size, stride):
  """The tensor as ``torch._utils._rebuild_tensor`` builds it: a strided view of the storage, copied."""
  array = getattr(storage, "array", None) if isinstance(storage, _Storage) else None
  if not (isinstance(array, np.ndarray) and array.ndim == 1 and array.flags.c_contiguous):
    raise ValueError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
  size, stride = tuple(size), tuple(stride)
  numbers = (storage_offset, *size, *stride)
  if len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
    raise ValueError(f"bad tensor geometry: offset {storage_offset!r}, size {size!r}, stride {stride!r}")
  if 0 in size:
    return np.zeros(size, array.dtype)
  # as_strided does no bounds checks: a crafted size or stride must not reach past the storage
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= array.size:
    raise ValueError(f"a tensor of size {size}, stride {stride} at offset {storage_offset} reaches element {last} "
                     f"of a storage of {array.size}")
  view = np.lib.stride_tricks.as_strided(array[storage_offset:], shape=size,
                                         strides=[s * array.itemsize for s in stride], writeable=False)
  return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
  """``torch._utils._rebuild_tensor_v2``: the tensor as a numpy array (gradient flags and hooks dropped)."""
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is read as its data."""
  del requires_grad, backward_hooks
  return data


_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Unpickles ``data.pkl``: storages come from the archive, globals only from ``find_class``'s short list."""

  def __init__(self, file, path, archive, prefix):
    super().__init__(file)
    self._path, self._archive, self._prefix = path, archive, prefix
    self._big_endian = self._byteorder() == "big"
    self._storages = {}  # (key, storage type) -> array: tensors share storages, possibly as different dtypes

  def find_class(self, module, name):
    # fresh objects, not the module's own: a BUILD opcode could otherwise set attributes on them for later reads
    if (module, name) in _FUNCTIONS:
      function = _FUNCTIONS[(module, name)]
      return lambda *args: function(*args)
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("argparse", "Namespace"):
      return type("Namespace", (), {})  # an empty class: its instances take the arguments' values, nothing runs
    raise errors.CorruptInputError(f"{self._path}: refuses to unpickle {module}.{name}: only tensors are read")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
      raise errors.CorruptInputError(f"{self._path}: unexpected persistent id {pid!r} in data.pkl")
    _, storage_type, key, _, numel = pid
    if (key, storage_type.name) not in self._storages:
      try:
        raw = self._archive.read(f"{self._prefix}data/{key}")
      except KeyError:
        raise errors.CorruptInputError(f"{self._path}: storage data/{key} is missing from the archive") from None
      self._storages[(key, storage_type.name)] = self._read_storage(raw, storage_type.name, numel, key)
    return _Storage(self._storages[(key, storage_type.name)])

  def _byteorder(self):
    try:
      return self._archive.read(f"{self._prefix}byteorder").decode().strip()
    except KeyError:
      return "little"

  def _read_storage(self, raw, type_name, numel, key):
    dtype = np.dtype(_STORAGE_DTYPES[type_name]).newbyteorder(">" if self._big_endian else "<")
    if len(raw) < numel * dtype.itemsize:
      raise errors.CorruptInputError(f"{self._path}: storage data/{key} holds {len(raw)} bytes, fewer than "
                                     f"{numel} {type_name} elements")
    array = np.frombuffer(raw, dtype, count=numel).astype(dtype.newbyteorder("="), copy=False)
    if type_name == "BFloat16Storage":  # bfloat16 is the upper half of a float32
      array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def flatten(tree):
  """Nested dicts of arrays or torch tensors -> ``{'a.b.0.weight': np.ndarray}``; other leaves (``epoch``, ...) are
  dropped. Torch tensors become numpy arrays, ``bfloat16`` ones ``float32``."""
  return nested.flatten(tree, _as_array)


def _as_array(value):
  """A torch tensor or numpy array as a numpy array (``bfloat16`` as ``float32``); None for anything else."""
  if hasattr(value, "detach"):  # a torch tensor
    tensor = value.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
      tensor = tensor.float()
    return tensor.numpy()
  return value if isinstance(value, np.ndarray) else None


def read(path) -> dict[str, np.ndarray]:
  """The tensors of a ``torch.save`` zip file as ``{dotted key: np.ndarray}``, nested dicts flattened (``flatten``);
  ``bfloat16`` tensors are converted to ``float32``. Raises ``errors.MissingInputError`` for a missing file and
  ``errors.CorruptInputError`` for one that is not such an archive, or whose pickle holds anything but tensors,
  containers, plain values and ``argparse.Namespace``."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise errors.MissingInputError(f"{path}: no such file")
  if not zipfile.is_zipfile(path):
    raise errors.CorruptInputError(
        f"{path} is not a torch.save zip archive (the legacy format of torch < 1.6, which needs PyTorch, or not a "
        "PyTorch file): re-save it with torch >= 1.6 (torch.save(torch.load(f), f)), or convert it to .npz")
  try:
    with zipfile.ZipFile(path) as archive:
      pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
      if len(pickles) != 1:
        raise errors.CorruptInputError(f"{path} is a zip file but not a torch.save archive (no <name>/data.pkl)")
      with archive.open(pickles[0]) as file:
        tree = _Unpickler(file, path, archive, prefix=pickles[0][:-len("data.pkl")]).load()
  except errors.UserError:
    raise
  except Exception as error:  # noqa: BLE001  whatever a damaged archive or pickle raises
    raise errors.CorruptInputError(f"{path}: not a readable torch.save archive ({errors.one_line(error)})") from None
  if not isinstance(tree, dict):
    raise errors.CorruptInputError(f"{path} holds a {type(tree).__name__}, not a dict of tensors")
  return flatten(tree)
