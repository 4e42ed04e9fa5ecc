"""What a compiled program costs on its target: FLOPs, bytes accessed, memory, a census of its operations, the
largest batch that fits and a roofline bound on its step time.

FLOPs are XLA's HloCostAnalysis of the unoptimised module (the whole program over all devices): in the optimised
GPU module cuDNN convolutions are custom calls that count no FLOPs. Bytes accessed are per device, of the optimised
module (what the fusions, kernels and library calls read and write). Both use XLA's cost analysis through a
private JAX binding (``jax._src.lib._jax.hlo_module_cost_analysis``; tested against jax 0.12).
"""

import collections
import dataclasses
import functools
import re

import jax

from jax._src.lib import _jax

# operand and result sizes in an HLO instruction's text
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1}
CUDNN_CONVOLUTIONS = {"__cudnn$convForward": "forward", "__cudnn$convBiasActivationForward": "forward",
                      "__cudnn$convBackwardInput": "backward_input", "__cudnn$convBackwardFilter": "backward_filter"}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def _cost(module):
  return _jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module)


def flops(lowered):
  """FLOPs of one call of the whole program (all devices), from its unoptimised module."""
  return float(_cost(lowered._lowering.hlo().as_hlo_module())["flops"])


def bytes_accessed(compiled, platform):
  """Bytes one device reads and writes in one call of the optimised program (``platform``: cuda or gpu, tpu, cpu).
  On a GPU, XLA's cost analysis counts next to nothing for library calls (cuDNN convolutions, cuBLAS GEMMs): their
  operands and results are added (for ResNet-101 steps the sum then equals the operand + result sizes of every
  instruction, ``traffic``, to 0.1 %)."""
  if platform in ("cuda", "gpu"):
    library = sum(i.bytes for i in _instructions(compiled.as_text())
                  if i.opcode == "custom-call" and i.kind in ("cudnn_conv", "gemm"))
    return float(sum(_cost(m)["bytes accessed"] for m in compiled.runtime_executable().hlo_modules()) + library)
  costs = compiled.cost_analysis()
  costs = costs[0] if isinstance(costs, (list, tuple)) else costs
  return float(costs["bytes accessed"])


def memory(compiled):
  """Bytes per device by XLA's buffer assignment: arguments, outputs, donated aliases, temporaries and their total
  (arguments + outputs - aliases + temporaries)."""
  m = compiled.memory_analysis()
  out = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes, "aliases": m.alias_size_in_bytes,
         "temporaries": m.temp_size_in_bytes}
  out["total"] = out["arguments"] + out["outputs"] - out["aliases"] + out["temporaries"]
  return out


def _computations(hlo_text):
  """{name: [instruction lines]} of an HLO module's text."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY )?%?([\w.-]+) .*\{\s*$", line)
    if header:
      current = header.group(1)
      computations[current] = []
    elif line.startswith("}"):
      current = None
    elif current is not None and " = " in line:
      computations[current].append(line.strip())
  return computations


_INSTRUCTION = re.compile(r"^(?:ROOT )?%?([\w.-]+) = (\(.*?\)|\S+) ([\w-]+)\((.*)$")
_CALLED = re.compile(r"calls=%?([\w.-]+)")
_SKIPPED = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")  # no data moved


@dataclasses.dataclass(frozen=True)
class Instruction:
  """One instruction of a compiled program outside fusion bodies: ``opcode``, the custom call's ``target``, a
  fusion's ``fusion_kind`` (kLoop, kInput, ...) and ``backend`` kind (e.g. a Triton GEMM's), the opcodes of a
  fusion's ``body`` and its ``root``, the ``bytes`` of its operands and result as their shapes say, its traffic
  ``kind`` (``_kind``) and ``what`` it computes (the op_name JAX gave it, or its fusion's)."""
  name: str
  opcode: str
  target: str
  fusion_kind: str
  backend: str
  body: tuple
  root: str
  bytes: int
  kind: str
  what: str


@functools.lru_cache(maxsize=2)  # the compile command reads one program's text several ways
def _instructions(hlo_text):
  """[Instruction] of every computation of the module that is not a fusion body."""
  computations = _computations(hlo_text)
  fused = {c for lines in computations.values() for line in lines if " fusion(" in line for c in _CALLED.findall(line)}
  found = []
  for name, lines in computations.items():
    if name in fused:
      continue
    sizes = {}
    for line in lines:
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      result_name, result, opcode, operands = match.groups()
      sizes[result_name] = _shape_bytes(result)
      if opcode in _SKIPPED:
        continue
      called = _CALLED.findall(line)
      body_lines = computations.get(called[0], []) if called else []
      body = tuple(m.group(3) for m in map(_INSTRUCTION.match, body_lines) if m)
      root = next((_INSTRUCTION.match(b).group(3) for b in body_lines if b.startswith("ROOT ")), "")
      target = (re.search(r'custom_call_target="([^"]+)"', line) or [None, ""])[1]
      backend = (re.search(r'"kind":"(__[\w]+)"', line) or [None, ""])[1]
      fusion_kind = (re.search(r"kind=(k\w+)", line) or [None, ""])[1]
      moved = sizes[result_name] + sum(sizes.get(n, 0) for n in re.findall(r"%([\w.-]+)", operands.split("),")[0]))
      what = re.search(r'op_name="([^"]+)"', line) or next(
          (m for m in (re.search(r'op_name="([^"]+)"', b) for b in reversed(body_lines)) if m), None)
      found.append(Instruction(result_name, opcode, target, fusion_kind, backend, body, root, moved,
                               _kind(opcode, target, fusion_kind, backend, root), what.group(1)[-120:] if what else ""))
  return found


def _is_gemm(target, backend):
  return any(word in target.lower() for word in ("gemm", "matmul")) or "gemm" in backend


def _kind(opcode, target, fusion_kind, backend, root):
  """The traffic category of one instruction: cudnn_conv, gemm, layout (copies, transposes and fusions ending in
  one), reduction (XLA's input fusions: reductions such as BatchNorm's statistics and gradients), elementwise (loop
  fusions), collective or other."""
  if target in CUDNN_CONVOLUTIONS:
    return "cudnn_conv"
  if _is_gemm(target, backend):
    return "gemm"
  if opcode in ("copy", "transpose") or root in ("copy", "transpose"):
    return "layout"
  if opcode == "fusion":
    return {"kInput": "reduction", "kLoop": "elementwise"}.get(fusion_kind, "other_fusion")
  if opcode.removesuffix("-start") in COLLECTIVES:
    return "collective"
  return "other"


def census(hlo_text):
  """Counts of what a compiled program runs, outside fusion bodies: cuDNN convolutions by kind, library GEMMs
  (cuBLAS) and Triton GEMM fusions, other fusions by kind, XLA convolutions and dots (CPU, TPU; unfused, and fusions
  holding one), unfused copies and transposes, fusions whose result is a copy or transpose (layout changes), and
  collectives."""
  counts = collections.Counter()
  for i in _instructions(hlo_text):
    if i.opcode == "custom-call":
      if i.target in CUDNN_CONVOLUTIONS:
        counts[f"cudnn_conv_{CUDNN_CONVOLUTIONS[i.target]}"] += 1
      elif _is_gemm(i.target, ""):
        counts["library_gemm"] += 1
      else:
        counts[f"custom_call:{i.target}"] += 1
    elif i.opcode == "fusion":
      if _is_gemm("", i.backend):
        counts["triton_gemm"] += 1
      else:
        counts[f"fusion_{i.backend.strip('_') if i.backend else i.fusion_kind[1:].lower()}"] += 1
      if i.root in ("copy", "transpose"):
        counts["layout_fusions"] += 1
      for opcode in ("convolution", "dot"):  # XLA:TPU and XLA:CPU fuse them
        if opcode in i.body:
          counts[f"fusions_with_{opcode}"] += 1
    elif i.opcode in ("convolution", "dot", "copy", "transpose"):
      counts[i.opcode] += 1
    elif i.opcode.removesuffix("-start") in COLLECTIVES:
      counts[i.opcode.removesuffix("-start")] += 1
  return dict(sorted(counts.items()))


def _shape_bytes(text):
  return sum(_DTYPE_BYTES[dtype] * _elements(dims) for dtype, dims in re.findall(r"\b(\w+)\[([\d,]*)\]", text)
             if dtype in _DTYPE_BYTES)


def _elements(dims):
  n = 1
  for d in filter(None, dims.split(",")):
    n *= int(d)
  return n


def heaviest(hlo_text, top=15):
  """[{name, opcode, bytes, kind, what}] of the ``top`` instructions outside fusion bodies that read and write the
  most bytes (operands + result, as their shapes say): where the memory traffic of a memory-bound step goes."""
  rows = [{"name": i.name, "opcode": i.target or i.opcode, "bytes": i.bytes, "kind": i.kind, "what": i.what}
          for i in _instructions(hlo_text)]
  return sorted(rows, key=lambda r: -r["bytes"])[:top]


def traffic(hlo_text):
  """{category: bytes} of the instructions' operand and result sizes (``heaviest``'s count, every instruction), by
  ``_kind``: where the bytes of a step go."""
  totals = collections.Counter()
  for i in _instructions(hlo_text):
    totals[i.kind] += i.bytes
  return dict(totals.most_common())


def roofline(step_flops, step_bytes_per_device, devices, chip, dtype, batch_size):
  """A lower bound on the step time, max(FLOPs per device / peak, bytes per device / bandwidth), and the upper bound
  on images per second it gives; None without a datasheet (the host CPU)."""
  if chip is None:
    return None
  compute_s = step_flops / devices / chip.peak_flops[dtype]
  memory_s = step_bytes_per_device / chip.bandwidth
  bound = max(compute_s, memory_s)
  return {"compute_s": compute_s, "memory_s": memory_s, "step_s_at_least": bound,
          "bound_by": "memory" if memory_s > compute_s else "compute", "images_per_s_at_most": batch_size / bound}


def rematerialised(hlo_text):
  """Whether XLA recomputed activations to keep the compiled program within the device's memory (its
  rematerialisation pass names the instructions it clones NAME.remat)."""
  return re.search(r"%[\w.-]*\.remat\b", hlo_text) is not None


def largest_batch(memory_at, devices, usable_bytes, start, limit):
  """The largest global batch, a multiple of ``devices`` up to ``limit``, whose program's memory per device,
  ``memory_at(batch)`` (a compilation; infinite where XLA had to recompute to make it fit), is within
  ``usable_bytes``; None when not even ``devices`` fits. Memory grows about linearly with the batch: the line
  through the compilations at ``start`` and twice that predicts the answer, steps that double away from the
  prediction find a batch that fits and one that does not, and bisection between them settles it."""
  known = {}
  top = max(1, limit // devices)

  def fits(units):  # batch = units * devices
    units = min(max(units, 1), top)
    if units not in known:
      known[units] = memory_at(units * devices)
    return known[units] <= usable_bytes

  first = min(max(1, start // devices), top)
  second = min(2 * first, top)
  if not fits(first):
    lo, hi = 0, first
  elif first == top:
    return top * devices
  elif not fits(second):
    lo, hi = first, second
  else:
    slope = (known[second] - known[first]) / (second - first)
    guess = top if slope <= 0 else min(top, max(second, int(first + (usable_bytes - known[first]) / slope)))
    step = max(1, guess // 32)
    if fits(guess):
      lo = guess
      while lo < top and fits(lo + step):
        lo, step = min(lo + step, top), 2 * step
      if lo == top:
        return top * devices
      hi = min(lo + step, top)
    else:
      hi = guess
      while hi - step > second and not fits(hi - step):
        hi, step = hi - step, 2 * step
      lo = max(hi - step, second)
  while hi - lo > 1:
    middle = (lo + hi) // 2
    lo, hi = (middle, hi) if fits(middle) else (lo, middle)
  return lo * devices or None
