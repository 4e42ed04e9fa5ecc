"""One command per row of the published tables: a benchmark task x method trained with the reference's recipe over
several seeds, and its table next to the published numbers.

  python experiments/reproduce.py --task surreal_lsp --method regda --seeds 0 1 2 \\
      --data_dir ~/tensorflow_datasets --init ~/weights/resnet101-63fe2227.pth [--workdir runs/reproduce]
  python experiments/reproduce.py --task rhd_h3d --method mean_teacher --init ... --encoder ~/weights/vgg_normalised.pth
  python experiments/reproduce.py --task surreal_lsp --method regda --plan [--no-flops]  # stages, data, files, GPU h
  python experiments/reproduce.py --task surreal_lsp --method regda --seeds 0 1 2 --table  # tabulate finished seeds
  python experiments/reproduce.py --task all --method all --dry-run  # every stage of every recipe, 2 steps, tiny data

--task and --method take several names, or all.

Each seed trains in WORKDIR/TASK/METHOD/seed_N with ``dapose_jax.run.loop.run`` on ``configs/TASK.py:METHOD`` with
``config.seed`` = N: every stage of the recipe, each resumed where it stopped and reused once finished, so the same
command continues an interrupted run. Then WORKDIR/TASK/METHOD/table.json and a markdown table: per keypoint group,
the mean ± std (population std, as experiments/demo_table.py) over the seeds of the checkpoint each run selected
(results.json "best", chosen on the target test split as the references choose), the published number
(experiments/published.json) and the difference. Seeds without a results.json are listed and not averaged.
--set KEY=VALUE (repeatable) overrides a config key as --config.KEY=VALUE does for dapose_jax.main.

Methods: source_only (tllib's ERM), regda, mean_teacher (UDAPE), daml, geometric. On the animal tasks geometric runs
its 'reconstruction' ablation: its integrated pseudo-labels lift the keypoints to 3D, and the lifter knows only the
body and hand skeletons (--set geometric.ablation=baseline runs the other ablation that works there).

--dry-run runs every stage of each recipe for 2 steps on tiny data sets that the real builders build from the
tests' fixture releases (WORKDIR/dry_run/data; Human3.6M's test split 8 draws, not 3200), at ResNet-10 (ResNet-18
with one basic block per stage), 32 px, batch 4, one evaluation, small style, generator and lifter networks, a random
torchvision-layout file of that ResNet as model.init and a random style encoder: the recipe's own data sets, keypoint
sets, stages and method settings with only the sizes shrunk. All 30 pairs take about 10 minutes on 2 CPU cores. It needs the test extra (pytest).
"""

import argparse
import ast
import functools
import hashlib
import json
import pathlib
import runpy
import shutil
import sys
import tempfile
from unittest import mock

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "experiments")]  # tests' fixture writers; benchmark.py

from dapose_jax import errors, methods  # noqa: E402
from dapose_jax.augment import device_augment  # noqa: E402
from dapose_jax.auxiliary import lifting  # noqa: E402
from dapose_jax.commands import build, cli  # noqa: E402
from dapose_jax.config import defaults, files  # noqa: E402
from dapose_jax.data import builders  # noqa: E402
from dapose_jax.data.builders import human36m  # noqa: E402
from dapose_jax.methods import base  # noqa: E402
from dapose_jax.run import loop  # noqa: E402

TASKS = {"surreal_lsp": "SURREAL → LSP", "surreal_h36m": "SURREAL → Human3.6M", "rhd_h3d": "RHD → H3D",
         "freihand_rhd": "FreiHAND → RHD", "synanimal_tigdog": "SynAnimal → TigDog",
         "synanimal_animalpose": "SynAnimal → AnimalPose"}
METHODS = {"source_only": "ERM (source only)", "regda": "RegDA", "mean_teacher": "UDAPE (mean teacher)",
           "daml": "DAML", "geometric": "geometric reconstruction"}
PUBLISHED = REPO / "experiments" / "published.json"
DRY_RUN_STEPS = 2
GPU = "H100"  # the device whose datasheet peak (experiments/benchmark.py PEAK_FLOPS) the estimate assumes


def variant(task, method):
  return f"configs/{task}.py" + ("" if method == "source_only" else f":{method}")


def recipe(task, method):
  """The config of ``configs/TASK.py:METHOD``; geometric on an animal task runs its 'reconstruction' ablation."""
  config = runpy.run_path(str(REPO / "configs" / f"{task}.py"))["get_config"]("" if method == "source_only" else method)
  if method == "geometric" and config.source.keypoint_set not in lifting.ROOTS:
    config.geometric.ablation = "reconstruction"
  return config


def with_files(config, data_dir=None, init=None, encoder=None, sets=()):
  """``config`` reading its data sets in ``data_dir``, its backbone from ``init``, the AdaIN encoder ``encoder``
  (each where given) and with the KEY=VALUE ``sets``."""
  for domain in defaults.DOMAINS:
    config[domain].data_dir = str(data_dir or config[domain].data_dir)
  config.model.init = str(init or config.model.init)
  config.style.encoder = str(encoder or config.style.encoder)
  for assignment in sets:
    override(config, assignment)
  return config


def override(config, assignment):
  """Sets ``config.KEY`` to VALUE (a Python literal, else the text) of ``assignment`` = "KEY=VALUE"."""
  key, equals, text = assignment.partition("=")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  try:
    if not equals:
      raise KeyError(key)
    files.set_key(config, key, value)
  except KeyError:
    raise errors.ConfigError(f"--set {assignment!r}: expected KEY=VALUE with a key of the config, e.g. --set "
                             "model.dtype=bfloat16 (dapose-jax train --config configs/TASK.py --print_config lists "
                             "the keys)") from None
  except errors.ConfigError as error:
    raise errors.ConfigError(f"--set {assignment!r}: {error}") from None


def check_files(config, stages):
  """One line for the file a recipe needs and the command did not name: --init always, --encoder where a stage
  reads the AdaIN network."""
  if config.model.init == defaults.REQUIRED:
    name = defaults.TORCHVISION_FILES[config.model.backbone]
    raise errors.ConfigError(f"--init is required: the references start {config.model.backbone} from torchvision's "
                             f"ImageNet weights; download {name} ({defaults.TORCHVISION_URL}{name}) and pass --init "
                             f"PATH/{name} (--init none: random weights on purpose)")
  if any(methods.as_recorded(s.config).get("style", {}).get("encoder") == defaults.REQUIRED for s in stages):
    raise errors.ConfigError(f"--encoder is required for {config.method}: the references' AdaIN network uses the "
                             f"released VGG encoder {defaults.ADAIN_ENCODER} (pytorch-AdaIN's release, UDAPE's "
                             f"adain/pretrain/{defaults.ADAIN_ENCODER}); pass --encoder "
                             f"PATH/{defaults.ADAIN_ENCODER} (--encoder none: a random encoder on purpose)")


def seed_dir(workdir, task, method, seed):
  return pathlib.Path(workdir) / task / method / f"seed_{seed}"


def train_seeds(config, workdir, task, method, seeds):
  for seed in seeds:
    loop.run(base.updated(config, seed=seed), seed_dir(workdir, task, method, seed))


# --------------------------------------------------------------------------------------------------------- table


def published(task, method):
  """The row of experiments/published.json for ``task`` x ``method``, None where there is no published number."""
  rows = json.loads(PUBLISHED.read_text())["rows"]
  return next((row for row in rows if (row["task"], row["method"]) == (task, method)), None)


def tabulate(workdir, task, method, seeds):
  """Writes and returns WORKDIR/TASK/METHOD/table.json: per keypoint group the finished seeds' target PCK of the
  selected checkpoint, their mean and std, the published number and mean - published; unfinished seeds as missing."""
  folder = pathlib.Path(workdir) / task / method
  best = {}
  for seed in seeds:
    path = seed_dir(workdir, task, method, seed) / "results.json"
    selected = json.loads(path.read_text())["best"] if path.is_file() else None
    if selected:
      best[seed] = selected
  row = published(task, method)
  groups = next(iter(best.values()))["target"] if best else row["pck"] if row else {}
  table = {"task": task, "method": method, "config": variant(task, method), "seeds": list(seeds),
           "finished": list(best), "missing": [s for s in seeds if s not in best],
           "selected_steps": {str(s): b["step"] for s, b in best.items()},
           "published_source": row and row["source"], "groups": {}}
  for group in groups:
    values = [best[s]["target"][group] for s in best]
    mean, std = (float(np.mean(values)), float(np.std(values))) if values else (None, None)
    reference = row["pck"].get(group) if row else None
    table["groups"][group] = {"seeds": values, "mean": mean, "std": std, "published": reference,
                              "delta": None if mean is None or reference is None else mean - reference}
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "table.json").write_text(json.dumps(table, indent=2) + "\n")
  return table


def _fmt(value, spec=".1f"):
  return "—" if value is None else format(value, spec)


def markdown(table):
  seeds = ", ".join(map(str, table["finished"])) or "none finished"
  lines = [f"{TASKS[table['task']]}, {METHODS[table['method']]} ({table['config']}): target PCK@0.05 of the "
           "checkpoint selected on the target test split", "",
           f"| group | ours: mean ± std (seeds {seeds}) | published | Δ |", "|---|---|---|---|"]
  for group, g in table["groups"].items():
    ours = "—" if g["mean"] is None else f"{g['mean']:.1f} ± {g['std']:.1f}"
    lines.append(f"| {group} | {ours} | {_fmt(g['published'])} | {_fmt(g['delta'], '+.1f')} |")
  lines.append("")
  lines.append(f"Published: {table['published_source']}." if table["published_source"] else
               "Published: no published number for this task and method (experiments/published.json says why).")
  if table["missing"]:
    lines.append(f"Missing seeds, not averaged: {', '.join(map(str, table['missing']))} (no results.json yet).")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- plan


def step_flops(config, cache):
  """XLA's FLOP count of one train step of a stage at the stage's shapes (experiments/benchmark.py's count of the
  program compiled on this host's CPU); a step whose lowered program ``cache`` holds is not compiled again."""
  import jax

  import benchmark

  method = methods.get(config.method)
  state = jax.eval_shape(functools.partial(method.init, config), jax.random.key(config.seed))
  batches = []
  for seed, domain in enumerate(defaults.DOMAINS):
    batch = benchmark.random_batch(config, seed)
    batches.append({"base": batch, "driving": batch} if config[domain].pairs else batch)
  augments = tuple((loop.stream_seed(config, d), device_augment.from_config(config, d)) for d in defaults.DOMAINS)
  step = jax.jit(device_augment.augmented(functools.partial(method.train_step, config), augments), donate_argnums=(0,))
  lowered = step.lower(state, *batches, 1)
  key = hashlib.sha256(lowered.as_text().encode()).hexdigest()
  if key not in cache:
    counts = benchmark.xla_flops(lowered, lowered.compile(), num_devices=1)
    cache[key] = counts["compiled"] or counts["lowered"]
  return cache[key]


def plan(config, task, method, seeds, workdir, mfu, flops_cache=None):
  """The stages of a recipe, the data sets and files it needs and, unless ``flops_cache`` is None, an estimate of its
  GPU hours from XLA's FLOP count of each stage's step."""
  if flops_cache is not None:
    import benchmark

    rate = mfu * benchmark.peak_flops(GPU, config.model.dtype)
  with tempfile.TemporaryDirectory() as folder:
    stages = methods.get(config.method).stages(config, pathlib.Path(folder))
    places = [f"seed_N/{s.workdir.relative_to(folder)}".rstrip("/.") for s in stages]
  lines = [f"{TASKS[task]}, {METHODS[method]}: {variant(task, method)}, seeds {' '.join(map(str, seeds))}, each in "
           f"{seed_dir(workdir, task, method, 'N')}"]
  if method == "geometric" and config.geometric.ablation != "both":
    lines.append(f"  geometric runs ablation {config.geometric.ablation!r}: the integrated pseudo-labels lift the "
                 f"keypoints to 3D and the lifter knows only {', '.join(lifting.ROOTS)}, not "
                 f"{config.source.keypoint_set}")
  header = f"  {'stage':<15}{'method':<15}{'epochs x iterations = steps':<30}{'batch':>6}{'image':>7}  {'folder':<32}"
  lines.append((header + ("  GFLOP/step   GPU h" if flops_cache is not None else "")).rstrip())
  hours = 0.0
  for stage, place in zip(stages, places):
    c = stage.config
    steps = c.epochs * c.iters_per_epoch
    line = (f"  {stage.name:<15}{c.method:<15}{f'{c.epochs} x {c.iters_per_epoch:,} = {steps:,}':<30}"
            f"{c.batch_size:>6}{c.image_size:>7}  {place:<32}")
    if flops_cache is not None:
      flops = step_flops(c, flops_cache)
      hours += flops * steps / rate / 3600
      line += f"{flops / 1e9:>12,.0f}{flops * steps / rate / 3600:>8.2f}"
    lines.append(line.rstrip())
  lines.append("data sets (built once into --data_dir, default ~/tensorflow_datasets, with python -m "
               "dapose_jax.commands.build --dataset NAME --manual_dir RELEASE --data_dir DIR):")
  for domain in defaults.DOMAINS:
    name = config[domain].name
    instructions = builders.REGISTRY[name].MANUAL_DOWNLOAD_INSTRUCTIONS.replace("\n", "\n      ")
    lines.append(f"  {name} ({domain}, {config[domain].keypoint_set}): {instructions}")
  init = defaults.TORCHVISION_FILES[config.model.backbone]
  lines += ["files:", f"  --init {init}: torchvision's ImageNet {config.model.backbone}, "
            f"{defaults.TORCHVISION_URL}{init}"]
  if any("style" in methods.as_recorded(s.config) for s in stages):
    lines.append(f"  --encoder {defaults.ADAIN_ENCODER}: the AdaIN network's VGG encoder (pytorch-AdaIN's release, "
                 f"UDAPE's adain/pretrain/{defaults.ADAIN_ENCODER})")
  if flops_cache is not None:
    lines.append(f"GPU time: {hours:.2f} GPU h per seed, {hours * len(seeds):.2f} for {len(seeds)} seeds. An estimate "
                 "with no GPU measurement behind it: XLA's FLOP count of each stage's train step (compiled on this CPU "
                 f"at the recipe's shapes) x its steps / an assumed sustained {rate / 1e12:.0f} TFLOP/s ({mfu:.0%} MFU "
                 f"of the {GPU} SXM's dense {config.model.dtype} peak of {rate / mfu / 1e12:.1f} TFLOP/s, float32 as "
                 "TF32; experiments/benchmark.py PEAK_FLOPS). A branch taken with a probability (the AdaIN "
                 "stylisation) counts in every step; evaluations, input pipelines and the geometric lifter's training "
                 "are not counted.")
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- dry run


def tiny(config):
  """``config`` with only its sizes shrunk: every stage DRY_RUN_STEPS steps of batch 4 at 32 px on ResNet-10, one
  evaluation at the end, small style (so a random encoder), generator and lifter networks, no worker processes."""
  config.model.update(backbone="resnet10", upsampling_features=16)
  config.update(image_size=32, heatmap_size=8, batch_size=4, eval_batch_size=4, epochs=1, iters_per_epoch=DRY_RUN_STEPS,
                log_every=1, eval_every=DRY_RUN_STEPS, checkpoint_every=DRY_RUN_STEPS, keep_checkpoints=1,
                eval_pictures=0)
  config.data.update(workers=0, num_threads=1, prefetch=1, device_prefetch=1)
  for section in (config.regda, config.mean_teacher, config.daml, config.geometric):
    section.pretrain_epochs = 1
  for section in (config.mean_teacher, config.daml, config.geometric):
    section.occlude_size = 2
  config.style.update(encoder=defaults.NONE, width=1 / 16, depth=2, steps=DRY_RUN_STEPS, batch_size=4, log_every=1)
  config.reconstruction.update(warping_features=4, warping_max_features=8, warping_blocks=2, generator_features=4,
                               generator_max_features=8, generator_residual_blocks=1, steps=DRY_RUN_STEPS,
                               batch_size=4, log_every=1)
  config.lifting.update(width=32, steps=DRY_RUN_STEPS, batch_size=32, poses=64)
  return config


def tiny_releases():
  """{builder name: write(folder)}: a tiny release in that builder's on-disk format, from the tests' fixtures."""
  try:
    from tests import test_animal_datasets as animals, test_body_datasets as body, test_hand_datasets as hands
    from tests import test_lsp
  except ImportError as error:
    raise errors.UserError(f"--dry-run writes the tests' fixture releases and needs the test extra ({error}): pip "
                           "install -e '.[test]'") from None
  pose = animals.pose_annotation
  return {
      "surreal": body.write_processed_release,
      "human36m": lambda root: [body.write_h36m_subject(root, s, n, seed=s) for s, n in body.H36M_FRAMES.items()],
      "lsp": lambda root: test_lsp.write_release(root, test_lsp.random_joints(len(test_lsp.SIZES))),
      "rhd": hands.write_rhd, "freihand": hands.write_freihand, "h3d": lambda root: squared(hands.write_h3d(root)),
      **{f"synanimal_{a}_{b}": lambda root, a=a, b=b: (animals.write_synanimal(root, a, [3, 0, 4], [2, 1], seed=1),
                                                       animals.write_synanimal(root, b, [1], [0, 4], seed=2))
         for a, b in (("horse", "tiger"), ("hound", "sheep"))},
      "tigdog_horse_tiger": lambda root: (animals.write_tigdog(root, "horse", [4, 0, 2], [1, 3]),
                                          animals.write_tigdog(root, "tiger", [3], [0])),
      "animal_pose_dog_sheep": lambda root: animals.write_animal_pose(root, {
          "dog": {"train": [pose(11, 1, [10, 6, 50, 30], 0), pose(12, 1, [14, 0, 54, 28], 3)],
                  "test": [pose(13, 1, [0, 0, 63, 47], 1)]},
          "sheep": {"train": [pose(21, 3, [10, 6, 50, 30], 2)],
                    "test": [pose(22, 3, [5, 5, 30, 20], 4), pose(23, 3, [5, 5, 30, 20], 5)]}}),
  }


def squared(root):
  """The images under ``root`` padded at the bottom or right to squares, keypoints unchanged: tllib's H3D crops are
  square, the tests' H3D fixture's are 48 x 40 (the builder tests do not read them through the pipeline)."""
  from PIL import Image

  for path in [p for p in root.rglob("*") if p.suffix in (".jpg", ".png")]:
    image = Image.open(path)
    square = Image.new(image.mode, (max(image.size),) * 2)
    square.paste(image)
    square.save(path, quality=95)
  return root


def build_tiny_data(names, root):
  """Builds each data set of ``names`` from its tiny release into ROOT/data (once: a built one is kept); Human3.6M's
  test split draws 8 samples instead of 3200. Returns ROOT/data."""
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  root = pathlib.Path(root)
  writers = tiny_releases()
  for name in names:
    if builders.REGISTRY[name](data_dir=str(root / "data")).is_prepared():
      continue
    release = root / "releases" / name
    shutil.rmtree(release, ignore_errors=True)
    release.mkdir(parents=True)
    writers[name](release)
    with mock.patch.object(human36m.Human36m, "TEST_SIZE", 8):
      build.build(name, release, root / "data")
  return root / "data"


def random_init(path, config):
  """A random ResNet file in torchvision's names and layout for ``config.model.backbone`` (tests' writer)."""
  if not pathlib.Path(path).is_file():
    from tests.test_backbone_init import torchvision_file

    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    torchvision_file(path, config)
  return path


def dry_run(pairs, root, seeds=(0,), sets=()):
  """Trains every stage of each (task, method) recipe of ``pairs`` for DRY_RUN_STEPS steps on tiny data in ROOT and
  returns their tables."""
  configs = {pair: tiny(recipe(*pair)) for pair in pairs}
  data_dir = build_tiny_data(sorted({c[d].name for c in configs.values() for d in defaults.DOMAINS}), root)
  init = random_init(pathlib.Path(root) / "resnet10.npz", next(iter(configs.values())))
  tables = []
  for (task, method), config in configs.items():
    train_seeds(with_files(config, data_dir, init, sets=sets), root, task, method, seeds)
    tables.append(tabulate(root, task, method, seeds))
    print(markdown(tables[-1]) + "\n", flush=True)
  return tables


# ---------------------------------------------------------------------------------------------------------- main


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--task", required=True, nargs="+", choices=[*TASKS, "all"], metavar="TASK",
                      help=f"{', '.join(TASKS)} or all")
  parser.add_argument("--method", required=True, nargs="+", choices=[*METHODS, "all"], metavar="METHOD",
                      help=f"{', '.join(METHODS)} or all")
  parser.add_argument("--seeds", nargs="+", type=int, help="config.seed of each run (default 0 1 2; dry run: 0)")
  parser.add_argument("--data_dir", help="where the data sets are built (default: the config's, ~/tensorflow_datasets)")
  parser.add_argument("--init", help=f"config.model.init: torchvision's ImageNet ResNet file, e.g. "
                      f"{defaults.TORCHVISION_FILES['resnet101']}; 'none': random weights")
  parser.add_argument("--encoder", help=f"config.style.encoder (mean_teacher, daml, geometric): AdaIN's "
                      f"{defaults.ADAIN_ENCODER}; 'none': a random encoder")
  parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/reproduce"))
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--plan", action="store_true", help="print the recipe's stages, data sets, files and GPU hours")
  mode.add_argument("--table", action="store_true", help="only tabulate the seeds that finished")
  mode.add_argument("--dry-run", action="store_true", help="every stage for 2 steps on tiny data in WORKDIR/dry_run")
  parser.add_argument("--no-flops", dest="flops", action="store_false", help="--plan without the GPU-hour estimate "
                      "(which compiles each stage's step on the CPU, about a minute each)")
  parser.add_argument("--mfu", type=float, default=0.4, help="--plan: the assumed share of the GPU's peak FLOP/s")
  args = parser.parse_args(argv)
  args.seeds = args.seeds or ([0] if args.dry_run else [0, 1, 2])
  return args


def start_jax(dry_run):
  """The progress log, the persistent compilation cache and, for a dry run, XLA's fast compiles."""
  import cv2
  import jax

  cli.log_progress_to_stderr()
  cli.enable_compilation_cache()
  cv2.setNumThreads(1)
  if dry_run:
    jax.config.update("jax_disable_most_optimizations", True)


def main(argv=None):
  args = parse(argv)
  pairs = [(t, m) for t in (TASKS if "all" in args.task else args.task)
           for m in (METHODS if "all" in args.method else args.method)]
  try:
    if args.table:
      for pair in pairs:
        print(markdown(tabulate(args.workdir, *pair, args.seeds)) + "\n")
      return
    if args.dry_run:
      start_jax(dry_run=True)
      dry_run(pairs, args.workdir / "dry_run", args.seeds, args.set)
      return
    configs = {pair: with_files(recipe(*pair), args.data_dir, args.init, args.encoder, args.set) for pair in pairs}
    if args.plan:
      if args.flops:
        cli.enable_compilation_cache()
      flops_cache = {} if args.flops else None
      for pair, config in configs.items():
        print(plan(config, *pair, args.seeds, args.workdir, args.mfu, flops_cache) + "\n", flush=True)
      return
    for config in configs.values():
      check_files(config, methods.get(config.method).stages(config, args.workdir))
    start_jax(dry_run=False)
    for pair, config in configs.items():
      train_seeds(config, args.workdir, *pair, args.seeds)
      print(markdown(tabulate(args.workdir, *pair, args.seeds)) + "\n")
  except errors.UserError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  except errors.Stopped as stopped:  # a signal, after a checkpoint: the same command resumes
    print(stopped, file=sys.stderr)
    sys.exit(stopped.exit_status)


if __name__ == "__main__":
  main()
