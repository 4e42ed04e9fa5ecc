"""Throughput of the train steps, the evaluation forward and the input pipelines; JSON out, and a table.

  python experiments/benchmark.py --dry-run --torch --pipeline      # tiny shapes on the CPU: about 5 minutes
  python experiments/benchmark.py --backbone resnet18 --image_size 128 --batch_size 8 --torch --out bench.json
  python experiments/benchmark.py --methods regda --batch_size 32 --dtype bfloat16 --torch   # R101 @ 256: a GPU

Each method's train step (``config.method`` set to it) is jitted as dapose_jax.run.loop does it (state replicated
and donated, batches sharded over a 1-D 'data' mesh of the first --devices devices) and fed one synthetic batch
(random uint8 images, keypoints and visibilities of the config's keypoint set), again and again. Reported: the
lower and compile times, the median (min, max) step time over --repeats, steps/s and images/s (source images
per step = the global batch; each step also reads a target batch as large), XLA's FLOP count of the step and the
MFU against the device's nominal peak (only where that peak is known: NVIDIA A100/H100/H200), memory, and the
same for the method's eval_heatmaps. With --torch the same step in PyTorch eager (experiments/torch_reference.py)
runs on the same batches, its parameter count is checked against the JAX model's, and JAX time / PyTorch time is
reported: on the CPU the two take turns repeat by repeat (--interleave), elsewhere PyTorch runs first and returns
its memory before JAX runs. The mean-teacher methods run without style transfer (its AdaIN forward is a
separate, random-per-step cost).

Memory: on a GPU, peak_device_bytes is the device's high-water mark since the process started (so it includes
the methods timed before); compiled_step_bytes_per_device is XLA's buffer assignment of this one step. On the
CPU it is the process's peak RSS (both frameworks and all methods so far).

--threads pins the whole process to that many CPUs (XLA sizes its thread pools from the CPUs it may use) and
sets PyTorch's intra-op threads to the same number. --devices > 1 on the CPU makes that many virtual devices.
"""

import collections
import dataclasses
import functools
import gc
import json
import os
import pathlib
import platform
import re
import resource
import runpy
import statistics
import sys
import tempfile
import time
from typing import Callable

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
TRAIN_METHODS = ("source_only", "regda", "mean_teacher", "daml")

flags.DEFINE_string("config", str(REPO / "configs/surreal_lsp.py"),
                    "Config file[:variant]: its model, optimiser and loss settings (no data is read).")
flags.DEFINE_list("methods", list(TRAIN_METHODS), "Methods to time (any of dapose_jax.methods.NAMES that trains "
                  "a pose network: source_only, regda, mean_teacher, daml).")
flags.DEFINE_string("backbone", None, "config.model.backbone (resnet18/34/50/101); default: the config's.")
flags.DEFINE_integer("image_size", None, "Input side in pixels (a multiple of 32; heatmaps are 1/4 of it); "
                     "default: the config's.")
flags.DEFINE_integer("batch_size", None, "Global batch (source images per step); default: the config's.")
flags.DEFINE_string("dtype", None, "config.model.dtype, the compute dtype (parameters stay float32): "
                    "float32 or bfloat16 (dapose_jax.models.pose.DTYPES); default: the config's.")
flags.DEFINE_integer("devices", 0, "Use the first N devices (0: all). On the CPU, N > 1 virtual devices are made.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_integer("repeats", 5, "Timed repeats; the median, min and max are reported.")
flags.DEFINE_integer("steps", 1, "Steps per timed repeat (dispatched back to back, then waited for).")
flags.DEFINE_integer("threads", 0, "Pin the process to N CPUs and use N PyTorch threads (0: all CPUs).")
flags.DEFINE_bool("torch", False, "Also time the PyTorch eager steps (pip install -e '.[bench]').")
flags.DEFINE_bool("torch_channels_last", True, "PyTorch models and images in channels-last memory format.")
flags.DEFINE_bool("interleave", None, "Time the JAX and PyTorch steps of a method in turns, repeat by repeat, so "
                  "that both see the same load on a shared machine (both models stay in memory); default: on the "
                  "CPU only.")
flags.DEFINE_bool("eval", True, "Also time each method's eval_heatmaps (and the PyTorch eval forward).")
flags.DEFINE_bool("pipeline", False, "Also time the training input pipelines.")
flags.DEFINE_list("pipeline_configs", [], "Config files whose source and target training pipelines are timed; "
                  "default: configs/demo.py (embedded synthetic data) and --config. A data set that is not "
                  "built is reported as skipped.")
flags.DEFINE_list("pipeline_threads", ["1", "2"], "Grain read threads to try.")
flags.DEFINE_list("pipeline_workers", ["0", "2"], "Grain worker processes to try (0: none).")
flags.DEFINE_integer("pipeline_batches", 10, "Batches timed per pipeline setting (after the first one).")
flags.DEFINE_string("pipeline_data_dir", None, "data_dir of the built (non-synthetic) data sets; default: the "
                    "config's.")
flags.DEFINE_integer("profile", 0, "After timing, trace N train steps of each JAX method with jax.profiler and "
                     "report the XLA operations that took the longest (ms per step, share of the traced op time, "
                     "what each computes).")
flags.DEFINE_bool("dry-run", False, "Tiny shapes on the CPU, to check that everything runs: resnet18, 64 px, "
                  "batch 2, 1 warm-up step, 1 repeat, 2 pipeline batches, 1 thread, 0 and 1 workers, each unless "
                  "given; and XLA's optimisations off (fast compiles).")
flags.DEFINE_string("out", None, "Write the results here as JSON (rewritten after each method).")
FLAGS = flags.FLAGS

# Dense (no sparsity) peak FLOP/s per device, by compute dtype, from NVIDIA's datasheets, of the GPUs that
# dapose_jax.accelerators.targets.CHIPS (H100 SXM, H200, the TPUs) does not list: H100 PCIe 756 / 378, A100 312 /
# 156 TFLOPS. float32 counts as TF32: XLA and cuDNN use TF32 for float32 convolutions on these GPUs by default
# (JAX's default precision; torch.backends.cudnn.allow_tf32). Other devices: no MFU.
PEAK_FLOPS = (("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
              ("A100", {"bfloat16": 312e12, "float32": 156e12}))


def peak_flops(device_kind, dtype):
  from dapose_jax.accelerators import targets

  chip = targets.chip_of(device_kind)
  if chip is not None:
    return chip.peak_flops[dtype]
  return next((peaks[dtype] for name, peaks in PEAK_FLOPS if name in device_kind), None)


def load_config(spec):
  path, _, variant = spec.partition(":")
  path = pathlib.Path(path)
  return runpy.run_path(str(path if path.is_absolute() else REPO / path))["get_config"](variant)


def method_config(config, name):
  """The config of one timed method: ``config.method`` = name, no style transfer."""
  from dapose_jax import methods

  config = config.copy_and_resolve_references()
  config.method = name
  for section in ("mean_teacher", "daml"):
    config[section].update(source_style_prob=0.0, teacher_style_prob=0.0)
    config[section].pretrain.stylise_prob = 0.0
  return methods.get(name).configure(config)


def random_batch(config, seed):
  """What the pipelines yield (as tests/test_parallel.py's random_batch, for any keypoint set)."""
  import numpy as np

  from dapose_jax.pose import skeletons

  rng = np.random.default_rng(seed)
  n, size, k = config.batch_size, config.image_size, skeletons.get(config.source.keypoint_set).num_keypoints
  return {"image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
          "keypoints": rng.uniform(0, size, (n, k, 2)).astype(np.float32),
          "visible": (rng.uniform(size=(n, k)) > 0.2).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class Job:
  """One timed thing: ``run()`` dispatches a step, ``wait(out)`` blocks on what it returned, and
  ``finish(seconds)`` turns the seconds per step of each repeat into the result."""
  run: Callable
  wait: Callable
  finish: Callable


def timed(jobs, args):
  """The results of ``jobs``, each timed over ``args.repeats`` repeats of ``args.steps`` steps after
  ``args.warmup`` steps. Several jobs take turns repeat by repeat, so that each sees the same machine load."""
  for job in jobs:
    for _ in range(args.warmup):
      job.wait(job.run())
  seconds = [[] for _ in jobs]
  for _ in range(args.repeats):
    for job, times in zip(jobs, seconds):
      start = time.perf_counter()
      for _ in range(args.steps):
        out = job.run()
      job.wait(out)
      times.append((time.perf_counter() - start) / args.steps)
  return [job.finish(times) for job, times in zip(jobs, seconds)]


def rates(seconds, batch_size):
  median = statistics.median(seconds)
  return {"step_s": {"median": median, "min": min(seconds), "max": max(seconds), "repeats": len(seconds)},
          "steps_per_s": 1.0 / median, "images_per_s": batch_size / median}


def add_flop_rates(result, flops, peak):
  """TFLOP/s and MFU of a timed ``result`` that does ``flops`` per step on hardware of ``peak`` FLOP/s."""
  if flops and "step_s" in result:
    result["tflops_per_s"] = flops / result["step_s"]["median"] / 1e12
    result["mfu"] = flops / result["step_s"]["median"] / peak if peak else None


def is_oom(error):
  text = f"{type(error).__name__} {error}"
  return "RESOURCE_EXHAUSTED" in text or "OutOfMemoryError" in text or "out of memory" in text.lower()


def oom_guarded(fn):
  """fn(), or {"error": ...} when it ran out of memory (other errors propagate)."""
  try:
    return fn()
  except Exception as error:  # noqa: BLE001  out-of-memory errors have no common type across the frameworks
    if not is_oom(error):
      raise
    return {"error": "out of memory", "detail": " ".join(str(error).split())[:400]}


def process_peak_rss():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def jax_memory(devices):
  """Peak bytes in use on the busiest device (a high-water mark since the process started), or the process's
  peak RSS where the device reports none (the CPU)."""
  stats = [d.memory_stats() for d in devices]
  if all(s and "peak_bytes_in_use" in s for s in stats):
    return {"peak_device_bytes": max(s["peak_bytes_in_use"] for s in stats)}
  return {"peak_process_rss_bytes": process_peak_rss()}


def xla_flops(lowered, compiled, num_devices):
  """{"compiled", "lowered"}: the FLOPs of one call over all devices by XLA's cost analysis of the compiled
  program (per device after SPMD partitioning, so times the devices) and of the lowered, unoptimised one (the
  whole program); None where a backend counts none. ``cost_analysis()`` is a dict, or a list of one dict in
  some JAX versions."""
  counts = {}
  for name, stage, scale in (("compiled", compiled, num_devices), ("lowered", lowered, 1)):
    try:
      costs = stage.cost_analysis()
    except Exception:  # noqa: BLE001  not every backend implements it
      costs = None
    costs = costs[0] if isinstance(costs, (list, tuple)) and costs else costs
    flops = (costs or {}).get("flops", 0)
    counts[name] = flops * scale if flops > 0 else None
  return counts


def compiled_bytes(compiled):
  """Device memory one step needs by XLA's buffer assignment: arguments + outputs - donated aliases + temps."""
  try:
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  except Exception:  # noqa: BLE001  not every backend implements it
    return None


# Runtime bookkeeping in a trace, not operations: executor and thread-pool regions, end markers.
_RUNTIME_EVENT = re.compile(r".*::|end: ")
_COMPUTE_OPCODES = ("convolution", "dot", "custom-call", "reduce-window", "select-and-scatter", "scatter", "gather",
                    "sort", "reduce")


def op_profile(run, wait, hlo_text, steps, top=20):
  """[{op, computes, shape, ms_per_step, share}] of the ``top`` operations that ran longest over ``steps`` traced
  steps: the thunks the XLA:CPU runtime names (fusions, convolutions, dots; summed over its threads) or a GPU's
  "XLA Ops"; ``computes`` lists the compute opcodes inside a fusion, from the compiled HLO."""
  import jax

  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder):
      for _ in range(steps):
        wait(run())
    data = jax.profiler.ProfileData.from_file(str(next(pathlib.Path(folder).rglob("*.xplane.pb"))))
  totals = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name.startswith(("tf_XLAEigen", "tf_XLAExecute")) or (plane.name.startswith("/device:")
                                                                    and line.name == "XLA Ops"):
        for event in line.events:
          if not _RUNTIME_EVENT.match(event.name):
            totals[event.name] += event.duration_ns
  counted = sum(totals.values()) or 1
  return [{"op": name, **_hlo_summary(hlo_text, name), "ms_per_step": ns / 1e6 / steps, "share": ns / counted}
          for name, ns in totals.most_common(top)]


def _hlo_summary(hlo_text, name):
  """{"shape", "computes"} of instruction ``name`` in compiled HLO text (a fusion: the compute opcodes it calls)."""
  found = re.search(rf"^\s*(?:ROOT )?%?{re.escape(name)} = (\S+) ([\w-]+)\((.*)$", hlo_text, re.M)
  if not found:
    return {"shape": None, "computes": None}
  shape, opcode, rest = found.groups()
  called = re.search(r"calls=%?([\w.-]+)", rest)
  if opcode != "fusion" or not called:
    return {"shape": shape, "computes": opcode}
  body = re.search(rf"^%?{re.escape(called.group(1))} .*?\{{\n(.*?)^\}}", hlo_text, re.M | re.S)
  ops = re.findall(r"= \S+ ([\w-]+)\(", body.group(1)) if body else []
  return {"shape": shape, "computes": ",".join(sorted({op for op in ops if op in _COMPUTE_OPCODES})) or "elementwise"}


class JaxBench:
  """One method's JAX step and eval forward over ``mesh``."""

  def __init__(self, method, config, mesh, host_source, host_target):
    import jax

    from dapose_jax import parallel

    self.jax, self.method, self.config, self.mesh = jax, method, config, mesh
    self.repl, self.data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    self.source, self.target = parallel.to_global(host_source, mesh), parallel.to_global(host_target, mesh)
    self.devices = list(mesh.devices.flat)
    self.peak = peak_flops(self.devices[0].device_kind, config.model.dtype)  # per device

  def compiled(self, fn, *args):
    """(lower s, compile s, compiled, FLOP counts) of ``fn`` jitted on ``args``."""
    start = time.perf_counter()
    lowered = fn.lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    return lower_s, time.perf_counter() - start, compiled, xla_flops(lowered, compiled, len(self.devices)), lowered

  def roofline(self, lowered, compiled):
    """``dapose-jax compile``'s bound on this step (``dapose_jax.accelerators.analysis.roofline``) on a device with
    a datasheet in ``targets.CHIPS`` (H100, H200, TPUs), to set beside the measured step; else None."""
    from dapose_jax.accelerators import analysis, targets

    chip = targets.chip_of(self.devices[0].device_kind)
    if chip is None:
      return None
    return analysis.roofline(analysis.flops(lowered), analysis.bytes_accessed(compiled, self.devices[0].platform),
                             len(self.devices), chip, self.config.model.dtype, self.config.batch_size)

  def with_flops(self, result, counts):
    """``result`` with the FLOPs of one step (the compiled program's count, else the lowered one's), the
    unoptimised count as a cross-check, and TFLOP/s and MFU (None where the device's peak is unknown)."""
    n = len(self.devices)
    counted_on = "compiled" if counts["compiled"] else "lowered" if counts["lowered"] else None
    result.update(flops_per_step=counts.get(counted_on), flops_counted_on=counted_on,
                  flops_per_step_unoptimised=counts["lowered"], peak_flops_per_device=self.peak)
    add_flop_rates(result, result["flops_per_step"], self.peak and self.peak * n)
    return result

  def num_params(self):
    jax = self.jax
    state = jax.eval_shape(functools.partial(self.method.init, self.config), jax.random.key(0))
    trees = (state.params, getattr(state, "disc_params", {}))
    return sum(x.size for tree in trees for x in jax.tree.leaves(tree))

  def train(self):
    jax, config = self.jax, self.config
    state = jax.jit(functools.partial(self.method.init, config), out_shardings=self.repl)(jax.random.key(config.seed))
    step = jax.jit(functools.partial(self.method.train_step, config), donate_argnums=(0,),
                   in_shardings=(self.repl, self.data, self.data), out_shardings=(self.repl, self.repl))
    lower_s, compile_s, compiled, flops, lowered = self.compiled(step, state, self.source, self.target)
    box = {"state": state}
    del state

    def run():
      box["state"], box["metrics"] = compiled(box["state"], self.source, self.target)
      return box["state"], box["metrics"]

    self.train_profile = lambda steps: op_profile(run, jax.block_until_ready, compiled.as_text(), steps)

    bound = self.roofline(lowered, compiled)

    def finish(seconds):
      self.final_state = box["state"]
      result = {"lower_s": lower_s, "compile_s": compile_s, **rates(seconds, config.batch_size),
                "loss": float(box["metrics"]["loss"]), "compiled_step_bytes_per_device": compiled_bytes(compiled),
                **jax_memory(self.devices), "roofline": bound}
      return self.with_flops(result, flops)

    return Job(run, jax.block_until_ready, finish)

  def eval(self):
    """The eval forward of the state that ``train`` left."""
    jax = self.jax
    predict = jax.jit(functools.partial(self.method.eval_heatmaps, self.config),
                      in_shardings=(self.repl, self.data), out_shardings=self.data)
    state, images = self.final_state, self.source["image"]
    lower_s, compile_s, compiled, flops, _ = self.compiled(predict, state, images)
    finish = lambda seconds: self.with_flops(
        {"lower_s": lower_s, "compile_s": compile_s, **rates(seconds, self.config.batch_size)}, flops)
    return Job(lambda: compiled(state, images), jax.block_until_ready, finish)


class TorchBench:
  """The PyTorch eager counterpart of one method (experiments/torch_reference.py)."""

  def __init__(self, config, host_source, host_target, channels_last):
    import torch
    import torch.utils.flop_counter

    import torch_reference

    self.torch = torch
    self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # cuDNN picks its convolution algorithms by timing them, as XLA's autotuner does when it compiles the step
    torch.backends.cudnn.benchmark = True
    self.runner = torch_reference.make_runner(config, self.device, channels_last, config.model.dtype == "bfloat16")
    self.params = torch_reference.num_parameters(*self.runner.modules())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    to_device = lambda b: {"image": torch.from_numpy(b["image"]).to(self.device).permute(0, 3, 1, 2).contiguous(
        memory_format=fmt), **{k: torch.from_numpy(b[k]).to(self.device) for k in ("keypoints", "visible")}}
    self.source, self.target = to_device(host_source), to_device(host_target)
    self.batch_size = config.batch_size

  def wait(self, _):
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()

  def memory(self):
    if self.device.type == "cuda":
      return {"peak_device_bytes": self.torch.cuda.max_memory_allocated()}
    return {"peak_process_rss_bytes": process_peak_rss()}

  def train(self):
    if self.device.type == "cuda":
      self.torch.cuda.reset_peak_memory_stats()
    box = {}

    def run():
      box["loss"] = self.runner.train_step(self.source, self.target)

    def finish(seconds):
      result = {**rates(seconds, self.batch_size), "loss": float(box["loss"]), **self.memory()}
      # PyTorch's count of its matmul and convolution FLOPs: a check that both sides do the same work
      with self.torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        run()
      return {**result, "matmul_conv_flops_per_step": counter.get_total_flops()}

    return Job(run, self.wait, finish)

  def eval(self):
    return Job(lambda: self.runner.eval_heatmaps(self.source["image"]), self.wait,
               lambda seconds: rates(seconds, self.batch_size))

  def close(self):
    del self.runner, self.source, self.target
    gc.collect()
    if self.device.type == "cuda":
      self.torch.cuda.empty_cache()  # JAX runs next, in the same device memory


def bench_method(name, base_config, mesh, args):
  """{"params", "jax", "torch", "jax_over_torch"} of one method. With --interleave both frameworks' steps take
  turns; else PyTorch runs first (its cached memory is returned before JAX runs), then JAX."""
  from dapose_jax import methods

  method = methods.get(name)
  config = method_config(base_config, name)
  host_source, host_target = random_batch(config, 1), random_batch(config, 2)
  benches = {"jax": JaxBench(method, config, mesh, host_source, host_target)}
  out = {"params": {"jax": benches["jax"].num_params()}, "jax": {}}
  if args.torch:
    benches["torch"] = TorchBench(config, host_source, host_target, args.torch_channels_last)
    out["params"]["torch"] = benches["torch"].params
    out["torch"] = {}
    print(f"{name}: parameters JAX {out['params']['jax']:,}, PyTorch {out['params']['torch']:,}", flush=True)
    assert out["params"]["torch"] == out["params"]["jax"], f"{name}: the two models differ: {out['params']}"
  parts = ("train", "eval") if args.eval else ("train",)
  rounds = [list(benches)] if args.interleave else [[f] for f in ("torch", "jax") if f in benches]
  for frameworks in rounds:
    for part in parts:
      # an eval forward runs on the state that its train step left
      running = [f for f in frameworks if part == "train" or "error" not in out[f]["train"]]
      results = oom_guarded(lambda: timed([getattr(benches[f], part)() for f in running], args))
      for i, f in enumerate(running):
        out[f][part] = results if isinstance(results, dict) else results[i]
    if "torch" in frameworks:
      benches.pop("torch").close()
  if args.profile and "error" not in out["jax"]["train"]:
    out["jax"]["train_profile"] = benches["jax"].train_profile(args.profile)
  if args.torch:
    for part, result in out["torch"].items():
      # XLA's count for the JAX step stands for the same work in PyTorch, which runs on one device
      add_flop_rates(result, out["jax"].get(part, {}).get("flops_per_step"), benches["jax"].peak)
    out["jax_over_torch"] = {part: _ratio(out["jax"].get(part), out["torch"].get(part)) for part in out["torch"]}
  return out


def _ratio(jax_part, torch_part):
  if not jax_part or not torch_part or "error" in jax_part or "error" in torch_part:
    return None
  return jax_part["step_s"]["median"] / torch_part["step_s"]["median"]


def bench_pipelines(specs, args, batch_size, image_size):
  """images/s of each config's source and target training pipelines per (threads, workers), with the augmentation
  on the host and, where the domain augments, with ``augment.on_device`` (the host only decodes and resizes); then
  the device's ms per batch for that augmentation."""
  from dapose_jax.augment import device_augment
  from dapose_jax.data import pipeline, sources

  out = {}
  for spec in specs:
    config = load_config(spec)
    for domain in ("source", "target"):
      data = config[domain]
      key = f"{spec} {domain} ({data.name})"
      if args.pipeline_data_dir and data.name != "synthetic":
        data.data_dir = args.pipeline_data_dir
      try:
        source = sources.make_source(data, "train")
      except sources.MissingDatasetError as error:
        out[key] = {"skipped": " ".join(str(error).split())}
        continue
      rows = []
      for on_device in (False, True) if data.augment.enabled else (False,):
        data.augment.on_device = on_device
        for workers in map(int, args.pipeline_workers):
          for threads in map(int, args.pipeline_threads):
            it = pipeline.train_iterator(source, batch_size=batch_size, image_size=image_size, augment=data.augment,
                                         seed=0, num_threads=threads, prefetch=config.data.prefetch, workers=workers)
            start = time.perf_counter()
            next(it)
            first = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(args.pipeline_batches):
              batch = next(it)
            elapsed = time.perf_counter() - start
            rows.append({"on_device": on_device, "threads": threads, "workers": workers, "first_batch_s": first,
                         "images_per_s": args.pipeline_batches * batch_size / elapsed})
            del it
      out[key] = {"augment": data.augment.to_dict(), "settings": rows}
      params = device_augment.from_config(config, domain)
      if params is not None:
        out[key]["device_augment_ms"] = device_augment_ms(batch, params, args.pipeline_batches)
  return out


def device_augment_ms(batch, params, repeats):
  """Median ms of the jitted device augmentation of one host batch on the first device, after a warm-up call."""
  import jax

  from dapose_jax.augment import device_augment

  run = jax.jit(device_augment.augment_at, static_argnums=3)
  batch = jax.device_put(batch)
  jax.block_until_ready(run(0, 0, batch, params))
  times = []
  for step in range(1, repeats + 1):
    start = time.perf_counter()
    jax.block_until_ready(run(0, step, batch, params))
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


class Args:
  """The flags, with --dry-run's sizes applied."""

  def __init__(self):
    names = ("methods", "backbone", "image_size", "batch_size", "dtype", "devices", "warmup", "repeats", "steps",
             "threads", "torch", "torch_channels_last", "interleave", "eval", "pipeline", "pipeline_configs", "pipeline_threads",
             "pipeline_workers", "pipeline_batches", "pipeline_data_dir", "config", "out", "profile")
    for name in names:
      setattr(self, name, FLAGS[name].value)
    self.dry_run = FLAGS["dry-run"].value
    tiny = dict(backbone="resnet18", image_size=64, batch_size=2, warmup=1, repeats=1, steps=1, pipeline_batches=2,
                pipeline_threads=["1"], pipeline_workers=["0", "1"])
    for name, value in tiny.items():
      if self.dry_run and not FLAGS[name].present:
        setattr(self, name, value)


def set_up_process(args):
  """CPU pinning, virtual CPU devices and the dry run's CPU platform: before JAX is imported."""
  if args.threads:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
  if args.devices > 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.devices}").strip()
  if args.dry_run:
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # PyTorch too


def environment(args, devices):
  import flax
  import jax
  import jaxlib
  import optax
  import orbax.checkpoint

  env = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
         "flax": flax.__version__, "optax": optax.__version__, "orbax_checkpoint": orbax.checkpoint.__version__,
         "backend": jax.default_backend(),
         "device_kind": devices[0].device_kind, "devices": len(devices), "cpus": len(os.sched_getaffinity(0)),
         "xla_flags": os.environ.get("XLA_FLAGS", ""), "argv": sys.argv[1:],
         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  if args.torch:
    import torch

    env.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
               torch_device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
  return env


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  args = Args()
  set_up_process(args)
  if args.torch:
    try:
      import torch
    except ImportError:
      sys.exit("--torch needs PyTorch: pip install -e '.[bench]'")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
  import jax
  import numpy as np
  from jax.sharding import AxisType, Mesh

  from dapose_jax.models import pose

  if args.dry_run:
    jax.config.update("jax_disable_most_optimizations", True)  # compiles in a fraction of the time
  if args.interleave is None:
    args.interleave = jax.default_backend() == "cpu"
  config = load_config(args.config)
  for key, value in (("backbone", args.backbone), ("dtype", args.dtype)):
    if value is not None:
      config.model[key] = value
  if config.model.dtype not in pose.DTYPES:
    sys.exit(f"--dtype {config.model.dtype!r}: expected one of {sorted(pose.DTYPES)}")
  config.image_size = args.image_size or config.image_size
  config.heatmap_size = config.image_size // pose.OUTPUT_STRIDE
  config.batch_size = args.batch_size or config.batch_size
  if config.image_size % pose.INPUT_MULTIPLE:
    sys.exit(f"--image_size {config.image_size}: expected a multiple of {pose.INPUT_MULTIPLE}")
  unknown = set(args.methods) - set(TRAIN_METHODS)
  if unknown:
    sys.exit(f"--methods: {sorted(unknown)} cannot be timed; choose from {', '.join(TRAIN_METHODS)}")
  devices = jax.devices()[:args.devices or None]
  if args.devices > len(devices) or config.batch_size % len(devices):
    sys.exit(f"--devices {args.devices}, --batch_size {config.batch_size}: {len(jax.devices())} devices here, and "
             "the batch must split evenly over the devices used")
  mesh = Mesh(np.array(devices), ("data",), axis_types=(AxisType.Auto,))

  results = {"env": environment(args, devices),
             "settings": {"config": args.config, "backbone": config.model.backbone, "image_size": config.image_size,
                          "heatmap_size": config.heatmap_size, "batch_size": config.batch_size,
                          "dtype": config.model.dtype, "warmup": args.warmup, "repeats": args.repeats,
                          "steps_per_repeat": args.steps, "torch_channels_last": args.torch_channels_last,
                          "interleave": args.interleave,
                          "dry_run": args.dry_run},
             "methods": {}}
  for name in args.methods:
    start = time.perf_counter()
    results["methods"][name] = bench_method(name, config, mesh, args)
    print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    write(results, args.out)
  if args.pipeline:
    specs = args.pipeline_configs or ["configs/demo.py", args.config]
    results["pipelines"] = bench_pipelines(specs, args, config.batch_size, config.image_size)
    write(results, args.out)
  print(table(results))


def write(results, path):
  if path:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(json.dumps(results, indent=2) + "\n")


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def table(results):
  s = results["settings"]
  lines = [f"{results['env']['device_kind']} x{results['env']['devices']}  {s['backbone']} @ {s['image_size']} px, "
           f"batch {s['batch_size']}, {s['dtype']}  (step ms: median [min, max] of {s['repeats']})",
           f"{'method':<13}{'part':<6}{'framework':<10}{'compile s':>10}{'step ms':>28}{'img/s':>9}"
           f"{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}{'JAX/PT':>8}{'bound ms':>10}"]
  for name, entry in results["methods"].items():
    for part in ("train", "eval"):
      for framework in ("jax", "torch"):
        r = entry.get(framework, {}).get(part)
        if r is None:
          continue
        ratio = entry.get("jax_over_torch", {}).get(part) if framework == "jax" else None
        if "error" in r:
          lines.append(f"{name:<13}{part:<6}{framework:<10}  {r['error']}")
          continue
        t = r["step_s"]
        ms = f"{t['median'] * 1e3:.1f} [{t['min'] * 1e3:.1f}, {t['max'] * 1e3:.1f}]"
        memory = r.get("peak_device_bytes", r.get("peak_process_rss_bytes"))
        lines.append(f"{name:<13}{part:<6}{framework:<10}{_fmt(r.get('compile_s'), '.1f'):>10}{ms:>28}"
                     f"{r['images_per_s']:>9.1f}{_fmt(r.get('tflops_per_s'), '.3f'):>9}"
                     f"{_fmt(r.get('mfu'), '.1%'):>7}{_fmt(memory and memory / 2**30, '.2f'):>10}"
                     f"{_fmt(ratio, '.2f'):>8}{_fmt(r.get('roofline') and r['roofline']['step_s_at_least'] * 1e3, '.2f'):>10}")
  for name, entry in results["methods"].items():
    for row in entry.get("jax", {}).get("train_profile", []):
      lines.append(f"profile {name}: {row['ms_per_step']:8.1f} ms/step {row['share']:6.1%}  {row['op']:<28} "
                   f"{row['computes'] or '?':<22} {row['shape'] or ''}")
  for key, entry in results.get("pipelines", {}).items():
    if "skipped" in entry:
      lines.append(f"pipeline {key}: skipped ({entry['skipped'][:160]})")
      continue
    settings = ", ".join(f"{'on-device ' if r.get('on_device') else ''}{r['threads']}t/{r['workers']}w "
                         f"{r['images_per_s']:.0f}" for r in entry["settings"])
    device = entry.get("device_augment_ms")
    lines.append(f"pipeline {key} img/s: {settings}" + (f"; device augmentation {device:.1f} ms/batch" if device else ""))
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
