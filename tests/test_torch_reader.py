"""`torch_reader` on torch.save archives written by hand (no torch needed), and against torch.save when present."""

import collections
import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from dapose_jax import errors
from dapose_jax.interop import torch_reader, weights

_STUBS = {}  # stub class name -> (module, name) of the global it stands for


def _global(module, name):
  """A class that pickles as ``GLOBAL module name`` once ``_dumps`` rewrites the stub's own GLOBAL."""
  stub_name = f"_stub_{module.replace('.', '_')}_{name}"
  if stub_name not in _STUBS:
    stub = type(stub_name, (), {"__module__": __name__, "__qualname__": stub_name})
    setattr(sys.modules[__name__], stub_name, stub)  # where the pickler looks the class up
    _STUBS[stub_name] = (module, name)
  return getattr(sys.modules[__name__], stub_name)


_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "BoolStorage": np.bool_}


class _Storage:
  """A torch storage to write: ``data`` (1-D) is saved as ``data/<key>``, referenced by a persistent id."""

  def __init__(self, key, type_name, data):
    self.key, self.type_name, self.data = key, type_name, np.asarray(data, _DTYPES[type_name])


class _Tensor:
  """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

  def __reduce__(self):
    return _global("torch._utils", "_rebuild_tensor_v2"), self.args


class _Call:
  """Pickles as a call of the global ``module.name`` on ``args``."""

  def __init__(self, module, name, *args):
    self.function, self.args = _global(module, name), args

  def __reduce__(self):
    return self.function, self.args


def _tensor(storage, offset=0, size=None, stride=None):
  size = tuple(storage.data.shape) if size is None else size
  if stride is None:
    stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
  return _Tensor(storage, offset, size, stride)


def _dumps(obj):
  """``obj`` pickled as torch.save does (protocol 2, storages as persistent ids) and the storages it holds."""
  storages = {}

  class Pickler(pickle.Pickler):
    def persistent_id(self, value):
      if isinstance(value, _Storage):
        storages[value.key] = value
        return ("storage", _global("torch", value.type_name), value.key, "cpu", value.data.size)
      return None

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(obj)
  data = buffer.getvalue()
  for stub_name, (module, name) in _STUBS.items():  # protocol 2 has no frames: lengths may change
    data = data.replace(f"c{__name__}\n{stub_name}\n".encode(), f"c{module}\n{name}\n".encode())
  return data, storages


def _write(path, obj, byteorder="little", prefix="archive"):
  """A torch.save zip archive of ``obj`` (tensors as ``_Tensor``) at ``path``."""
  data, storages = _dumps(obj)
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr(f"{prefix}/data.pkl", data)
    archive.writestr(f"{prefix}/byteorder", byteorder)
    for storage in storages.values():
      dtype = storage.data.dtype.newbyteorder(">" if byteorder == "big" else "<")
      archive.writestr(f"{prefix}/data/{storage.key}", storage.data.astype(dtype).tobytes())
    archive.writestr(f"{prefix}/version", "3\n")
  return path


def test_conv_weight_and_int64_tensors(tmp_path):
  rng = np.random.default_rng(0)
  weight = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
  steps = np.arange(5, dtype=np.int64) - 2
  path = _write(tmp_path / "w.pth", collections.OrderedDict([
      ("conv1.weight", _tensor(_Storage("0", "FloatStorage", weight.ravel()), size=weight.shape)),
      ("steps", _tensor(_Storage("1", "LongStorage", steps))),
      ("bn1.num_batches_tracked", _tensor(_Storage("2", "LongStorage", [100]), size=(), stride=())),
  ]))
  state_dict = torch_reader.read(path)
  assert list(state_dict) == ["conv1.weight", "steps", "bn1.num_batches_tracked"]
  np.testing.assert_array_equal(state_dict["conv1.weight"], weight)
  assert state_dict["conv1.weight"].dtype == np.float32
  np.testing.assert_array_equal(state_dict["steps"], steps)
  assert state_dict["steps"].dtype == np.int64
  assert state_dict["bn1.num_batches_tracked"].shape == () and state_dict["bn1.num_batches_tracked"] == 100


def test_views_of_one_storage_with_strides_and_offsets(tmp_path):
  values = np.arange(12, dtype=np.float32)
  storage = _Storage("0", "FloatStorage", values)
  path = _write(tmp_path / "w.pt", {
      "matrix": _tensor(storage, size=(3, 4)),
      "transposed": _tensor(storage, size=(4, 3), stride=(1, 4)),
      "tail": _tensor(storage, offset=5, size=(2, 3), stride=(3, 1)),
  })
  with zipfile.ZipFile(path) as archive:
    assert [name for name in archive.namelist() if "/data/" in name] == ["archive/data/0"]
  state_dict = torch_reader.read(path)
  np.testing.assert_array_equal(state_dict["matrix"], values.reshape(3, 4))
  np.testing.assert_array_equal(state_dict["transposed"], values.reshape(3, 4).T)
  np.testing.assert_array_equal(state_dict["tail"], values[5:11].reshape(2, 3))
  state_dict["matrix"][0, 0] = -1  # copies, not views of one buffer
  assert state_dict["transposed"][0, 0] == 0


def test_nested_checkpoint_is_flattened_to_dotted_keys(tmp_path):
  weight = np.ones((2, 3, 1, 1), np.float32)
  tree = {"state_dict": collections.OrderedDict(
              [("1.weight", _tensor(_Storage("0", "FloatStorage", weight.ravel()), size=weight.shape)),
               ("1.bias", _tensor(_Storage("1", "FloatStorage", [0.5, 1.5])))]),
          "epoch": 3, "arch": "vgg", "history": [0.1, 0.2], "optimizer": {"lr": 1e-3}}
  expected = ["state_dict.1.weight", "state_dict.1.bias"]
  assert list(torch_reader.read(_write(tmp_path / "w.pth", tree))) == expected
  assert list(weights.read_state_dict(tmp_path / "w.pth")) == expected
  assert list(weights.read_state_dict(_write(tmp_path / "decoder.pth.tar", tree))) == expected
  np.testing.assert_array_equal(weights.read_state_dict(tmp_path / "decoder.pth.tar")["state_dict.1.bias"], [0.5, 1.5])


def test_bfloat16_half_bool_and_big_endian(tmp_path):
  floats = np.array([1.0, -2.5, 0.15625, 2.0**127], np.float32)  # exact in bfloat16
  bfloat16_bits = (floats.view(np.uint32) >> 16).astype(np.uint16)
  halves = np.array([0.5, -1.25], np.float16)
  flags = np.array([True, False, True])
  tree = {"bf16": _tensor(_Storage("0", "BFloat16Storage", bfloat16_bits)),
          "half": _tensor(_Storage("1", "HalfStorage", halves)),
          "flags": _tensor(_Storage("2", "BoolStorage", flags)),
          "ints": _tensor(_Storage("3", "IntStorage", np.array([1, -70000], np.int32)))}
  for byteorder in ("little", "big"):
    state_dict = torch_reader.read(_write(tmp_path / f"{byteorder}.pth", tree, byteorder=byteorder))
    assert state_dict["bf16"].dtype == np.float32
    np.testing.assert_array_equal(state_dict["bf16"], floats)
    np.testing.assert_array_equal(state_dict["half"], halves)
    np.testing.assert_array_equal(state_dict["flags"], flags)
    np.testing.assert_array_equal(state_dict["ints"], [1, -70000])
    assert all(array.dtype.isnative for array in state_dict.values())


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "exec"), ("builtins", "eval")])
def test_a_pickle_calling_anything_else_is_refused_before_it_runs(tmp_path, module, name):
  marker = tmp_path / "ran"
  command = f"touch {marker}" if module == "os" else f"open({str(marker)!r}, 'w').close()"
  payload = _Call(module, name, command)
  path = _write(tmp_path / "evil.pth", {"conv.weight": _tensor(_Storage("0", "FloatStorage", [1.0])),
                                        "conv.bias": payload})
  with pytest.raises(errors.CorruptInputError) as error:
    torch_reader.read(path)
  assert str(error.value) == f"{path}: refuses to unpickle {module}.{name}: only tensors are read"
  assert not marker.exists()
  pickle.loads(_dumps(payload)[0])  # the payload is live: a plain unpickler runs it
  assert marker.exists()


def test_a_storage_type_that_is_a_global_elsewhere_is_refused(tmp_path):
  path = _write(tmp_path / "w.pth", {"w": _tensor(_Storage("0", "FloatStorage", [1.0]))})
  with zipfile.ZipFile(path) as archive:
    records = {name: archive.read(name) for name in archive.namelist()}
  records["archive/data.pkl"] = records["archive/data.pkl"].replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n")
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in records.items():
      archive.writestr(name, data)
  with pytest.raises(errors.CorruptInputError, match="refuses to unpickle posix.system"):
    torch_reader.read(path)


def test_files_that_are_not_torch_save_archives(tmp_path):
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))  # torch < 1.6 wrote a bare pickle stream
  noise = tmp_path / "noise.pt"
  noise.write_bytes(os.urandom(256))
  for path in (legacy, noise):
    with pytest.raises(errors.CorruptInputError, match=r"is not a torch.save zip archive .* re-save it with torch "
                                                       r">= 1.6 .*or convert it to .npz"):
      torch_reader.read(path)
  other_zip = tmp_path / "other.pth"
  with zipfile.ZipFile(other_zip, "w") as archive:
    archive.writestr("readme.txt", "hello")
  with pytest.raises(errors.CorruptInputError, match="other.pth is a zip file but not a torch.save archive"):
    torch_reader.read(other_zip)
  with pytest.raises(errors.MissingInputError, match="missing.pth: no such file"):
    torch_reader.read(tmp_path / "missing.pth")


@pytest.mark.parametrize("offset, size, stride, reason", [
    (0, (3, 5), (5, 1), "reaches element 14 of a storage of 12"),
    (10, (3,), (1,), "reaches element 12"),
    (0, (2, 2), (-1, 1), "bad tensor geometry"),
    (0, (2, 2), (1,), "bad tensor geometry"),
])
def test_tensors_reaching_past_their_storage_are_refused(tmp_path, offset, size, stride, reason):
  storage = _Storage("0", "FloatStorage", np.zeros(12, np.float32))
  path = _write(tmp_path / "w.pth", {"w": _Tensor(storage, offset, size, stride)})
  with pytest.raises(errors.CorruptInputError, match=f"w.pth: not a readable torch.save archive .*{reason}"):
    torch_reader.read(path)


def test_short_or_missing_storage_records_are_named(tmp_path):
  path = _write(tmp_path / "w.pth", {"w": _tensor(_Storage("0", "DoubleStorage", np.zeros(4)))})
  with zipfile.ZipFile(path) as archive:
    records = {name: archive.read(name) for name in archive.namelist()}
  for name, data, reason in [("archive/data/0", records["archive/data/0"][:-8], "holds 24 bytes, fewer than 4"),
                             ("archive/data/0", None, "storage data/0 is missing")]:
    with zipfile.ZipFile(path, "w") as archive:
      for record, value in {**records, name: data}.items():
        if value is not None:
          archive.writestr(record, value)
    with pytest.raises(errors.CorruptInputError, match=reason):
      torch_reader.read(path)


def test_matches_torch_save(tmp_path):
  torch = pytest.importorskip("torch")
  generator = torch.Generator().manual_seed(0)
  base = torch.randn(6, 4, generator=generator)
  state_dict = collections.OrderedDict([
      ("conv1.weight", torch.randn(8, 3, 7, 7, generator=generator)),
      ("bn1.running_var", torch.rand(8, generator=generator).double()),
      ("bn1.num_batches_tracked", torch.tensor(100)),
      ("fc.weight_t", base.t()),  # non-contiguous, shares base's storage
      ("fc.rows", base[2:5]),  # storage offset 8
      ("bf16", torch.randn(3, 5, generator=generator).bfloat16()),
      ("bf16_t", torch.randn(5, 3, generator=generator).bfloat16().t()),
      ("half", torch.randn(4, generator=generator).half()),
      ("mask", torch.tensor([True, False, True])),
      ("bytes", torch.arange(5, dtype=torch.uint8)),
      ("int8", torch.arange(-3, 3, dtype=torch.int8)),
      ("int16", torch.arange(4, dtype=torch.int16)),
      ("int32", torch.arange(4, dtype=torch.int32)),
  ])
  assert not state_dict["fc.weight_t"].is_contiguous() and state_dict["fc.rows"].storage_offset() == 8
  torch.save({"state_dict": state_dict, "epoch": 3, "arch": "resnet"}, tmp_path / "checkpoint.pth")
  torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), tmp_path / "module.pt")
  torch.save({"parameter": torch.nn.Parameter(torch.ones(2, 2))}, tmp_path / "parameter.pt")
  read = torch_reader.read(tmp_path / "checkpoint.pth")
  assert list(read) == [f"state_dict.{key}" for key in state_dict]
  for key, tensor in state_dict.items():
    expected = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    assert read[f"state_dict.{key}"].dtype == expected.dtype, key
    np.testing.assert_array_equal(read[f"state_dict.{key}"], expected, err_msg=key)
  assert list(torch_reader.read(tmp_path / "module.pt")) == ["weight", "bias"]
  np.testing.assert_array_equal(torch_reader.read(tmp_path / "parameter.pt")["parameter"], np.ones((2, 2)))
  assert weights.read_state_dict(tmp_path / "checkpoint.pth").keys() == read.keys()
