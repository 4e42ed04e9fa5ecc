"""metrics.jsonl and TensorBoard agree after a kill and a resume."""

import json
import logging
import struct

from tensorboardX.proto import event_pb2

from dapose_jax.storage import workdirs
from dapose_jax.storage.metric_writers import MetricWriter


def tensorboard_events(directory):
  """Every event of the event files in ``directory``, files in name (= time) order."""
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):  # TFRecord: length (8), its CRC (4), the record, its CRC (4)
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      yield event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length


def tensorboard_scalars(directory):
  """{(tag, step): value} as TensorBoard shows it: an event that starts a session at step S hides everything
  logged before it at steps >= S (``purge_step``)."""
  scalars = {}
  for event in tensorboard_events(directory):
    if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
      scalars = {key: v for key, v in scalars.items() if key[1] < event.step}
    for value in event.summary.value:
      if value.HasField("simple_value"):
        scalars[(value.tag, event.step)] = value.simple_value
  return scalars


def jsonl_scalars(path):
  """{(tag, step): value} of a metrics.jsonl, as the writer sends it to TensorBoard."""
  scalars = {}
  for record in map(json.loads, path.read_text().splitlines()):
    kind, step = record.pop("kind"), record.pop("step")
    for split, value in record.items():
      for key, v in (value.items() if isinstance(value, dict) else [("", value)]):
        scalars[("/".join(filter(None, (kind, split, key))), step)] = v
  return scalars


def test_tensorboard_equals_metrics_jsonl_after_a_kill_and_a_resume(tmp_path):
  killed = MetricWriter(tmp_path)
  for step in range(1, 6):
    killed.write(step, "train", {"loss": 1.0 / step})
  killed.write(4, "eval", {"target": {"all": 40.0}})
  # killed here, without close(); the resumed run restores the checkpoint of step 3
  resumed = MetricWriter(tmp_path, resume_step=3)
  for step in range(4, 7):
    resumed.write(step, "train", {"loss": 2.0 / step})
  resumed.close()
  expected = {("train/loss", s): 1.0 / s for s in (1, 2, 3)} | {("train/loss", s): 2.0 / s for s in (4, 5, 6)}
  assert jsonl_scalars(tmp_path / workdirs.METRICS) == expected
  tensorboard = tensorboard_scalars(tmp_path / workdirs.TENSORBOARD)
  assert tensorboard.keys() == expected.keys()
  assert all(abs(tensorboard[k] - v) < 1e-6 for k, v in expected.items())  # TensorBoard stores float32


def test_a_half_written_last_line_is_dropped_with_a_warning(tmp_path, caplog):
  lines = [json.dumps({"step": s, "kind": "train", "loss": 0.5}) for s in (1, 2)]
  (tmp_path / workdirs.METRICS).write_text("\n".join(lines) + '\n{"step": 3, "kind": "tr')
  with caplog.at_level(logging.WARNING, logger="dapose_jax"):
    MetricWriter(tmp_path, resume_step=2).close()
  assert (tmp_path / workdirs.METRICS).read_text().splitlines() == lines
  assert "dropped an unreadable line" in caplog.text
