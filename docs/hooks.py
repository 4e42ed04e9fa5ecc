"""MkDocs hook: the site's home page is the README (its links into docs/ made relative), and the command-line
reference page (cli.md) is generated from the commands' own flags.

Each command's flags are defined in a process of their own (absl's flags are global), which prints the command's
docstring and every flag it defines (name, default, choices, help) as JSON.
"""

import concurrent.futures
import json
import pathlib
import subprocess
import sys

from mkdocs.structure.files import File

DESCRIBE = """
import json, sys
from absl import flags
from dapose_jax.commands import cli
module = __import__(cli.COMMANDS[sys.argv[1]][0], fromlist=["define_flags"])
before = set(flags.FLAGS)
module.define_flags()
described = []
for name in sorted(set(flags.FLAGS) - before):
  flag = flags.FLAGS[name]
  described.append({"name": name, "help": flag.help, "default": flag.default_as_str, "boolean": flag.boolean,
                    "choices": sorted(getattr(flag.parser, "enum_values", None) or [])})
print(json.dumps({"doc": module.__doc__, "flags": described}))
"""


def _describe(command):
  done = subprocess.run([sys.executable, "-c", DESCRIBE, command], capture_output=True, text=True, check=True)
  return json.loads(done.stdout)


def _markdown_of_docstring(doc):
  """Docstring paragraphs as markdown: ``x`` as `x`, each run of lines indented by two spaces as a code block."""
  out, in_code = [], False
  for line in doc.strip().replace("``", "`").split("\n"):
    code = line.startswith("  ") and line.strip() != ""
    if code != in_code:
      out += ["", "```"] if code else ["```", ""]
      in_code = code
    out.append(line[2:] if code else line)
  return "\n".join(out + (["```"] if in_code else []))


def _flag_row(flag):
  name = f"`--[no]{flag['name']}`" if flag["boolean"] else f"`--{flag['name']}`"
  default = flag["default"].strip("'") if flag["default"] else ""
  default = f"`{default}`" if default not in ("", "None") else "—"
  choices = f" One of {', '.join(f'`{c}`' for c in flag['choices'])}." if flag["choices"] else ""
  text = " ".join(flag["help"].split()).replace("|", "\\|") + choices
  return f"| {name} | {default} | {text} |"


def cli_reference():
  from dapose_jax.commands import cli

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    described = dict(zip(cli.COMMANDS, pool.map(_describe, cli.COMMANDS)))
  parts = ["# Command-line reference", "",
           "Generated from the commands' own flags when these pages are built. Every command is "
           "`dapose-jax COMMAND` (or `python -m dapose_jax COMMAND`); `dapose-jax COMMAND --help` prints the same "
           "(without loading JAX: well under a second), and `--config.KEY=VALUE` overrides any key of the config a command reads.", ""]
  for command, (_, summary) in cli.COMMANDS.items():
    parts += [f"## `dapose-jax {command}`", "", f"*{summary}.*", "", _markdown_of_docstring(described[command]["doc"]),
              "", "| flag | default | what it does |", "|---|---|---|",
              *(_flag_row(flag) for flag in described[command]["flags"]), ""]
  return "\n".join(parts)


def home_page():
  readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
  return readme.replace("](docs/)", "](index.md)").replace("](docs/", "](")


def on_files(files, config):
  files.append(File.generated(config, "index.md", content=home_page()))
  files.append(File.generated(config, "cli.md", content=cli_reference()))
  return files
