"""Metrics to ``metrics.jsonl`` and TensorBoard, and a progress line; only process 0 writes."""

import json
import logging
import time

import jax
from tensorboardX import summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

from dapose_jax.interop import nested
from dapose_jax.storage import workdirs

log = logging.getLogger("dapose_jax")


class MetricWriter:

  def __init__(self, workdir, resume_step=0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    self.path = workdir / workdirs.METRICS
    self._drop_lines_after(resume_step)
    self._jsonl = open(self.path, "a")
    # tensorboardX's SummaryWriter hands events to a thread, so its flush() may return before they are written
    # and a kill loses them: events are written here, in the caller's thread, by its file writer. The suffix
    # keeps a file of a restart within the same second (files are named by the second) from replacing the last
    # one, and sorts after it.
    (workdir / workdirs.TENSORBOARD).mkdir(parents=True, exist_ok=True)
    self._tb = EventsWriter(str(workdir / workdirs.TENSORBOARD / "events"), f".{time.time_ns()}")
    # A session start at step S: TensorBoard hides what an interrupted run logged at steps >= S, as
    # metrics.jsonl forgets it; those steps run and are logged again.
    self._write_event(event_pb2.Event(step=resume_step + 1,
                                      session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _drop_lines_after(self, step):
    """On resume, forget what was logged after the restored checkpoint (those steps run again) and a line
    that a kill left half-written."""
    if not self.path.exists():
      return
    lines = [l for l in self.path.read_text().splitlines() if l.strip()]
    kept = []
    for line in lines:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        log.warning("%s: dropped an unreadable line (as a kill during a write leaves): %.80s", self.path, line)
        continue
      if record["step"] <= step:
        kept.append(line)
    if len(kept) != len(lines):
      self.path.write_text("".join(l + "\n" for l in kept))

  def write(self, step, kind, values):
    if not self.enabled:
      return
    record = {"step": int(step), "kind": kind, **values}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    scalars = nested.flatten(values, _number, "/", prefix=f"{kind}/")
    self._write_summaries(step, [summary.scalar(tag, value) for tag, value in scalars.items()])

  def write_images(self, step, tag, images):
    """Each of ``images`` ({name: uint8 (H, W, 3) RGB}) as the TensorBoard image ``tag/name`` at ``step``
    (TensorBoard only: metrics.jsonl holds numbers)."""
    if not self.enabled:
      return
    self._write_summaries(step, [summary.image(f"{tag}/{name}", image, dataformats="HWC")
                                 for name, image in images.items()])

  def _write_summaries(self, step, summaries):
    values = [value for one in summaries for value in one.value]
    self._write_event(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(value=values)))

  def _write_event(self, event):
    event.wall_time = time.time()
    self._tb.write_event(event)
    self._tb.flush()  # on disk at once, as metrics.jsonl: a kill loses nothing that was logged

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _number(value):
  """``value`` when it is a number (what TensorBoard plots), else None."""
  return value if isinstance(value, (int, float)) else None


class Progress:
  """Steps/s and ETA; the first step after (re)start is excluded because it includes compilation."""

  def __init__(self, start_step, total_steps):
    self.total = total_steps
    self._t0 = None
    self._s0 = start_step

  def mark_first_step_done(self, step):
    self._t0, self._s0 = time.perf_counter(), step

  def exclude(self, seconds):
    """Leaves time spent outside training steps (evaluation) out of the rate."""
    if self._t0 is not None:
      self._t0 += seconds

  def report(self, step, loss):
    if self._t0 is None or step <= self._s0:
      log.info("step %d/%d  loss %.6g  (compiling)", step, self.total, loss)
      return None
    rate = (step - self._s0) / (time.perf_counter() - self._t0)
    eta = (self.total - step) / rate
    log.info("step %d/%d  loss %.6g  %.2f steps/s  ETA %dm%02ds", step, self.total, loss, rate,
                 eta // 60, eta % 60)
    return rate
