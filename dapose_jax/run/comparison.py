"""Finished runs side by side, seeds of one configuration averaged: their results (``dapose-jax table``) and their
logged curves (``dapose-jax plot``).

Runs are grouped by their recorded config (``config.json``) without ``seed``; a value that names a file inside
the run's own folder (a stage's ``pretrained``, the style network) counts as the same in every run. A group is
labelled by the keys in which the groups differ (``method=regda``), or by the first run's folder name when one
group holds them all. A table row is one group and one evaluator of ``results.json`` (``final``: the last
evaluation; ``best``: the one ``config.select_on`` selected): per key the mean ± the population standard deviation
over the group's seeds. A curve is one series of ``metrics.jsonl`` (a train scalar such as ``loss``, or an
evaluation value as EVALUATOR/KEY, e.g. ``target/all``) per group: its mean and standard deviation over the seeds
at the steps every seed logged.
"""

import json
import pathlib

import numpy as np

from dapose_jax import errors
from dapose_jax.config import defaults
from dapose_jax.storage import workdirs

METRICS = "metrics.jsonl"


def read_run(path):
  """(recorded config leaves {KEY: value}, results.json) of a finished run folder."""
  path = pathlib.Path(path).expanduser().resolve()
  results, config = path / workdirs.RESULTS, path / workdirs.CONFIG
  for file in (config, results):
    if not file.is_file():
      raise errors.MissingInputError(f"{path}: no {file.name}; give finished run folders (a run writes "
                                     f"{workdirs.RESULTS} when it ends)")
  fix = "give finished run folders whose files are intact"
  recorded = workdirs.read_json(config, "recorded config (the config.json a run writes)", fix)
  leaves = {key: _relative(value, path) for key, value in defaults.leaves(recorded)}
  return leaves, workdirs.read_json(results, f"{workdirs.RESULTS} of a finished run", fix)


def _relative(value, run):
  text = json.dumps(value)
  return json.loads(text.replace(json.dumps(str(run))[1:-1], "RUN")) if str(run) in text else value


def groups(paths):
  """[(label, [run folder of each seed])] of the finished run folders ``paths``, in the order groups first appear."""
  keyed = {}
  for path in map(pathlib.Path, paths):
    leaves, _ = read_run(path)
    key = tuple(sorted((k, json.dumps(v)) for k, v in leaves.items() if k != "config.seed"))
    keyed.setdefault(key, []).append((path, leaves))
  configs = [dict(key) for key in keyed]
  differing = [k for k in sorted({k for c in configs for k in c}) if len({c.get(k) for c in configs}) > 1]
  out = []
  for members in keyed.values():
    leaves = members[0][1]
    label = ", ".join(f"{k.removeprefix('config.')}={leaves.get(k)}" for k in differing) or members[0][0].name
    out.append((label, [path for path, _ in members]))
  return out


def rows(grouped, which="final"):
  """[{"group", "evaluator", "seeds", "keys": {key: (mean, std)}}] of ``groups``' output at ``which`` (final or
  best)."""
  if which not in ("final", "best"):
    raise errors.ConfigError(f"which={which!r}; expected 'final' or 'best'")
  out = []
  for label, folders in grouped:
    results = [json.loads((folder / workdirs.RESULTS).read_text()) for folder in folders]  # read_run checked them
    for evaluator in [name for name, values in results[0][which].items() if isinstance(values, dict)]:
      keys = list(results[0][which][evaluator])
      values = np.array([[r[which][evaluator][k] for k in keys] for r in results], np.float64)
      out.append({"group": label, "evaluator": evaluator, "seeds": len(results),
                  "keys": {k: (float(m), float(s)) for k, m, s in zip(keys, values.mean(0), values.std(0))}})
  return out


def markdown(table):
  """The rows as markdown tables, one per set of keys (evaluators with the same keys share one)."""
  blocks, by_keys = [], {}
  for row in table:
    by_keys.setdefault(tuple(row["keys"]), []).append(row)
  for keys, members in by_keys.items():
    lines = ["| group | evaluator | seeds | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    lines += [f"| {r['group']} | {r['evaluator']} | {r['seeds']} | " +
              " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in r["keys"].values()) + " |" for r in members]
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def csv(table):
  """One line per group, evaluator and key: group,evaluator,key,seeds,mean,std."""
  lines = ["group,evaluator,key,seeds,mean,std"]
  for r in table:
    group = '"' + r["group"].replace('"', '""') + '"'
    lines += [f"{group},{r['evaluator']},{k},{r['seeds']},{m:.6g},{s:.6g}" for k, (m, s) in r["keys"].items()]
  return "\n".join(lines)


def read_metrics(path):
  """{series: {step: value}} of a run's ``metrics.jsonl``: each train scalar by its name (``loss``, ``lr_...``) and
  each evaluation value as EVALUATOR/KEY (``target/all``); a step logged twice (a resumed run) keeps its last."""
  file = pathlib.Path(path).expanduser() / METRICS
  if not file.is_file():
    raise errors.MissingInputError(f"{file}: no such file; give run folders (a run logs {METRICS} as it trains)")
  series = {}
  for number, line in enumerate(file.read_bytes().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:  # undecodable bytes or text that is no JSON
      record = None
    if not isinstance(record, dict):
      raise errors.CorruptInputError(f"{file}: line {number} is not a JSON record {line[:40]!r}; delete that line (a "
                                     "run killed while writing leaves one, which resuming it drops)")
    step = record.get("step")
    for name, value in record.items():
      if isinstance(value, dict):
        for key, v in value.items():
          if isinstance(v, (int, float)):
            series.setdefault(f"{name}/{key}", {})[step] = float(v)
      elif name not in ("step", "kind") and isinstance(value, (int, float)):
        series.setdefault(name, {})[step] = float(value)
  return series


def default_series(series):
  """``loss``, the first learning rate and every evaluator's ``all``, of those ``series`` has."""
  lr = sorted(name for name in series if name.startswith("lr"))[:1]
  return [name for name in ("loss", *lr) if name in series] + sorted(name for name in series if name.endswith("/all"))


def curves(grouped, names=None):
  """{series: {group: (steps, mean, std)}} of ``groups``' output; ``names``: the series (default:
  ``default_series`` of the first run)."""
  logged = {label: [read_metrics(folder) for folder in folders] for label, folders in grouped}
  names = names or default_series(next(iter(logged.values()))[0])
  out = {}
  for name in names:
    for (label, folders), runs in zip(grouped, logged.values()):
      missing = [str(folder) for folder, run in zip(folders, runs) if name not in run]
      if missing:
        raise errors.ConfigError(f"series {name!r} is not in the {METRICS} of {', '.join(missing)}; it has "
                                 f"{', '.join(sorted(runs[0]))}")
      steps = sorted(set.intersection(*(set(run[name]) for run in runs)))
      values = np.array([[run[name][s] for s in steps] for run in runs], np.float64)
      out.setdefault(name, {})[label] = (np.array(steps, np.float64), values.mean(0), values.std(0))
  return out
