"""Every path a run reads or writes goes through `synthesizer_jax.paths` (etils.epath), so a
workdir or data dir in a bucket (gs://...) works as a local one does (issue 28).

This test reads the source of the modules on a run's path and fails on the calls that only
work on local disk: `os.path.abspath / isfile / isdir / exists / getsize`, the builtin
`open(`, `os.makedirs / listdir / remove / replace / rename / unlink / stat / walk / scandir /
mkdir / rmdir`, `glob.glob`, `shutil.` and `np.load(<path>)` (`np.load(io.BytesIO(...))` of
bytes read through epath is fine). Strings and comments are not code and are skipped.

Exceptions are explicit, in ALLOWED below, each with the reason: a local temporary or
staging directory, the corpus preparation (which builds a data dir on local disk), or the
path type itself. Out of scope: the corpus builders data/{corpora,debian,sword,rlazy,
personachat,build}.py (apt packages unpacked and prepared on local disk), data/tasks.py and
data/pipeline.py (seqio reads prepared corpora from local disk; a bucket data dir is refused
at run start, records.check_bucket_data).
"""

import io
import os
import re
import tokenize

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = [f"synthesizer_jax/{m}.py" for m in (
    "loop", "run", "checkpointing", "loading", "finetune", "logging_utils", "evaluation",
    "workdir_lock", "text", "viz", "paths")] + [f"synthesizer_jax/data/{m}.py" for m in (
        "records", "cache", "cache_copy", "grain_pipeline", "registry", "vocab")]

LOCAL_ONLY = re.compile(
    r"os\.path\.(abspath|isfile|isdir|exists|getsize)\("
    r"|(?<![\w.])open\("
    r"|os\.(makedirs|listdir|remove|replace|rename|unlink|stat|walk|scandir|mkdir|rmdir)\("
    r"|glob\.glob\("
    r"|shutil\."
    r"|np\.load\((?!io\.BytesIO\()")

# (module, the call's code as written, how many times, why it is local).
ALLOWED = [
    ("synthesizer_jax/paths.py", "os.path.abspath(text)", 1,
     "the path type itself: a local path made absolute (URLs are kept)"),
    ("synthesizer_jax/data/registry.py", "os.path.abspath(__file__)", 1,
     "the module's own file, to find the repository's default data/ directory"),
    ("synthesizer_jax/logging_utils.py", "os.listdir(self._staging)", 1,
     "TensorBoard writes its event files into a local temporary directory, then uploaded"),
    ("synthesizer_jax/logging_utils.py", "shutil.rmtree(self._staging", 1,
     "that local temporary directory removed"),
    ("synthesizer_jax/data/vocab.py", "os.makedirs(os.path.dirname(path)", 1,
     "train_vocab: corpus preparation writes the vocabulary into a local data dir"),
    ("synthesizer_jax/data/vocab.py", "open(corpus", 1,
     "train_vocab: the training text, in a local temporary directory"),
    ("synthesizer_jax/data/vocab.py", "os.replace(prefix", 2,
     "train_vocab: the trained model moved from the temporary directory (preparation)"),
]


def code_lines(source: str) -> dict[int, str]:
  """{line number: the line's code}, strings and comments blanked out."""
  lines = source.splitlines()
  out = {i + 1: list(line) for i, line in enumerate(lines)}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type in (tokenize.STRING, tokenize.COMMENT) or tok.type == getattr(
        tokenize, "FSTRING_MIDDLE", -1):
      (r0, c0), (r1, c1) = tok.start, tok.end
      for r in range(r0, r1 + 1):
        start = c0 if r == r0 else 0
        end = c1 if r == r1 else len(out[r])
        out[r][start:end] = " " * (end - start)
  return {i: "".join(chars) for i, chars in out.items()}


def violations(module: str, source: str, allowed=ALLOWED) -> list[str]:
  """The local-only calls in `source` that ALLOWED does not name; also an ALLOWED entry
  whose count no longer matches (stale exceptions are not left behind)."""
  found, used, original = [], {}, source.splitlines()
  for number, line in code_lines(source).items():
    for match in LOCAL_ONLY.finditer(line):
      rest = line[match.start():]
      entry = next((a for a in allowed if a[0] == module and rest.startswith(a[1])), None)
      if entry is None:
        found.append(f"{module}:{number}: {original[number - 1].strip()}")
      else:
        used[entry[:2]] = used.get(entry[:2], 0) + 1
  for mod, code, count, _ in allowed:
    if mod == module and used.get((mod, code), 0) != count:
      found.append(f"{module}: ALLOWED {code!r} expected {count} time(s), found "
                   f"{used.get((mod, code), 0)}: update ALLOWED")
  return found


@pytest.mark.parametrize("module", MODULES)
def test_run_path_modules_use_one_path_type(module):
  with open(os.path.join(REPO, module)) as f:  # a test reading the repository
    source = f.read()
  assert violations(module, source) == [], (
      "use synthesizer_jax.paths (as_path(...).exists() / .open() / .mkdir() / .iterdir() / "
      ".stat().length / .read_bytes() ...) so a gs:// workdir or data dir works; a truly "
      "local path (temporary directory, corpus preparation) goes into ALLOWED with its reason")


REINTRODUCED = [
    "work = os.path.abspath(workdir)",
    "with open(os.path.join(workdir, 'config.json')) as f:",
    "os.makedirs(workdir, exist_ok=True)",
    "names = os.listdir(data_dir)",
    "if os.path.isfile(path):",
    "if os.path.isdir(root):",
    "if os.path.exists(manifest):",
    "size = os.path.getsize(shard)",
    "shutil.rmtree(partial)",
    "lengths = np.load(path)",
    "lengths = np.load(os.path.join(root, LENGTHS))",
    "for p in glob.glob(workdir + '/*'):",
]


@pytest.mark.parametrize("line", REINTRODUCED)
def test_it_fails_on_a_local_only_call(line):
  source = f"def f(workdir, data_dir, path, root, manifest, shard, partial):\n  {line}\n"
  assert violations("synthesizer_jax/run.py", source) == [
      f"synthesizer_jax/run.py:2: {line}"]


def test_what_is_not_a_local_only_call_passes():
  source = '\n'.join([
      '"""Never `os.path` / `open()`: strings are not code."""',
      "x = paths.as_path(p).open('rb')  # os.path.exists(p) in a comment",
      "lengths = np.load(io.BytesIO(raw))",
      "y = f\"{open}(\"",
      "z = os.path.join(a, b)",
  ]) + "\n"
  assert violations("synthesizer_jax/run.py", source) == []
  # An exception counts: one more use of an allowed call is a violation.
  allowed = [("m.py", "shutil.rmtree(tmp", 1, "a local temporary directory")]
  assert violations("m.py", "shutil.rmtree(tmp)\n", allowed) == []
  assert len(violations("m.py", "shutil.rmtree(tmp)\nshutil.rmtree(tmp)\n", allowed)) == 1
  assert len(violations("m.py", "x = 1\n", allowed)) == 1  # a stale exception
