"""The ``compile`` command: compiles every program a run of a config executes (each stage's train step and eval
forward) for GPUs or TPUs that this machine does not have, and reports what each costs there.

  dapose-jax compile --config configs/surreal_lsp.py:regda --target h100 --target tpu-v5e:2x2 \\
      [--config.model.dtype=bfloat16] [--batch_size 32] [--devices 8] [--nomax_batch] [--out compile.json]

Per program and target: FLOPs per step (XLA's count of the unoptimised program, so cuDNN convolutions count),
bytes accessed per step and device (the optimised program), arguments / outputs / temporaries per device, the
largest global batch that fits in the device's memory without XLA recomputing activations to make it fit
(--max_batch: a few more compilations), whether XLA recomputes at the given batch, a census of the
compiled program (cuDNN convolutions by kind, GEMMs, fusions, layout copies, collectives), the instructions that
move the most bytes (--heaviest) and a roofline bound: step time >= max(FLOPs / peak, bytes / bandwidth), images/s
<= batch / that, from the datasheet peaks of ``dapose_jax.accelerators.targets.CHIPS``. Bounds, not predictions:
cuDNN workspace is not counted (nothing is autotuned without the GPU), and real steps reach a fraction of the peak.

Targets: h100, h200, tpu-v5e:TOPOLOGY, tpu-v5p:TOPOLOGY, tpu-v6e:TOPOLOGY, cpu. Compiling for a GPU needs the CUDA
PJRT plugin and NVIDIA's compiler wheels, for a TPU libtpu: pip install -e '.[aot]'.
"""

import functools
import json
import pathlib
import sys
import time
import warnings

from absl import flags

from dapose_jax import errors
from dapose_jax.commands import cli

# The CUDA plugin only compiles here; jaxlib warns when its version differs (as it would not run it as a backend) on
# importing JAX, which the functions do (not this module: --help must not load JAX)
warnings.filterwarnings("ignore", message="JAX plugin jax_cuda12_plugin version", category=RuntimeWarning)

FLAGS = flags.FLAGS
MAX_BATCH_PER_DEVICE = 1024  # the search for the largest batch stops here


def define_flags():
  cli.define_config_flag()
  flags.DEFINE_multi_string("target", ["h100"], "What to compile for (repeatable): h100, h200, tpu-v5e:2x2, "
                            "tpu-v5p:2x2x1, tpu-v6e:2x2 (any topology of the generation) or cpu.")
  flags.DEFINE_integer("devices", 0, "Devices (GPUs, CPU devices) to shard the batch over; 0: one, or every chip of "
                       "a TPU topology.", lower_bound=0)
  flags.DEFINE_integer("batch_size", None, "Global train batch; default: each stage's config.batch_size.",
                       lower_bound=1)
  flags.DEFINE_integer("eval_batch_size", None, "Global eval batch; default: config.eval_batch_size.", lower_bound=1)
  flags.DEFINE_bool("max_batch", True, "Also find the largest global batch of each train step that fits in the "
                    "device's memory (a few more compilations each).")
  flags.DEFINE_list("programs", [], "Only these programs (e.g. pretrain/train,regda/train); default: all.")
  flags.DEFINE_integer("heaviest", 10, "Report the N instructions of each program that move the most bytes.",
                       lower_bound=0)
  flags.DEFINE_enum("reference", None, ["plain"], "Also compile the plain model at the same settings: a ResNet of "
                    "the config's depth in Flax's own layers with SimpleBaseline's head and the same parameter count, "
                    "trained by MSE and the config's source-only optimizer (dapose_jax/accelerators/reference.py), as "
                    "'plain/train'.")
  flags.DEFINE_string("out", None, "Write the results as JSON here (default: only the table).")


def analyse(program, target, devices, max_batch, heaviest, log):
  """{...} of one program compiled for ``target``: see the module's docstring."""
  from dapose_jax.accelerators import analysis

  start = time.perf_counter()
  lowered = program.lower(program.batch_size)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  step_flops = analysis.flops(lowered)
  step_bytes = analysis.bytes_accessed(compiled, target.platform)
  hlo = compiled.as_text()
  result = {"batch_size": program.batch_size, "devices": devices, "compile_s": round(seconds, 1),
            "flops_per_step": step_flops, "bytes_accessed_per_step_per_device": step_bytes,
            "bytes_accessed_per_image": step_bytes * devices / program.batch_size,
            "memory_per_device": analysis.memory(compiled), "rematerialised": analysis.rematerialised(hlo),
            "census": analysis.census(hlo), "traffic_by_kind": analysis.traffic(hlo),
            "roofline": analysis.roofline(step_flops, step_bytes, devices, target.chip, program.dtype, program.batch_size)}
  if heaviest:
    result["heaviest"] = analysis.heaviest(hlo, heaviest)
  if max_batch and target.chip and program.name.endswith("/train"):
    usable = target.chip.memory_bytes * target.chip.usable_memory
    fitting = lambda total, recomputes: float("inf") if recomputes else total  # recomputing does not count
    known = {program.batch_size: fitting(result["memory_per_device"]["total"], result["rematerialised"])}

    def memory_at(batch):
      if batch not in known:
        start = time.perf_counter()
        compiled = program.lower(batch).compile()
        total, recomputes = analysis.memory(compiled)["total"], analysis.rematerialised(compiled.as_text())
        known[batch] = fitting(total, recomputes)
        log(f"  {program.name} at batch {batch}: {total / 2**30:.2f} GiB per device of {usable / 2**30:.1f} usable"
            f"{', XLA recomputes to fit' if recomputes else ''} ({time.perf_counter() - start:.0f} s)")
      return known[batch]

    limit = MAX_BATCH_PER_DEVICE * devices
    best = analysis.largest_batch(memory_at, devices, usable, program.batch_size, limit)
    result["largest_batch"] = {"batch_size": best, "at_the_limit": best == limit, "usable_bytes_per_device": usable,
                               "compilations": len(known)}
  return result


def table(results):
  """Markdown table of ``results`` ({target: {program: result}})."""
  from dapose_jax.accelerators import analysis

  rows = ["| target | program | batch | GFLOP/step | GB/step/device | MB/image | args MiB | temps MiB | largest batch "
          "| bound ms (by) | img/s at most | cuDNN conv f/bi/bf | GEMM lib/triton | layout | collectives |",
          "|" + "---|" * 15]
  for target, programs in results.items():
    for name, r in programs.items():
      c, m, roof = r["census"], r["memory_per_device"], r["roofline"]
      fit = r.get("largest_batch", {})
      best = (f"{'≥' if fit['at_the_limit'] else ''}{fit['batch_size']}" if fit.get("batch_size") else
              "none" if fit else "—")
      bound = f"{roof['step_s_at_least'] * 1e3:.2f} ({roof['bound_by']})" if roof else "—"
      rate = f"{roof['images_per_s_at_most']:.0f}" if roof else "—"
      collectives = sum(v for k, v in c.items() if k in analysis.COLLECTIVES)
      rows.append(f"| {target} | {name} | {r['batch_size']} | {r['flops_per_step'] / 1e9:.1f} | "
                  f"{r['bytes_accessed_per_step_per_device'] / 1e9:.2f} | {r['bytes_accessed_per_image'] / 1e6:.0f} | "
                  f"{m['arguments'] / 2**20:.0f} | {m['temporaries'] / 2**20:.0f} | {best} | {bound} | {rate} | "
                  f"{c.get('cudnn_conv_forward', 0)}/{c.get('cudnn_conv_backward_input', 0)}/"
                  f"{c.get('cudnn_conv_backward_filter', 0)} | {c.get('library_gemm', 0)}/{c.get('triton_gemm', 0)} | "
                  f"{c.get('copy', 0) + c.get('transpose', 0) + c.get('layout_fusions', 0)} | {collectives} |")
  return "\n".join(rows)


def compile_all(config, target_names, devices=0, batch_size=None, eval_batch_size=None, max_batch=True,
                only=(), heaviest=10, reference=None, log=print):
  """{target: {program: result}} of every program of a run of ``config`` (``only`` those named; with ``reference``
  "plain" also the plain model's train step) compiled for each target of ``target_names``."""
  from dapose_jax import parallel
  from dapose_jax.accelerators import programs as run_programs, reference as plain, targets

  chosen = [targets.get(name) for name in target_names]  # every name checked before anything compiles
  results = {}
  for target in chosen:
    mesh_devices = target.devices(devices)
    mesh = parallel.make_mesh(mesh_devices)
    n = len(mesh_devices)
    listed = run_programs.of_run(config, mesh, batch_size, eval_batch_size)
    if reference == "plain":
      listed.append(run_programs.Program("plain/train", batch_size or config.batch_size, config.model.dtype,
                                         functools.partial(plain.train_step, config, mesh)))
    unknown = sorted(set(only) - {p.name for p in listed})
    if unknown:
      raise errors.ConfigError(f"--programs: {unknown} are not programs of this run; it has "
                               f"{[p.name for p in listed]}")
    results[target.name] = {}
    for program in listed:
      if only and program.name not in only:
        continue
      if program.batch_size % n:
        raise errors.ConfigError(f"{program.name}: batch {program.batch_size} is not divisible by the {n} devices of "
                                 f"{target.name}; choose a multiple (--batch_size, --eval_batch_size)")
      log(f"compiling {program.name} (batch {program.batch_size}) for {target.name} on {n} device(s) ...")
      results[target.name][program.name] = analyse(program, target, n, max_batch, heaviest, log)
  return results


def main(argv):
  cli.expect_no_arguments(argv)
  import os

  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # libtpu: no metadata server to ask on this machine
  import jax

  jax.config.update("jax_platforms", "cpu")  # the host runs nothing on a device; the targets are compiled for
  out = pathlib.Path(FLAGS.out).expanduser() if FLAGS.out else None
  if out and (out.is_dir() or not out.parent.is_dir()):
    raise errors.ConfigError(f"--out={FLAGS.out}: expected a file in an existing folder")
  cli.log_progress_to_stderr()
  results = compile_all(FLAGS.config, FLAGS.target, FLAGS.devices, FLAGS.batch_size, FLAGS.eval_batch_size,
                        FLAGS.max_batch, FLAGS.programs, FLAGS.heaviest, FLAGS.reference, log=cli.log.info)
  if out:
    out.write_text(json.dumps({"config": FLAGS.config.to_dict(), "versions": versions(), "results": results},
                              indent=1, default=str))
  print(table(results))


def versions():
  import jax
  import jaxlib

  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
