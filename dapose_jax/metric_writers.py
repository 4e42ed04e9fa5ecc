"""Metrics to ``metrics.jsonl`` and TensorBoard, and a progress line; only process 0 writes."""

import json
import logging
import time

import jax

from dapose_jax import workdirs

log = logging.getLogger("dapose_jax")


class MetricWriter:

  def __init__(self, workdir, resume_step=0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter

    self.path = workdir / workdirs.METRICS
    self._drop_lines_after(resume_step)
    self._jsonl = open(self.path, "a")
    # purge_step: TensorBoard hides what an interrupted run logged after the restored step, as metrics.jsonl
    # forgets it; those steps run and are logged again. The suffix keeps a file of a restart within the same
    # second (tensorboardX names files by the second) from replacing the last one, and sorts after it.
    self._tb = SummaryWriter(str(workdir / workdirs.TENSORBOARD), purge_step=resume_step + 1,
                             filename_suffix=f".{time.time_ns()}")

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
    for key, value in _flatten(values).items():
      self._tb.add_scalar(f"{kind}/{key}", value, int(step))
    self._tb.flush()  # on disk at once, as metrics.jsonl: a kill loses nothing that was logged

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _flatten(values, prefix=""):
  out = {}
  for key, value in values.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}/"))
    elif isinstance(value, (int, float)):
      out[prefix + key] = value
  return out


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
