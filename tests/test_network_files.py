"""The auxiliary networks' file format (``storage.network_files``): a round trip with its record, and one line that
names the file for a missing, damaged or foreign one."""

import json

import jax
import numpy as np
import pytest

from dapose_jax import errors
from dapose_jax.storage import network_files

VARIABLES = {"params": {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3)}}}


def test_variables_and_record_come_back_as_written(tmp_path):
  path = network_files.write(tmp_path / "sub" / "net.msgpack", VARIABLES, {"steps": 3, "loss": [1.0, 0.5]})
  assert sorted(p.name for p in path.parent.iterdir()) == ["net.json", "net.msgpack"]  # no temporary files left
  loaded = network_files.read(path, like=jax.tree.map(np.zeros_like, VARIABLES))
  jax.tree.map(np.testing.assert_array_equal, loaded, VARIABLES)
  assert network_files.read_record(path) == {"steps": 3, "loss": [1.0, 0.5]}
  assert json.loads((tmp_path / "sub" / "net.json").read_text())["steps"] == 3


def test_a_file_of_other_shapes_is_refused_with_what_it_should_hold(tmp_path):
  path = network_files.write(tmp_path / "net.msgpack", VARIABLES)
  other = {"params": {"dense": {"kernel": np.zeros((2, 4), np.float32), "bias": np.ones(3)}}}
  with pytest.raises(errors.ConfigError, match=r"net.msgpack does not hold a 4-wide layer \(.*shape \(2, 3\), "
                                               r"expected \(2, 4\).*; train it again"):
    network_files.read(path, like=other, what="a 4-wide layer", remake="train it again")


def test_missing_and_damaged_files_are_named_in_one_line(tmp_path):
  with pytest.raises(errors.MissingInputError, match="gone.msgpack is not a network file; make it"):
    network_files.read(tmp_path / "gone.msgpack", remake="make it")
  (tmp_path / "noise.msgpack").write_bytes(np.random.default_rng(0).bytes(256))
  with pytest.raises(errors.CorruptInputError, match="noise.msgpack is not a readable network file") as raised:
    network_files.read(tmp_path / "noise.msgpack")
  assert "\n" not in str(raised.value)
  (tmp_path / "noise.json").write_bytes(b"\xff\xfe{")
  with pytest.raises(errors.CorruptInputError, match="noise.json is not a readable JSON record"):
    network_files.read_record(tmp_path / "noise.msgpack")
  with pytest.raises(errors.MissingInputError, match="gone.json is missing"):
    network_files.read_record(tmp_path / "gone.msgpack")
