"""Every command the README, docs and notebooks show runs as written: each flag of
`python train.py`, `python eval.py` and `python -m <module>` exists (and `--config.x.y`
overrides name real config fields)."""

import functools
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from test_cli import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(glob.glob("docs/*.md", root_dir=REPO)), "benchmarks/README.md",
        *sorted(glob.glob("notebooks/*.ipynb", root_dir=REPO))]
COMMAND = re.compile(r"^(?:taskset -c \d+ )?python (train\.py|eval\.py|-m [\w.]+)(.*)$")


def doc_commands():
  """(doc, command line) for each python command in a fenced code block, continuations joined."""
  found = []
  for doc in DOCS:
    with open(os.path.join(REPO, doc)) as f:
      text = f.read()
    if doc.endswith(".ipynb"):  # a notebook's commands are in its Markdown cells
      text = "\n".join("".join(c["source"]) + "\n" for c in json.loads(text)["cells"]
                       if c["cell_type"] == "markdown")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    for block in blocks:
      for line in block.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if COMMAND.match(line):
          found.append((doc, line))
  return found


def _absl_flags(script: str) -> set[str]:
  with open(os.path.join(REPO, script)) as f:
    return set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", f.read()))


# Every documented module's --help, read in one interpreter (one import of JAX for all of them,
# not one a module): each runs as `python -m MODULE --help` would (runpy, as __main__).
_HELP_SCRIPT = """
import contextlib, io, json, runpy, sys, traceback
helps = {}
for module in sys.argv[1:]:
  out, code = io.StringIO(), None
  sys.argv = [module, "--help"]
  with contextlib.redirect_stdout(out):
    try:
      runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
      code = e.code
    except Exception:  # this module's test fails with it; the others still read theirs
      code = traceback.format_exc()
  helps[module] = [code, out.getvalue()]
print(json.dumps(helps))
"""


@functools.cache
def _helps() -> dict[str, list]:
  modules = sorted({p.split()[1] for p in (COMMAND.match(c).group(1) for _, c in COMMANDS)
                    if p.startswith("-m ")})
  out = subprocess.run([sys.executable, "-c", _HELP_SCRIPT, *modules], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, f"--help of {modules} failed:\n{out.stderr[-2000:]}"
  return json.loads(out.stdout.splitlines()[-1])


def _module_help(module: str) -> str:
  code, text = _helps()[module]
  assert code in (0, None), f"python -m {module} --help: {code}\n{text[-2000:]}"
  return text


def _config_path_exists(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if part not in node:
      return False
    node = node[part]
  return True


COMMANDS = doc_commands()


def test_the_docs_show_commands():
  assert len(COMMANDS) > 20
  assert any("python eval.py" in c for _, c in COMMANDS)


@pytest.mark.parametrize("doc,line", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_each_flag_of_each_documented_command_exists(doc, line):
  program, rest = COMMAND.match(line).groups()
  args = [a for a in shlex.split(rest.replace("...", "")) if a.startswith("--")]
  flags = {a[2:].split("=")[0] for a in args}
  if program in ("train.py", "eval.py"):
    known = _absl_flags(program)
    config_file = next((a.split("=", 1)[1] if "=" in a else rest.split()[
        rest.split().index(a) + 1] for a in args if a.split("=")[0] == "--config"), None)
    for flag in sorted(flags):
      if flag.startswith("config."):
        assert config_file, f"{doc}: {line!r} overrides {flag} without --config"
        config = load_config(os.path.join(REPO, config_file.split(":")[0]))
        assert _config_path_exists(config, flag[len("config."):]), (
            f"{doc}: {line!r}: {flag} is not a field of {config_file}")
      else:
        name = flag[2:] if flag.startswith("no") and flag[2:] in known else flag
        assert name in known, f"{doc}: {line!r}: {program} has no flag --{flag}"
  else:
    text = _module_help(program.split()[1])
    for flag in sorted(flags):
      assert re.search(rf"--{re.escape(flag)}\b", text), (
          f"{doc}: {line!r}: {program} has no flag --{flag}")
