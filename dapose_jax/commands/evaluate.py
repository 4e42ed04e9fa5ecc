"""The ``evaluate`` command: a trained checkpoint's tables on a split, printed and written as JSON.

  python -m dapose_jax evaluate --config=configs/demo.py --checkpoint=runs/demo [--split=test]
      [--domain=target|source|both] [--thresholds=0.05,0.1,0.2] [--metrics=pck_bbox,pck_auc,epe] [--flip]
      [--out=FILE.json] [--overwrite] [--config.target.name=...]

(also ``dapose-jax evaluate ...``). ``--config`` may be the run's recorded config.json (``--config=runs/demo``).
The evaluators are the run's ``config.evals`` (by default PCK@0.05 per group with tllib's aggregation, on the
target and the source test split), as the train log and ``results.json`` have them: the run's own checkpoint on
its own test split gives the numbers of ``results.json``. ``--thresholds`` runs every evaluator that has a
threshold once per value (named NAME@T); ``--metrics`` adds evaluator types per domain (named DOMAIN_TYPE; see
``dapose_jax/evaluators``); ``--flip`` averages with the mirrored images (``finished.flip_tested``). The evaluators
of one split share one pass over it (``evaluators.run_all``), logging its progress in images/s.

The JSON (default RUN/evaluate_SPLIT_best.json or RUN/evaluate_SPLIT_stepN.json) holds the checkpoint, its step,
the split and ``results`` {evaluator: {key: value}} with each evaluator's description in ``metrics``; an
existing file is not replaced without ``--overwrite``. With two or more ``--thresholds``, each evaluator's
headline value over them is also drawn as a PNG beside the JSON (JSON_STEM_NAME.png, ``drawing.pck_curve``), each
``pose_bins`` evaluator's PCK and EvalPose over the difficulty bins likewise (``drawing.line_plot``) and each
``keypoint_confusion`` evaluator's matrix (``drawing.matrix_plot``: ``--metrics=keypoint_confusion``). The output
path is checked before the model is loaded; an output that cannot be written all the same (a full disk) is named
in one line at the end, after the tables are printed and the other outputs written.
"""

import functools
import inspect
import json
import pathlib
import sys

from absl import flags
from ml_collections import ConfigDict

from dapose_jax import errors
from dapose_jax.commands import cli
from dapose_jax.config import defaults

# the evaluators, JAX and the plots are imported in the functions that use them: --help must not load them
FLAGS = flags.FLAGS
BOTH = "both"


def define_flags():
  cli.define_model_flags()
  flags.DEFINE_string("split", "test", "The split every evaluator runs on.")
  flags.DEFINE_enum("domain", BOTH, [*defaults.DOMAINS, BOTH], "The data sets to evaluate on.")
  flags.DEFINE_list("thresholds", [], "PCK thresholds, e.g. 0.05,0.1,0.2: each evaluator with a threshold runs "
                    "once per value (as NAME@T); default: the config's.")
  flags.DEFINE_list("metrics", [], "More evaluator types to run on each domain (as DOMAIN_TYPE), e.g. "
                    "pck_bbox,pck_auc,epe; one of " + ", ".join(sorted(defaults.EVALUATOR_TYPES)) + ".")
  flags.DEFINE_bool("flip", False, "Average the heatmaps with those of the mirrored images (flip test).")
  flags.DEFINE_string("out", None, "The JSON file to write; default RUN/evaluate_SPLIT_best.json or "
                      "RUN/evaluate_SPLIT_stepN.json.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")


def evaluations(evals, *, split, domains, thresholds=(), metrics=()):
  """The ``config.evals`` of an evaluation (a dict of dicts): the run's ``evals`` on ``domains`` (the reference
  PCK for a domain it has none for), each on ``split``; then per domain one evaluator of each type in ``metrics``,
  named DOMAIN_TYPE; with ``thresholds``, each evaluator with a threshold once per value, named NAME@T."""
  from dapose_jax import evaluators

  chosen = {name: dict(spec, split=split) for name, spec in evals.items() if spec["domain"] in domains}
  for domain in domains:
    if not any(spec["domain"] == domain for spec in chosen.values()):
      chosen[domain] = defaults.pck_eval(domain, split)
  for kind in metrics:
    if kind not in evaluators.TYPES:
      raise errors.ConfigError(f"--metrics: {kind!r} is not an evaluator; choose from {sorted(evaluators.TYPES)}")
    chosen.update({f"{domain}_{kind}": dict(type=kind, domain=domain, split=split) for domain in domains})
  if not thresholds:
    return chosen
  expanded = {}
  for name, spec in chosen.items():
    if _takes_threshold(spec["type"]):
      expanded.update({f"{name}@{t:g}": dict(spec, threshold=t) for t in thresholds})
    else:
      expanded[name] = spec
  return expanded


def _takes_threshold(kind):
  from dapose_jax import evaluators

  return kind in evaluators.TYPES and "threshold" in inspect.signature(evaluators.TYPES[kind]).parameters


def evaluate(model, mesh, evals, *, flip=False):
  """({evaluator: {key: value}}, {evaluator: description}) of ``model`` for ``evals`` (``evaluations``)."""
  from dapose_jax import evaluators, parallel
  from dapose_jax.run import finished

  config = model.config.copy_and_resolve_references()
  with config.unlocked():
    config.evals = ConfigDict(evals, allow_dotted_keys=True)  # NAME@0.1
  parallel.local_batch_size(config.eval_batch_size, "config.eval_batch_size")
  method = finished.flip_tested(model.method, model.keypoint_set) if flip else model.method
  chosen = evaluators.from_config(config, method, mesh)
  results = evaluators.run_all(chosen, model.state, log=cli.log.info)
  return results, {name: evaluator.description for name, evaluator in chosen.items()}


def curves(results, evals, thresholds):
  """{evaluator: [its headline value at each threshold]} of the evaluators that ``evaluations`` ran once per
  threshold (named NAME@T)."""
  from dapose_jax import evaluators

  by_name = {}
  for name, spec in evals.items():
    base, at, _ = name.rpartition("@")
    if at and "threshold" in spec:
      headline = evaluators.TYPES[spec["type"]].headline
      by_name.setdefault(base, {})[spec["threshold"]] = results[name][headline]
  return {name: [values[t] for t in thresholds] for name, values in by_name.items()}


def curve_paths(out, names):
  """{evaluator: the PNG of its PCK curve beside the JSON ``out``}."""
  return {name: out.with_name(f"{out.stem}_{name}.png") for name in names}


def plots(results, evals, thresholds, out, split, keypoint_set):
  """{a PNG beside the JSON ``out`` (as ``curve_paths`` names them): the function that draws and writes it}: with
  two or more ``thresholds``, each evaluator's headline value over them (``curves``); each ``pose_bins``
  evaluator's PCK and EvalPose over its difficulty bins; each ``keypoint_confusion`` evaluator's matrix, its flip
  partners (of ``keypoint_set``) framed."""
  from dapose_jax.plots import drawing

  lines = curves(results, evals, thresholds) if len(thresholds) > 1 else {}
  drawn = {path: functools.partial(drawing.pck_curve_png, thresholds, lines[name], path,
                                   title=f"{name}: PCK over thresholds, {split} split")
           for name, path in curve_paths(out, lines).items()}
  bins = curve_paths(out, [name for name, spec in evals.items() if spec["type"] == "pose_bins"])
  drawn.update({path: functools.partial(_bin_plot, results[name], path, title=f"{name}: per pose-VAE bin, {split} "
                                        "split") for name, path in bins.items()})
  matrices = curve_paths(out, [name for name, spec in evals.items() if spec["type"] == "keypoint_confusion"])
  drawn.update({path: functools.partial(_confusion_plot, results[name], keypoint_set, path,
                                        title=f"{name}, {split} split") for name, path in matrices.items()})
  return drawn


def _bin_plot(values, path, title):
  from dapose_jax.evaluators import pose_bins
  from dapose_jax.plots import drawing

  bins, pck, evalpose = pose_bins.per_bin(values)
  drawing.save_png(path, drawing.line_plot(bins, {"PCK": pck, "EvalPose": evalpose}, x_label="difficulty bin",
                                           title=title))


def _confusion_plot(values, keypoint_set, path, title):
  from dapose_jax.evaluators import confusion
  from dapose_jax.plots import drawing

  names, shares, counted = confusion.matrix(values)
  summary = ", ".join(f"{kind} {values[kind]:.1f}" for kind in confusion.CATEGORIES)
  framed = [(k, f) for k, f in enumerate(keypoint_set.flip_permutation()) if f != k]
  drawing.save_png(path, drawing.matrix_plot(
      shares, [f"{name} ({n:.0f})" for name, n in zip(names, counted)], [*names, confusion.BACKGROUND],
      title=f"{title}: {summary} (%)", outlined=framed, split_last=True,
      note="row: a keypoint (its counted predictions); column: the truth its prediction lands on, in % of the row; "
           "framed: the flip partner"))


def write_each(outputs):
  """Calls each of ``outputs`` ({path: the function that writes it}) and prints "wrote PATH"; one that cannot be
  written (a full disk) keeps none of the others from being written, and the failures are raised at the end in one
  line (``errors.WriteError``)."""
  failed = []
  for path, write in outputs.items():
    try:
      write()
    except OSError as error:
      failed.append(f"{path} ({error.strerror or errors.one_line(error)})")
      continue
    print(f"wrote {path}")
  if failed:
    raise errors.WriteError(f"could not write {'; '.join(failed)}; the tables above are complete and the other "
                            "outputs were written")


def output_path(out, checkpoint, split, overwrite):
  """Where the JSON goes (``out``, or the default in the run folder), checked to be writable; an existing file only
  with ``overwrite``."""
  from dapose_jax.storage import workdirs

  which = "best" if checkpoint.is_best else f"step{checkpoint.step}"
  path = pathlib.Path(out).expanduser() if out else checkpoint.run / f"evaluate_{split}_{which}.json"
  workdirs.check_writable(path, folder=False, name="--out")
  if path.exists() and not overwrite:
    raise errors.UserError(f"{path} exists; pass --overwrite to replace it, or --out to write elsewhere")
  return path


def _parse_thresholds(values):
  try:
    thresholds = [float(value) for value in values]
  except ValueError:
    thresholds = []
  if len(thresholds) != len(values) or not all(0 < t for t in thresholds):
    raise errors.ConfigError(f"--thresholds={','.join(values)}: expected positive numbers, e.g. 0.05,0.1,0.2")
  return thresholds


def main(argv):
  from dapose_jax import evaluators, parallel
  from dapose_jax.run import finished
  from dapose_jax.storage import workdirs

  cli.expect_no_arguments(argv)
  cli.log_progress_to_stderr()
  cli.enable_compilation_cache()
  domains = defaults.DOMAINS if FLAGS.domain == BOTH else (FLAGS.domain,)
  thresholds = _parse_thresholds(FLAGS.thresholds)
  checkpoint = finished.locate(FLAGS.checkpoint)
  out = output_path(FLAGS.out, checkpoint, FLAGS.split, FLAGS.overwrite)
  mesh = parallel.make_mesh()
  model = finished.load(FLAGS.config, checkpoint, mesh)
  evals = evaluations(model.config.evals.to_dict(), split=FLAGS.split, domains=domains, thresholds=thresholds,
                      metrics=FLAGS.metrics)
  results, descriptions = evaluate(model, mesh, evals, flip=FLAGS.flip)
  print(f"step {checkpoint.step} of {checkpoint.path}, {FLAGS.split} split{', flip test' if FLAGS.flip else ''}")
  for name, values in results.items():
    print(f"{name}: {evaluators.table(values)}  ({descriptions[name]})")
  record = {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "method": model.config.method,
            "split": FLAGS.split, "flip": FLAGS.flip, "results": results, "metrics": descriptions}
  out.parent.mkdir(parents=True, exist_ok=True)
  write_each({out: functools.partial(workdirs.write_atomic, out, (json.dumps(record, indent=2) + "\n").encode()),
              **plots(results, evals, thresholds, out, FLAGS.split, model.keypoint_set)})


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
