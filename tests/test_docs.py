"""The documentation: the site builds with ``mkdocs build --strict`` (its CLI page generated from the commands' flags,
its API page from the docstrings), every Python block of the README and docs/ runs on a trained run, and every
command line in them names a command, only flags that command has, and a config (with its overrides) that loads."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from dapose_jax.commands import cli
from dapose_jax.config import files
from tests.test_train import tiny_run

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:.*?\s)?(?:\.venv/bin/)?(?:dapose-jax|python3? -m dapose_jax(\.main)?)(?=\s)(.*)$")
PLACEHOLDER = re.compile(r"<|\b(RUN|NAME)\b")


def code_blocks(page, language=r"[a-z]*"):
  return re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)


def command_lines():
  """(page, command, argv, names of the flags in optional [...] groups) of every command line in a code block."""
  found = []
  for page in PAGES:
    for block in code_blocks(page, r"(?:bash|sh|shell)?"):
      for line in block.replace("\\\n", " ").split("\n"):
        match = COMMAND.match(re.split(r"\s#\s|;|&", line)[0].strip())
        if not match or PLACEHOLDER.search(match.group(2)) or match.group(2).lstrip().startswith(("=", "COMMAND")):
          continue
        rest = match.group(2).replace("…", "").replace("...", "")
        optional = [token for group in re.findall(r"\[([^\[\]]*)\]", rest) for token in group.split()
                    if token.startswith("--")]
        argv = shlex.split(re.sub(r"\[[^\[\]]*\]", " ", rest))
        command = "train" if match.group(1) else argv.pop(0)
        found.append((page.name, command, argv, [token[2:].split("=")[0] for token in optional]))
  return found


CHECK = """
import json, os, sys
from absl import flags
from dapose_jax.commands import cli
module = __import__(cli.COMMANDS[sys.argv[1]][0], fromlist=["define_flags"])
module.define_flags()
if "checkpoint" in flags.FLAGS:  # a run's recorded --config is read by run.finished: import it once, not per fork
  from dapose_jax.run import finished  # noqa: F401
problems = []
for argv, optional in json.loads(sys.stdin.read()):
  for name in optional + [t[2:].split("=")[0] for t in argv if t.startswith("--")]:
    known = name in flags.FLAGS or name.startswith("config.") or (name[:2] == "no" and name[2:] in flags.FLAGS)
    if not known:
      problems.append(f"{argv}: no flag --{name}")
  read, write = os.pipe()
  if os.fork() == 0:  # each line parsed in a fresh copy of the flags: the config's override flags are per parse
    try:
      sys.argv = ["prog", *argv]  # ml_collections finds the --config.KEY overrides in sys.argv
      flags.FLAGS(sys.argv)
      if "config" in flags.FLAGS:
        flags.FLAGS.config.keys()
    except Exception as error:
      os.write(write, f"{argv}: {type(error).__name__}: {error}".encode())
    os._exit(0)
  os.close(write)
  problem = os.read(read, 1 << 16).decode()
  os.wait()
  problems += [problem] if problem else []
print(json.dumps(problems))
"""


def with_loadable_config(argv):
  """``argv`` with a --config that names a run's recorded config (absent here) replaced by the demo's."""
  out = list(argv)
  for i, token in enumerate(out):
    at = i + 1 if token == "--config" else i if token.startswith("--config=") else None
    if at is not None:
      try:
        files.resolve(out[at].removeprefix("--config="))
      except Exception:
        out[at] = "--config=demo:smoke" if at == i else "demo:smoke"
  return out


def test_every_documented_command_line_parses_with_its_commands_flags_and_config():
  lines = command_lines()
  by_command = {}
  for page, command, argv, optional in lines:
    assert command in cli.COMMANDS, f"{page}: no command {command!r} in {argv}"
    by_command.setdefault(command, []).append((with_loadable_config(argv), optional))
  assert {"train", "evaluate", "predict", "plot", "table", "compile", "import", "browse", "build"} <= set(by_command)
  assert len(lines) >= 20
  problems = []
  for command, cases in by_command.items():
    done = subprocess.run([sys.executable, "-c", CHECK, command], input=json.dumps(cases), capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    problems += [f"{command}: {problem}" for problem in json.loads(done.stdout)]
  assert not problems, "\n".join(problems)


def test_a_misspelt_flag_in_a_documented_line_would_be_caught():
  done = subprocess.run([sys.executable, "-c", CHECK, "predict"], capture_output=True, text=True, cwd=REPO,
                        input=json.dumps([[["--config=demo:smoke", "--checkpoint=x", "--kpt_treshold=0.3"], []]]))
  assert "no flag --kpt_treshold" in done.stdout


def test_every_python_block_runs_on_a_trained_run(monkeypatch, capsys):
  monkeypatch.chdir(REPO)
  blocks = [(page.name, block) for page in PAGES for block in code_blocks(page, "python")]
  assert {"README.md", "api.md"} <= {name for name, _ in blocks}
  namespaces = {}
  for name, block in blocks:
    code = re.sub(r"\"runs/\w+/best\"", repr(str(tiny_run() / "best")), block)
    exec(compile(code, name, "exec"), namespaces.setdefault(name, {}))  # noqa: S102
  api = namespaces["api.md"]
  assert api["picture"].shape == (512, 683, 3) and api["picture"].dtype == np.uint8 and len(api["results"]) == 2
  names = api["model"].keypoint_set.names
  assert capsys.readouterr().out.split("\n")[0].startswith("{" + repr(names[0]))  # the README's dict of keypoints


@pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import mkdocs, mkdocstrings"]).returncode,
                    reason="the docs extra (mkdocs, mkdocstrings) is not installed")
def test_the_site_builds_strictly_with_generated_cli_and_api_pages(tmp_path):
  done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)],
                        capture_output=True, text=True, cwd=REPO)
  assert done.returncode == 0, done.stderr[-3000:]
  cli_page = (tmp_path / "cli" / "index.html").read_text()
  for command in cli.COMMANDS:
    assert f"dapose-jax {command}</code>" in cli_page
  assert "--kpt_thr" in cli_page and "--max_batch" in cli_page
  api_page = (tmp_path / "api" / "index.html").read_text()
  assert "dapose_jax.load" in api_page and "PoseModel" in api_page and "restored with" in api_page
  assert "Unsupervised domain-adaptive" in (tmp_path / "index.html").read_text()
