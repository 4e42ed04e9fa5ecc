"""The devices a program can be compiled for from this machine, with their datasheet peaks.

``get(name)`` -> ``Target``; names: ``h100``, ``h200`` (CUDA, any GPU count), ``tpu-v5e:2x2``, ``tpu-v5p:2x2x1``,
``tpu-v6e:2x2`` (any topology name of that generation) and ``cpu`` (this host's devices). No accelerator is needed:
XLA compiles for a GPU from a GPU target description (``gpu_target_config``) through the CUDA PJRT plugin, and for
a TPU from a topology name through libtpu (``pip install -e '.[aot]'`` installs both).
"""

import dataclasses
import importlib.util
import os
from typing import Optional

from dapose_jax import errors

AOT_EXTRA = "pip install -e '.[aot]'"

# The device facts of XLA's GPU target descriptions (openxla/xla, xla/backends/gpu/target_config/specs/
# h100_sxm.txtpb and h200.txtpb): what XLA's GPU compiler reads to choose kernels (core count, shared memory,
# bandwidth, L2, clock, memory size, compute capability) and the cuDNN / CUDA versions it compiles against.
GPU_FACTS = {
    "h100": dict(name="NVIDIA H100 80GB HBM3", core_count=132, memory_bandwidth=3352320000000,
                 device_memory_size=84942979072),
    "h200": dict(name="NVIDIA H200 141GB HBM3e", core_count=132, memory_bandwidth=4800000000000,
                 device_memory_size=151397597184),
}
HOPPER = dict(threads_per_block_limit=1024, threads_per_warp=32, shared_memory_per_block=49152,
              shared_memory_per_core=233472, threads_per_core_limit=2048, fpus_per_core=128,
              block_dim_limit_x=2147483647, block_dim_limit_y=65535, block_dim_limit_z=65535, l2_cache_size=52428800,
              clock_rate_ghz=1.98, shared_memory_per_block_optin=232448, registers_per_core_limit=65536,
              registers_per_block_limit=65536)
CUDNN_VERSION, CUDA_RUNTIME_VERSION = (9, 10, 0), (12, 8, 0)


def gpu_target_config(name):
  """XLA's GpuTargetConfigProto, in text form, of the GPU ``name`` (a key of GPU_FACTS)."""
  facts = {**HOPPER, **GPU_FACTS[name]}
  fields = "\n".join(f"  {key}: {value}" for key, value in facts.items() if key != "name")
  version = lambda v: f"{{ major: {v[0]} minor: {v[1]} patch: {v[2]} }}"
  return (f"gpu_device_info {{\n{fields}\n  cuda_compute_capability {{ major: 9 }}\n}}\n"
          f'platform_name: "CUDA"\ndnn_version_info {version(CUDNN_VERSION)}\n'
          f"runtime_version {version(CUDA_RUNTIME_VERSION)}\n"
          f'device_description_str: "{facts["name"]}"\n')


@dataclasses.dataclass(frozen=True)
class Chip:
  """Datasheet numbers of one device: dense peak FLOP/s by compute dtype, memory bytes and bandwidth (bytes/s)."""
  description: str
  peak_flops: dict
  memory_bytes: int
  bandwidth: float
  source: str
  usable_memory: float = 1.0  # the share of the memory a JAX program may use by default


# float32 on the GPUs counts as TF32: XLA and cuDNN use TF32 for float32 convolutions and matrix products by
# default. On TPUs float32 products run as bfloat16 passes at default precision: the bfloat16 peak bounds them.
CHIPS = {
    "h100": Chip("NVIDIA H100 SXM5 80 GB", {"bfloat16": 989.4e12, "float32": 494.7e12},
                 GPU_FACTS["h100"]["device_memory_size"], 3.35e12,
                 "NVIDIA H100 Tensor Core GPU datasheet (dense, without sparsity)", usable_memory=0.75),
    "h200": Chip("NVIDIA H200 SXM 141 GB", {"bfloat16": 989.4e12, "float32": 494.7e12},
                 GPU_FACTS["h200"]["device_memory_size"], 4.8e12,
                 "NVIDIA H200 Tensor Core GPU datasheet (dense, without sparsity)", usable_memory=0.75),
    "tpu-v5e": Chip("Google Cloud TPU v5e", {"bfloat16": 197e12, "float32": 197e12}, 16 * 10**9, 819e9,
                    "cloud.google.com/tpu/docs/v5e (per chip)"),
    "tpu-v5p": Chip("Google Cloud TPU v5p", {"bfloat16": 459e12, "float32": 459e12}, 95 * 10**9, 2765e9,
                    "cloud.google.com/tpu/docs/v5p (per chip)"),
    "tpu-v6e": Chip("Google Cloud TPU v6e (Trillium)", {"bfloat16": 918e12, "float32": 918e12}, 32 * 10**9, 1640e9,
                    "cloud.google.com/tpu/docs/v6e (per chip)"),
}
# How each chip names itself in jax.Device.device_kind.
DEVICE_KINDS = (("H200", "h200"), ("H100", "h100"), ("TPU v5 lite", "tpu-v5e"), ("TPU v5e", "tpu-v5e"),
                ("TPU v5p", "tpu-v5p"), ("TPU v5", "tpu-v5p"), ("TPU v6", "tpu-v6e"))


def chip_of(device_kind):
  """The ``Chip`` of a real device's ``device_kind`` (e.g. "NVIDIA H100 80GB HBM3"), None when not listed; an H100
  PCIe has other peaks than the SXM's of CHIPS."""
  if "PCIe" in device_kind:
    return None
  return next((CHIPS[name] for kind, name in DEVICE_KINDS if kind in device_kind), None)


# libtpu's topology names of each generation (v5p's is "v5").
TPU_TOPOLOGY_PREFIX = {"tpu-v5e": "v5e", "tpu-v5p": "v5", "tpu-v6e": "v6e"}


@dataclasses.dataclass(frozen=True)
class Target:
  """A device kind and count to compile for: ``name`` as given, ``platform`` as XLA names it (cuda, tpu, cpu),
  ``chip`` its datasheet (None for the host CPU)."""
  name: str
  platform: str
  chip: Optional[Chip]
  topology: str = ""  # libtpu's topology name (TPU)

  def devices(self, count):
    """``count`` devices of this target (for a TPU: every chip of its topology; ``count`` must be 0 or that)."""
    import jax

    if self.platform == "cpu":
      available = jax.devices("cpu")
      if count > len(available):
        raise errors.ConfigError(f"--devices={count}: this host has {len(available)} CPU devices (more: "
                                 f"XLA_FLAGS=--xla_force_host_platform_device_count={count})")
      return available[:count or 1]
    from jax.experimental import topologies

    if self.platform == "tpu":
      os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
      topology = _with_extra_hint(lambda: topologies.get_topology_desc(topology_name=self.topology, platform="tpu"),
                                  "libtpu")
      if count and count != len(topology.devices):
        raise errors.ConfigError(f"--devices={count}: the topology {self.name} has {len(topology.devices)} chips; "
                                 "name another topology (e.g. tpu-v5e:4x4) or leave --devices out")
      return topology.devices
    count = count or 1
    per_host = min(count, 8)
    if count % per_host:
      raise errors.ConfigError(f"--devices={count}: more than 8 GPUs come as hosts of 8; choose a multiple of 8")
    topology = _with_extra_hint(lambda: topologies.get_topology_desc(
        platform="cuda", topology=f"1x{count // per_host}x{per_host}", target_config=gpu_target_config(self.name)),
        "the CUDA PJRT plugin")
    return topology.devices


PLUGINS = {"cuda": "jax_plugins.xla_cuda12", "tpu": "libtpu"}  # the module that compiles for each platform


def plugin_installed(platform):
  """Whether the compiler of ``platform`` (cuda, tpu; the host CPU's is JAX's own) is installed."""
  try:
    return platform not in PLUGINS or importlib.util.find_spec(PLUGINS[platform]) is not None
  except ModuleNotFoundError:
    return False


def _with_extra_hint(make, what):
  try:
    return make()
  except Exception as error:  # noqa: BLE001  a missing plugin surfaces as several error types
    raise errors.ConfigError(f"cannot compile for this target without {what} ({' '.join(str(error).split())[:200]}): "
                             f"{AOT_EXTRA}") from None


NAMES = ("h100", "h200", "tpu-v5e:2x2", "tpu-v5p:2x2x1", "tpu-v6e:2x2", "cpu")


def get(name):
  """The ``Target`` of ``name`` (see NAMES; a TPU generation takes any of its topology names)."""
  if name == "cpu":
    return Target("cpu", "cpu", None)
  if name in GPU_FACTS:
    return Target(name, "cuda", CHIPS[name])
  generation, _, topology = name.partition(":")
  if generation in TPU_TOPOLOGY_PREFIX and topology:
    return Target(name, "tpu", CHIPS[generation], f"{TPU_TOPOLOGY_PREFIX[generation]}:{topology}")
  raise errors.ConfigError(f"--target={name!r} is not a target; choose one of {', '.join(NAMES)} (a TPU with its "
                           "topology, e.g. tpu-v5e:4x4)")
