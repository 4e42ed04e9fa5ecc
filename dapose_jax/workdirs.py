"""What a run writes into its workdir, by name, and the guard that a workdir holds one run's config."""

import json

import jax

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
BEST = "best"
RESULTS = "results.json"


def record_config(recorded, workdir):
  """Write ``recorded`` (a JSON-ready dict) as ``config.json``, or check that a resumed run recorded the same
  (never overwrite silently)."""
  path = workdir / CONFIG
  if path.exists():
    old = json.loads(path.read_text())
    if old != recorded:
      changed = sorted(_diff_keys(old, recorded))
      raise ValueError(
          f"{workdir} already holds a run with a different config (differs in: {', '.join(changed)}). "
          "Use a new --workdir, or repeat the original flags to resume that run.")
  elif jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


def _diff_keys(a, b, prefix=""):
  for key in set(a) | set(b):
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      yield from _diff_keys(a[key], b[key], f"{prefix}{key}.")
    elif a.get(key) != b.get(key):
      yield prefix + key
