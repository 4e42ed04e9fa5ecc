"""experiments/reproduce.py: the stages of the 30 task x method recipes, the dry run (every method trained on one
task of each keypoint set, every task's data sets read through a training), the table's maths, the plan, the
missing-file error and the published numbers."""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

from dapose_jax import methods
from dapose_jax.commands import cli
from dapose_jax.pose import skeletons
from experiments import reproduce

METHODS_MD = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "methods.md"
REPO = pathlib.Path(__file__).resolve().parents[1]
# One process per task (the methods of a task share its data and compiled programs). A method's stages run the same
# code whatever the task, so every method trains on SURREAL -> LSP; the geometric method also on a hand task (its lifter
# knows the hand) and on an animal task (its reconstruction ablation: no lifter); and RegDA on every task, its two
# stages reading every split of both data sets (its stage 1 is source-only training). In this order, handed out round
# robin to the 2 workers of pytest -n 2 (tests/conftest.py runs the dry runs first).
ORDER = ("surreal_lsp", "synanimal_tigdog", "rhd_h3d", "synanimal_animalpose", "freihand_rhd", "surreal_h36m")
EVERY_METHOD = "surreal_lsp"
GEOMETRIC = ("rhd_h3d", "synanimal_tigdog")
DRY_RUNS = {task: tuple(reproduce.METHODS) if task == EVERY_METHOD else ("regda", "geometric") if task in GEOMETRIC
            else ("regda",) for task in ORDER}


def test_the_dry_runs_cover_every_task_every_method_and_the_geometric_method_on_each_keypoint_family():
  assert sorted(DRY_RUNS) == sorted(reproduce.TASKS) and len(reproduce.METHODS) == 5
  assert DRY_RUNS[EVERY_METHOD] == tuple(reproduce.METHODS) and all("regda" in run for run in DRY_RUNS.values())
  families = [reproduce.recipe(task, "source_only").target.keypoint_set.rstrip("0123456789")
              for task, run in DRY_RUNS.items() if "geometric" in run]
  assert sorted(families) == ["animal", "body", "hand"]


@pytest.mark.parametrize("task", reproduce.TASKS)
def test_every_recipe_starts_stage_two_from_stage_one_as_the_reference_does(task, tmp_path):
  for method in reproduce.METHODS:
    recipe = reproduce.recipe(task, method)
    stages = {stage.name: stage for stage in methods.get(method).stages(recipe, tmp_path)}
    last = list(stages.values())[-1].config
    assert last.method == method and (last.source.name, last.target.name) == (recipe.source.name, recipe.target.name)
    if method == "source_only":
      assert list(stages) == [method]
      continue
    assert last[method].pretrained == str(stages["pretrain"].best)
    assert stages["pretrain"].config.select_on == ("source" if method == "regda" else "target")
    if method in ("mean_teacher", "daml", "geometric"):  # UDAPE's stylised stage 1; the views drawn in the step
      assert stages["pretrain"].config.style.net == str(stages["style"].workdir.parent / "style_net.msgpack")
      assert last.target.augment.rotation == 0.0
    if method == "geometric":
      assert last.geometric.ablation == ("reconstruction" if task.startswith("synanimal") else "both")
      assert last.geometric.generator == str(stages["reconstruction"].workdir.parent / "reconstruction.msgpack")


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for the dry runs, shared by the test processes of a session: the tasks of one
  keypoint set compile the same programs."""
  base = tmp_path_factory.getbasetemp()
  return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "reproduce_compilation_cache"


@pytest.mark.parametrize("task", DRY_RUNS)
def test_the_dry_run_trains_every_stage_of_each_recipe_and_tabulates_it(task, compilation_cache, tmp_path):
  xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]  # one CPU device
  env = {**os.environ, "XLA_FLAGS": " ".join(xla_flags), cli.COMPILATION_CACHE_ENVIRONMENT: str(compilation_cache)}
  done = subprocess.run([sys.executable, "experiments/reproduce.py", "--task", task, "--method", *DRY_RUNS[task],
                         "--dry-run", "--workdir", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  root = tmp_path / "dry_run"
  for method in DRY_RUNS[task]:
    recipe = reproduce.recipe(task, method)
    run = reproduce.seed_dir(root, task, method, 0)
    for stage in methods.get(method).stages(reproduce.tiny(recipe), tmp_path / "fresh"):
      assert stage.config.epochs * stage.config.iters_per_epoch == reproduce.DRY_RUN_STEPS
      trained = run / stage.workdir.relative_to(tmp_path / "fresh")
      if stage.config.method == "style_decoder":
        assert (trained.parent / "style_net.msgpack").is_file()
      elif stage.config.method == "reconstruction":
        assert (trained.parent / "reconstruction.msgpack").is_file()
      else:
        assert json.loads((trained / "results.json").read_text())["steps"] == reproduce.DRY_RUN_STEPS
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["method"] == method
    if method != "source_only":  # stage 2 starts from stage 1's best (test_every_recipe_starts_stage_two_...)
      assert recorded[method]["pretrained"] == str(run / "pretrain" / "best")
      stage_one = json.loads((run / "pretrain" / "config.json").read_text())
      assert stage_one["select_on"] == ("source" if method == "regda" else "target")
    if method in ("mean_teacher", "daml", "geometric"):  # UDAPE's stylised stage 1; the views drawn in the step
      assert stage_one["style"]["net"] == str(run / "style" / "style_net.msgpack")
      assert recorded["target"]["augment"]["rotation"] == 0.0
    for domain in ("source", "target"):
      assert (recorded[domain]["name"], recorded[domain]["keypoint_set"]) == (recipe[domain].name,
                                                                             recipe[domain].keypoint_set)
    if method == "geometric":
      assert recorded["geometric"]["ablation"] == ("reconstruction" if task.startswith("synanimal") else "both")
      generator = run / "reconstruction"
      assert recorded["geometric"]["generator"] == str(generator / "reconstruction.msgpack")
      assert (generator / "reconstruction.png").is_file() and not (generator / "training").exists()
      logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
      assert all(math.isfinite(r["loss_reconstruction"]) for r in logged if r["kind"] == "train")
    table = json.loads((run.parent / "table.json").read_text())
    assert list(table["groups"]) == list(skeletons.get(recipe.target.keypoint_set).groups)
    assert table["finished"] == [0] and not table["missing"]
    assert reproduce.markdown(table) in done.stdout


def write_results(workdir, task, method, seed, target, step=1000):
  run = reproduce.seed_dir(workdir, task, method, seed)
  run.mkdir(parents=True)
  best = {"step": step, "target": target, "source": {k: 99.0 for k in target}}
  (run / "results.json").write_text(json.dumps({"final": best, "best": best, "method": method}))


def test_the_table_averages_the_finished_seeds_and_lists_the_missing_ones(tmp_path):
  groups = list(skeletons.BODY16.groups)
  write_results(tmp_path, "surreal_lsp", "regda", 0, dict.fromkeys(groups, 70.0), step=500)
  write_results(tmp_path, "surreal_lsp", "regda", 1, {**dict.fromkeys(groups, 72.0), "shoulder": 64.0})
  table = reproduce.tabulate(tmp_path, "surreal_lsp", "regda", [0, 1, 2])
  assert (table["finished"], table["missing"], table["selected_steps"]) == ([0, 1], [2], {"0": 500, "1": 1000})
  all_ = table["groups"]["all"]
  assert all_["seeds"] == [70.0, 72.0] and all_["mean"] == 71.0 and all_["std"] == 1.0
  assert all_["published"] == 74.6 and all_["delta"] == pytest.approx(-3.6)
  shoulder = table["groups"]["shoulder"]
  assert (shoulder["mean"], shoulder["std"], shoulder["delta"]) == (67.0, 3.0, pytest.approx(67.0 - 62.7))
  assert table["groups"]["head"]["published"] is None and table["groups"]["head"]["delta"] is None
  text = reproduce.markdown(table)
  assert "| all | 71.0 ± 1.0 | 74.6 | -3.6 |" in text and "| head | 71.0 ± 1.0 | — | — |" in text
  assert "Missing seeds, not averaged: 2" in text
  assert json.loads((tmp_path / "surreal_lsp" / "regda" / "table.json").read_text()) == table


def test_a_pair_without_a_published_number_says_so(tmp_path, capsys):
  write_results(tmp_path, "rhd_h3d", "mean_teacher", 3, dict.fromkeys(skeletons.HAND21.groups, 50.0))
  reproduce.main(["--task", "rhd_h3d", "--method", "mean_teacher", "--seeds", "3", "--table",
                  "--workdir", str(tmp_path)])
  out = capsys.readouterr().out
  assert "| fingertip | 50.0 ± 0.0 | — | — |" in out and "no published number" in out


def test_the_plan_names_the_stages_their_steps_and_the_files(capsys):
  reproduce.main(["--task", "surreal_lsp", "--method", "regda", "--plan", "--no-flops"])
  out = capsys.readouterr().out
  assert re.search(r"pretrain +source_only +70 x 500 = 35,000 +32 +256 +seed_N/pretrain", out)
  assert re.search(r"regda +regda +30 x 500 = 15,000 +32 +256 +seed_N\n", out)
  assert "resnet101-63fe2227.pth" in out and "vgg_normalised.pth" not in out
  assert "lsp_dataset.zip" in out and "SURREAL" in out
  reproduce.main(["--task", "synanimal_tigdog", "--method", "geometric", "--plan", "--no-flops"])
  out = capsys.readouterr().out
  assert [line.split()[0] for line in out.splitlines()[3:7]] == ["style", "pretrain", "reconstruction", "geometric"]
  assert "ablation 'reconstruction'" in out and "vgg_normalised.pth" in out


def test_a_run_without_the_backbone_file_says_which_file_torchvision_publishes(capsys):
  with pytest.raises(SystemExit) as exited:
    reproduce.main(["--task", "surreal_lsp", "--method", "regda"])
  err = capsys.readouterr().err
  assert exited.value.code == 2 and len(err.strip().splitlines()) == 1
  assert "--init" in err and "https://download.pytorch.org/models/resnet101-63fe2227.pth" in err


def test_the_published_numbers_are_the_references():
  assert reproduce.published("surreal_lsp", "regda")["pck"]["all"] == 74.6
  assert reproduce.published("freihand_rhd", "regda") is None and reproduce.published("surreal_lsp", "daml") is None
  if not METHODS_MD.is_file():
    pytest.skip(f"{METHODS_MD} is not here")
  section = METHODS_MD.read_text().split("## 9.")[1].split("\n## ")[0]
  tasks = {"SURREAL→LSP": "surreal_lsp", "SURREAL→Human3.6M": "surreal_h36m", "RHD→H3D": "rhd_h3d"}
  quoted = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if cells[0] in tasks and cells[1] in ("ERM", "RegDA"):
      quoted[(tasks[cells[0]], {"ERM": "source_only", "RegDA": "regda"}[cells[1]])] = [float(c) for c in cells[2:]]
  assert len(quoted) == 6
  for (task, method), numbers in quoted.items():
    assert list(reproduce.published(task, method)["pck"].values()) == numbers, (task, method)
