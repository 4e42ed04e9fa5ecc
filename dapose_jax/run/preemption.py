"""Stop requests: SIGTERM (a scheduler's preemption notice) or SIGINT (Ctrl-C) asks the loop to finish its step,
write a checkpoint and stop; the same signal again stops at once, without one.

With several processes, every process must stop after the same step: JAX's preemption service (started by
``jax.distributed.initialize``) receives SIGTERM on any process and agrees on that step
(``multihost_utils.reached_preemption_sync_point``); Ctrl-C is then left to its default.
"""

import contextlib
import logging
import signal
import threading

import jax

log = logging.getLogger("dapose_jax")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
  """``requested(step)``: whether to checkpoint and stop after ``step``; call it after every step."""

  def __init__(self):
    self.signal = None

  def _handle(self, signum, frame):
    self.signal = signal.Signals(signum)
    log.warning("%s received: the run stops after this step and writes a checkpoint (%s again stops it at once, "
                "without one)", self.signal.name, self.signal.name)
    signal.signal(signum, self._previous[signum])

  @contextlib.contextmanager
  def installed(self):
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
      yield self
      return
    previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    self._previous = {s: signal.SIG_DFL if h is None else h for s, h in previous.items()}  # None: set outside Python
    try:
      yield self
    finally:
      for s, handler in self._previous.items():
        signal.signal(s, handler)

  def requested(self, step):
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        self.signal = signal.SIGTERM
    return self.signal is not None
