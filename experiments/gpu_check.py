"""The plan of experiments/gpu_check.sh (run that, not this): benchmark.py runs, each in its own process with its
own time limit, inside one time budget, merged into $OUT/gpu_check.json.

1. ResNet-101 @ 256 px, global batch 32, bfloat16 then float32: source_only, regda and mean_teacher, JAX and
   PyTorch, train steps and eval forwards, in one process per dtype.
2. The demo's synthetic input pipelines at batch 32, 256 px, on the host's CPUs: can they feed the GPU?
3. The largest batch that fits, per dtype and method (one process per try, so that memory starts empty): 256,
   then 128, then 64, going down while JAX or PyTorch runs out of memory. Top-down, because a try costs a
   compilation and most tries are expected to fit on 141 GB; so a batch that fits is the largest that fits up to 256.
A run that would start with too little of the budget left is recorded as skipped.

--dry-run: the same plan on the CPU with benchmark.py --dry-run (tiny shapes), batch 2 in step 1, and step 3 for
source_only only with batches 4, 2; its time limits are wide, as the point is to check the code paths (about
8 minutes on 2 shared cores).
"""

import json
import os
import pathlib
import subprocess
import sys
import time

EXPERIMENTS = pathlib.Path(__file__).resolve().parent
METHODS = ("source_only", "regda", "mean_teacher")
DTYPES = ("bfloat16", "float32")


def main():
  dry = sys.argv[1:] == ["--dry-run"]
  if sys.argv[1:] not in ([], ["--dry-run"]):
    sys.exit("usage: experiments/gpu_check.sh [--dry-run]")
  out = pathlib.Path(os.environ.get("OUT", "/tmp/gpu_check"))
  runs_dir = pathlib.Path("/tmp/gpu_check_runs")
  runs_dir.mkdir(parents=True, exist_ok=True)
  budget = 900 if dry else 450  # seconds for all runs: the script's 8 minutes less start-up and margin
  limits = {"batch32": 400 if dry else 210, "largest": 150 if dry else 100, "pipeline": 120 if dry else 45}
  base = ["--backbone", "resnet18" if dry else "resnet101", "--image_size", "64" if dry else "256",
          *(["--dry-run"] if dry else ["--warmup", "3", "--repeats", "5", "--steps", "3"])]
  deadline = time.monotonic() + budget
  report = {"dry_run": dry, "budget_s": budget, "runs": []}

  def run(name, limit, args):
    left = deadline - time.monotonic()
    record = {"name": name, "args": args}
    report["runs"].append(record)
    if left < min(limit, 20 if dry else 60):
      record.update(status="skipped", reason=f"{left:.0f} s of the time budget left")
      return record
    path = runs_dir / f"{name}.json"
    path.unlink(missing_ok=True)
    command = [sys.executable, str(EXPERIMENTS / "benchmark.py"), *args, "--out", str(path)]
    print(f"== {name} (limit {min(limit, left):.0f} s): {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    try:
      rc = subprocess.run(command, timeout=min(limit, left)).returncode
      record["status"] = "ok" if rc == 0 else f"failed (exit status {rc})"
    except subprocess.TimeoutExpired:
      record["status"] = "timed out"
    record["seconds"] = time.monotonic() - start
    record["result"] = json.loads(path.read_text()) if path.exists() else None  # written after each method
    write(out, report)
    return record

  for dtype in DTYPES:
    run(f"batch32_{dtype}", limits["batch32"],
        [*base, "--dtype", dtype, "--batch_size", "32" if not dry else "2", "--methods", ",".join(METHODS), "--torch",
         "--profile", "2"])

  run("pipeline", limits["pipeline"],
      [*base, "--methods=", "--pipeline", "--pipeline_configs", "configs/demo.py", "--batch_size", "32",
       "--pipeline_threads", "1" if dry else "2,8", "--pipeline_workers", "0" if dry else "0,8"])

  largest = report["largest_batch"] = {}
  for dtype in DTYPES:
    for method in METHODS[:1] if dry else METHODS:
      fits = largest.setdefault(dtype, {}).setdefault(method, {"jax": None, "torch": None})
      for batch in (4, 2) if dry else (256, 128, 64):
        record = run(f"largest_{dtype}_{method}_{batch}", limits["largest"],
                     [*base, "--dtype", dtype, "--batch_size", str(batch), "--methods", method, "--torch", "--noeval"])
        outcome = _outcome(record, method)
        for framework, ok in outcome.items():
          if ok and fits[framework] is None:
            fits[framework] = batch
        if None not in fits.values() or record["status"] != "ok" or not outcome:
          break  # both fit, or the run failed, timed out or was skipped: smaller batches would tell nothing new

  write(out, report)
  print(json.dumps({"largest_batch": largest, "runs": {r["name"]: r["status"] for r in report["runs"]}}, indent=1))


def _outcome(record, method):
  """{framework: whether its train step ran} of one try ({} when there is no result)."""
  result = (record.get("result") or {}).get("methods", {}).get(method)
  if not result:
    return {}
  return {framework: "error" not in result[framework]["train"] for framework in ("jax", "torch")
          if framework in result}


def write(out, report):
  (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
  main()
