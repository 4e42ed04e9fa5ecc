import ast
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from absl import flags
from ml_collections import config_flags

from dapose_jax.commands import cli


def parse_config(argv):
  flag_values = flags.FlagValues()
  argv = ["prog", *argv]
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def test_config_overrides_reach_nested_keys_and_variants():
  config = parse_config(["--config=configs/demo.py:smoke", "--config.seed=7",
                         "--config.model.backbone=resnet34", "--config.source_only.lr=0.01"])
  assert config.seed == 7 and config.model.backbone == "resnet34" and config.source_only.lr == 0.01
  assert config.image_size == 64  # the smoke variant


def test_unknown_config_key_is_named_in_the_error():
  with pytest.raises((flags.Error, KeyError), match="modle"):
    parse_config(["--config=configs/demo.py", "--config.modle.backbone=resnet50"])


def test_unknown_method_names_the_choices():
  from dapose_jax import methods
  with pytest.raises(ValueError, match="source_only"):
    methods.get("regdaa")


def test_command_line_rejects_bad_key_before_training(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "dapose_jax.main", "--config=configs/demo.py:smoke",
       f"--workdir={tmp_path}", "--config.no_such_key=1"], capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "no_such_key" in proc.stderr
  assert not (tmp_path / "config.json").exists()


TASKS = ["surreal_lsp", "surreal_h36m", "rhd_h3d", "freihand_rhd", "synanimal_tigdog", "synanimal_animalpose"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("variant", ["", "regda", "mean_teacher", "daml", "geometric"])
def test_task_configs_need_their_weight_files_and_real_data_and_stop_before_writing(task, variant, tmp_path):
  import importlib

  from dapose_jax import errors
  from dapose_jax.data.sources import MissingDatasetError
  from dapose_jax.run import loop

  config = importlib.import_module(f"configs.{task}").get_config(variant)
  assert config.model.backbone == "resnet101" and config.image_size == 256 and config.batch_size == 32
  assert config.method == (variant or "source_only")
  if variant == "geometric" and task.startswith("synanimal"):
    config.geometric.ablation = "reconstruction"  # the lifter knows no animal skeleton
  with pytest.raises(errors.ConfigError, match="^config.model.init is required: .* download resnet101-63fe2227.pth "
                     r"\(https://download.pytorch.org/models/resnet101-63fe2227.pth\) .*config.model.init=none"):
    loop.run(config, tmp_path / "run")
  config.model.init = "none"
  if variant in ("mean_teacher", "daml", "geometric"):  # they stylise with AdaIN
    with pytest.raises(errors.ConfigError, match="^config.style.encoder is required: .*vgg_normalised.pth"):
      loop.run(config, tmp_path / "run")
    config.style.encoder = "none"
  with pytest.raises(MissingDatasetError, match=config.source.name):
    loop.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def run_module(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)


def test_dapose_jax_dispatches_to_its_commands_and_names_an_unknown_one():
  listing = run_module("dapose_jax")
  assert listing.returncode == 2 and all(f"  {name} " in listing.stdout for name in ("train", "style", "build"))
  version = run_module("dapose_jax", "--version")
  assert version.returncode == 0 and re.fullmatch(r"dapose-jax \d+\.\d+\S*\n", version.stdout)
  unknown = run_module("dapose_jax", "trian")
  assert unknown.returncode == 2 and "unknown command 'trian'" in unknown.stderr
  missing = run_module("dapose_jax", "build", "--manual_dir=/nowhere")
  assert missing.returncode != 0 and "--dataset" in missing.stderr


# imported only where a command runs, never by its --help, which must answer within a second
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "grain", "tensorflow", "tensorflow_datasets", "cv2", "matplotlib",
         "PIL", "scipy", "torch")


def test_importing_a_command_and_defining_its_flags_loads_no_heavy_library():
  code = textwrap.dedent(f"""
      import importlib, json, sys
      from dapose_jax.commands import cli
      loaded = {{}}
      for name, (module, _) in cli.COMMANDS.items():
        before = set(cli.FLAGS)
        importlib.import_module(module).define_flags()
        loaded[name] = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        for flag in set(cli.FLAGS) - before:  # the next command defines its own --config
          delattr(cli.FLAGS, flag)
      print(json.dumps(loaded))""")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout) == {name: [] for name in cli.COMMANDS}  # the first one listed imported it


def test_every_command_shows_its_docstring_and_flags_with_help_and_exit_status_0():
  commands = {name: ["dapose_jax", name] for name in cli.COMMANDS} | {"main": ["dapose_jax.main"]}
  modules = {name: module for name, (module, _) in cli.COMMANDS.items()} | {"main": "dapose_jax.commands.train"}
  started = {name: subprocess.Popen([sys.executable, "-m", *args, "--help"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, args in commands.items()}
  shown = {}
  for name, proc in started.items():
    stdout, stderr = proc.communicate(timeout=120)
    source = pathlib.Path(importlib.util.find_spec(modules[name]).origin).read_text()
    first_line = ast.get_docstring(ast.parse(source), clean=False).splitlines()[0]
    assert proc.returncode == 0 and stdout.startswith(first_line), (name, stderr)
    shown[name] = stdout.partition("\n\nflags:\n")[2]
  assert all("  --config: " in shown[name] for name in ("train", "evaluate", "predict", "browse", "main"))
  assert "  --manual_dir: " in shown["build"] and "  --dataset: <animal_pose_cat|" in shown["build"]
  assert "--workdir" not in shown["build"] and "  --decoding: <argmax|quarter|dark>: " in shown["predict"]


def test_console_script_train_rejects_a_bad_key_before_writing(tmp_path):
  script = pathlib.Path(sys.executable).parent / "dapose-jax"
  if not script.exists():
    pytest.skip("the package is not installed with its console script (pip install -e .)")
  proc = subprocess.run([str(script), "train", "--config=configs/demo.py:smoke", f"--workdir={tmp_path}",
                         "--config.no_such_key=1"], capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "no_such_key" in proc.stderr
  assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--config=configs/demo.py:smok"], "error: variant 'smok' of configs/demo.py: unknown token 'smok'"),
    (["--config=configs/nope.py"], "config 'configs/nope.py': no such file (or give a config by name: demo, "),
    (["--config=configs/demo.py", "--config.modle.backbone=resnet50"], 'Did you mean "model" instead of "modle"?'),
    (["--config=configs/demo.py:smoke", "--config.method=regdaa"], "error: config.method='regdaa' is not a method"),
])
def test_a_config_mistake_is_one_line_without_a_traceback(args, message, tmp_path):
  proc = run_module("dapose_jax.main", *args, f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()


def test_print_config_lists_every_key_as_it_is_overridden_and_needs_no_workdir():
  proc = run_module("dapose_jax.main", "--config=configs/demo.py:smoke", "--config.seed=3", "--print_config")
  lines = proc.stdout.splitlines()
  assert proc.returncode == 0 and "config.seed = 3" in lines and "config.image_size = 64" in lines
  assert "config.source.augment.rotation = 30.0" in lines and "config.source_only.lr_milestones = (4,)" in lines
  assert all(" = " in line and line.startswith("config.") for line in lines)
  missing = run_module("dapose_jax.main", "--config=configs/demo.py:smoke")
  assert missing.returncode == 2 and "--workdir" in missing.stderr and "required" in missing.stderr


@pytest.mark.parametrize("args, message", [
    (["--num_processes=2", "--process_id=0"], "not --coordinator_address (JAX_COORDINATOR_ADDRESS)"),
    (["--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2"], "process id 2 is not in 0 .. 1"),
])
def test_an_incomplete_multihost_start_is_one_line_naming_the_missing_flag(args, message, tmp_path):
  proc = run_module("dapose_jax.main", "--config=configs/demo.py:smoke", f"--workdir={tmp_path / 'run'}",
                    "--multihost", *args)
  assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()


def test_a_config_of_the_package_is_named_from_any_folder(tmp_path):
  named = subprocess.run([sys.executable, "-m", "dapose_jax", "train", "--config", "demo:smoke", "--print_config",
                          "--config.seed=5"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
  assert named.returncode == 0 and "config.seed = 5" in named.stdout and "config.image_size = 64" in named.stdout
  wrong = subprocess.run([sys.executable, "-m", "dapose_jax", "train", "--config", "dmeo", "--print_config"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
  assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
  assert "no such file, nor a config of" in wrong.stderr and "surreal_lsp" in wrong.stderr
