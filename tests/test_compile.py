"""The compile command and its analysis: programs of a run compiled for a target, FLOPs, bytes, memory, census,
largest batch, roofline; backend choices that follow the platform compiled for."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from dapose_jax import methods, parallel
from dapose_jax.accelerators import analysis, programs, reference, targets
from dapose_jax.commands import compile as compile_command
from dapose_jax.models import pose, resnet
from tests.test_train import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def conv_gradient(x_shape, k_shape):
  return jax.jit(jax.grad(lambda x, k: (resnet.conv2d(x, k, 1, 1) ** 2).sum(), argnums=(0, 1))), (
      jax.ShapeDtypeStruct(x_shape, jnp.float32), jax.ShapeDtypeStruct(k_shape, jnp.float32))


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_a_program_lowered_for_an_accelerator_from_the_cpu_takes_no_cpu_only_kernel_gradient(platform):
  gradient, args = conv_gradient((2, 8, 8, 128), (3, 3, 128, 8))
  on_cpu = jax.export.export(gradient, platforms=("cpu",))(*args).mlir_module()
  elsewhere = jax.export.export(gradient, platforms=(platform,))(*args).mlir_module()
  # the CPU takes the kernel gradient as one matrix product per tap (9 for a 3x3 kernel); the accelerator as a
  # convolution: forward, input gradient and kernel gradient
  assert (on_cpu.count("stablehlo.convolution"), on_cpu.count("stablehlo.dot_general")) == (2, 9)
  assert (elsewhere.count("stablehlo.convolution"), elsewhere.count("stablehlo.dot_general")) == (3, 0)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_an_accelerator_gets_one_by_one_and_transposed_convolutions_where_the_cpu_gets_matrix_products_and_phases(
    platform):
  args = (jax.ShapeDtypeStruct((2, 8, 8, 16), jnp.float32), jax.ShapeDtypeStruct((1, 1, 16, 8), jnp.float32))
  deconv_args = (args[0], jax.ShapeDtypeStruct((4, 4, 16, 8), jnp.float32))
  lowered = lambda f, args, platform: jax.export.export(jax.jit(f), platforms=(platform,))(*args).mlir_module()
  pointwise = lambda x, k: resnet.conv2d(x, k, 2)
  assert (lowered(pointwise, args, "cpu").count("stablehlo.dot_general"),
          lowered(pointwise, args, "cpu").count("stablehlo.convolution")) == (1, 0)
  assert (lowered(pointwise, args, platform).count("stablehlo.dot_general"),
          lowered(pointwise, args, platform).count("stablehlo.convolution")) == (0, 1)
  assert lowered(pose.conv_transpose_4x4s2, deconv_args, "cpu").count("stablehlo.convolution") == 4  # the phases
  transposed = lowered(pose.conv_transpose_4x4s2, deconv_args, platform)
  assert transposed.count("stablehlo.convolution") == 1 and "lhs_dilate = [2, 2]" in transposed


def test_flops_bytes_and_memory_of_a_convolution_are_its_arithmetic():
  n, h, w, c_in, c_out = 4, 16, 16, 8, 32
  x = jax.ShapeDtypeStruct((n, h, w, c_in), jnp.float32)
  k = jax.ShapeDtypeStruct((3, 3, c_in, c_out), jnp.float32)
  lowered = jax.jit(lambda x, k: resnet.conv2d(x, k, 1, 1)).lower(x, k)
  compiled = lowered.compile()
  # one multiply-add per input channel, output channel and kernel tap that lands inside the image (XLA skips the
  # zero padding): along a side of 16, the 2 border outputs see 2 taps and the 14 others 3
  taps = (2 * 2 + 14 * 3) ** 2
  assert analysis.flops(lowered) == 2 * n * c_in * c_out * taps
  inputs, output = 4 * (n * h * w * c_in + 9 * c_in * c_out), 4 * n * h * w * c_out
  assert analysis.memory(compiled)["arguments"] == inputs and analysis.memory(compiled)["outputs"] == output
  assert analysis.bytes_accessed(compiled, "cpu") >= inputs + output


def test_the_census_counts_library_calls_fusions_layout_changes_and_collectives():
  hlo = """HloModule m

%fused_t (p: f32[2,3]) -> f32[3,2] {
  %p = f32[2,3]{1,0} parameter(0)
  ROOT %t = f32[3,2]{1,0} transpose(%p), dimensions={1,0}
}

ENTRY %main (a: f32[2,3], k: f32[3,3,3,3]) -> f32[3,2] {
  %a = f32[2,3]{1,0} parameter(0)
  %k = f32[3,3,3,3]{3,2,1,0} parameter(1)
  %c = (f32[1,4,4,3]{3,2,1,0}, u8[0]{0}) custom-call(%k, %k), custom_call_target="__cudnn$convBackwardFilter"
  %d = (f32[1,4,4,3]{3,2,1,0}, u8[0]{0}) custom-call(%k, %k), custom_call_target="__cudnn$convForward"
  %g = f32[2,3]{1,0} fusion(%a), kind=kCustom, calls=%fused_t, backend_config={"fusion_backend_config":{"kind":"__triton_gemm"}}
  %r = f32[2,3]{1,0} all-reduce(%g), replica_groups={}, to_apply=%fused_t
  ROOT %f = f32[3,2]{1,0} fusion(%r), kind=kLoop, calls=%fused_t
}
"""
  assert analysis.census(hlo) == {"all-reduce": 1, "cudnn_conv_backward_filter": 1, "cudnn_conv_forward": 1,
                                  "fusion_loop": 1, "layout_fusions": 2, "triton_gemm": 1}
  heaviest = analysis.heaviest(hlo, top=2)
  assert [row["opcode"] for row in heaviest] == ["__cudnn$convBackwardFilter", "__cudnn$convForward"]
  assert heaviest[0]["bytes"] == 4 * (48 + 2 * 81)  # its result and its two operands
  assert analysis.traffic(hlo) == {"cudnn_conv": 2 * 4 * (48 + 2 * 81), "layout": 4 * 6 * 2, "gemm": 4 * 6 * 2,
                                   "collective": 4 * 6 * 2}


@pytest.mark.parametrize("devices", [1, 2, 8])
@pytest.mark.parametrize("start", [1, 8, 64])
def test_the_largest_batch_is_the_largest_multiple_of_the_devices_that_fits(devices, start):
  for fixed, per_image, usable in ((100, 3, 1000), (0, 7, 50), (5, 1, 10**6), (500, 1, 100)):
    calls = []

    def memory_at(batch):
      calls.append(batch)
      return fixed + per_image * batch + batch * batch // 4000

    want = max([b for b in range(devices, 512 * devices + 1, devices)
                if fixed + per_image * b + b * b // 4000 <= usable], default=None)
    assert analysis.largest_batch(memory_at, devices, usable, start, limit=512 * devices) == want
    assert all(b % devices == 0 for b in calls) and len(calls) <= 12


def test_rematerialisation_is_read_from_the_names_xla_gives_the_instructions_it_recomputes():
  assert analysis.rematerialised("  %fusion.12.remat = f32[8,64]{1,0} fusion(%p), kind=kLoop, calls=%f\n")
  assert analysis.rematerialised("  %bitcast.remat.3 = f32[8,64]{1,0} bitcast(%p)\n")
  assert not analysis.rematerialised("  %fusion.12 = f32[8,64]{1,0} fusion(%p), kind=kLoop, calls=%remat_free\n")


def test_the_roofline_bound_is_the_slower_of_compute_and_memory():
  chip = targets.CHIPS["h100"]
  bound = analysis.roofline(989.4e12, 3.35e12 * 0.004, 1, chip, "bfloat16", 32)
  assert bound["compute_s"] == pytest.approx(1.0) and bound["memory_s"] == pytest.approx(0.004)
  assert bound["bound_by"] == "compute" and bound["images_per_s_at_most"] == pytest.approx(32.0)
  split = analysis.roofline(8 * 494.7e12, 2 * 3.35e12, 8, chip, "float32", 64)
  assert split["bound_by"] == "memory" and split["step_s_at_least"] == pytest.approx(2.0)
  assert split["compute_s"] == pytest.approx(1.0)  # the FLOPs of a step are shared by its 8 devices
  assert analysis.roofline(1.0, 1.0, 1, None, "float32", 1) is None


def test_the_gpu_target_descriptions_carry_the_datasheet_facts():
  text = targets.gpu_target_config("h200")
  assert "memory_bandwidth: 4800000000000" in text and "device_memory_size: 151397597184" in text
  assert 'platform_name: "CUDA"' in text and "cuda_compute_capability { major: 9 }" in text
  assert targets.get("tpu-v5p:2x2x1").topology == "v5:2x2x1" and targets.get("h100").platform == "cuda"
  with pytest.raises(Exception, match="tpu-v5e:4x4"):
    targets.get("a100")


def test_a_run_lists_each_stage_train_step_and_the_eval_forward_of_those_that_evaluate():
  mesh = parallel.make_mesh(jax.devices()[:2])
  config = tiny_config()
  config.method = "regda"
  listed = programs.of_run(config, mesh, batch_size=4)
  assert [p.name for p in listed] == ["pretrain/train", "pretrain/eval", "regda/train", "regda/eval"]
  assert [p.batch_size for p in listed] == [4, config.eval_batch_size, 4, config.eval_batch_size]
  lowered = listed[2].lower(6)
  source_batch = lowered.args_info[0][1]
  assert [a.shape for a in jax.tree.leaves(source_batch)] == [(6, 32, 32, 3), (6, 16, 2), (6, 16)]


def test_the_compile_command_writes_the_json_and_the_table_for_the_host(tmp_path):
  out = tmp_path / "compile.json"
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "compile", "--config", "configs/demo.py:smoke",
                         "--config.model.backbone=resnet10", "--config.image_size=32", "--config.heatmap_size=8",
                         "--target", "cpu", "--devices", "2", "--batch_size", "4", "--eval_batch_size", "4",
                         "--nomax_batch", "--heaviest", "3", "--reference", "plain", "--out", str(out)],
                        cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  results = json.loads(out.read_text())["results"]["cpu"]
  assert list(results) == ["source_only/train", "source_only/eval", "plain/train"]
  train = results["source_only/train"]
  assert train["devices"] == 2 and train["batch_size"] == 4 and train["roofline"] is None
  assert train["flops_per_step"] > 2 * results["source_only/eval"]["flops_per_step"]  # forward + backward
  assert train["census"].get("all-reduce", 0) >= 1  # the gradients of two devices are summed
  assert len(train["heaviest"]) == 3 and "| cpu | source_only/train | 4 |" in done.stdout


def test_the_plain_reference_model_has_our_parameter_count():
  config = tiny_config()
  config.model.backbone = "resnet18"
  assert reference.num_params(config) == 15_376_464  # the source-only PoseResNet-18's (README: Benchmark)


def test_an_unknown_target_is_one_line_before_anything_compiles():
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "compile", "--config", "configs/demo.py:smoke",
                         "--target", "v100"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "h100" in done.stderr


# A separate check (docs/performance.md): it needs the aot extra (pip install -e '.[aot]'), which CI does not install.
@pytest.mark.skipif(not targets.plugin_installed("cuda"),
                    reason="the CUDA PJRT plugin is not installed (pip install -e '.[aot]')")
def test_the_h100_train_step_runs_every_convolution_gradient_in_cudnn():
  results = compile_command.compile_all(tiny_config(), ["h100"], batch_size=4, max_batch=False,
                                        only=["source_only/train"], heaviest=0, log=lambda _: None)
  census = results["h100"]["source_only/train"]["census"]
  state = programs.abstract_state(tiny_config(), methods.get("source_only"), parallel.make_mesh(jax.devices()[:1]))
  kernels = [x for x in jax.tree.leaves(state.params) if x.ndim == 4]
  # every convolution is three cuDNN calls (forward, input gradient, kernel gradient; XLA runs some gradients as
  # forward calls on rearranged operands), 1 x 1 and transposed ones included, less the input gradient of the first
  # (the image needs none); the CPU's path would make matrix products of the 1 x 1 ones, of each tap of those with
  # >= 128 input channels and of each phase of the transposed ones: no matrix product is left
  calls = sum(census.get(f"cudnn_conv_{kind}", 0) for kind in ("forward", "backward_input", "backward_filter"))
  assert calls == 3 * len(kernels) - 1 == 47
  assert census.get("triton_gemm", 0) + census.get("library_gemm", 0) == 0


@pytest.mark.skipif(not targets.plugin_installed("tpu"), reason="libtpu is not installed (pip install -e '.[aot]')")
def test_a_tpu_train_step_holds_the_replicated_state_and_a_quarter_of_the_batches_per_chip():
  config = tiny_config()
  results = compile_command.compile_all(config, ["tpu-v5e:2x2"], batch_size=8, max_batch=False,
                                        only=["source_only/train"], heaviest=0, log=lambda _: None)
  result = results["tpu-v5e:2x2"]["source_only/train"]
  state = programs.abstract_state(config, methods.get("source_only"), parallel.make_mesh(jax.devices()[:1]))
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  batch_bytes = 2 * 8 * (32 * 32 * 3 + 16 * 3 * 4)  # source and target: uint8 images, keypoints and visibilities
  assert result["devices"] == 4 and result["census"].get("all-reduce", 0) >= 1
  # TPU layouts pad small dimensions to their tiles, a few percent here
  assert state_bytes + batch_bytes / 4 <= result["memory_per_device"]["arguments"] <= 1.05 * (state_bytes + batch_bytes)
  assert result["roofline"]["bound_by"] in ("compute", "memory")


@pytest.mark.skipif(targets.plugin_installed("cuda"), reason="the CUDA PJRT plugin is installed")
def test_a_gpu_target_without_the_cuda_plugin_says_how_to_install_it():
  done = subprocess.run([sys.executable, "-m", "dapose_jax", "compile", "--config", "configs/demo.py:smoke",
                         "--target", "h100"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
  assert "pip install -e '.[aot]'" in done.stderr
