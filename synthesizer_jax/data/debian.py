"""Fetching real text from Debian: package files and the apt description indexes.

Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a cache
under the data directory: nothing is installed system-wide and no root is needed for that
step. The description translations (DDTP) come from apt's own index files, which
`apt-get update` fetches only when asked for the languages (the Docker images turn them off).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile

from synthesizer_jax.data.registry import DataError

APT_LISTS = "/var/lib/apt/lists"
APT_CONF_PARTS = "/etc/apt/apt.conf.d"
APT_UPDATE_CMD = ("apt-get update -o Acquire::Languages::=en -o Acquire::Languages::=de "
                  "-o Acquire::Languages::=fr")


def _require_tool(tool: str, package: str) -> str:
  path = shutil.which(tool) or (tool if os.path.exists(tool) else None)
  if not path:
    raise DataError(f"`{tool}` not found: this builder needs Debian's apt tools "
                    f"(package {package}); run it on a Debian/Ubuntu machine.")
  return path


def apt_lists_present(lists_dir: str = APT_LISTS) -> bool:
  """Whether apt has package lists (a fresh Docker image has none until `apt-get update`)."""
  return bool(glob.glob(os.path.join(lists_dir, "*_Packages*")))


def update_apt_lists(lists_dir: str = APT_LISTS) -> None:
  """Runs APT_UPDATE_CMD when apt lacks package lists or the en/de/fr description indexes."""
  have = [glob.glob(os.path.join(lists_dir, f"*_main_i18n_Translation-{lang}*"))
          for lang in ("en", "de", "fr")]
  if apt_lists_present(lists_dir) and all(have):
    return
  _require_tool("apt-get", "apt")
  if os.geteuid() != 0:
    raise DataError(f"apt's lists need refreshing, which needs root. Run:\n  sudo {APT_UPDATE_CMD}")
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ)
    config = _config_without_languages_none(tmp)
    if config:
      env["APT_CONFIG"] = config
    subprocess.run(APT_UPDATE_CMD.split(), check=True, env=env)


def _config_without_languages_none(tmp: str, parts: str | None = None) -> str | None:
  """An APT_CONFIG file reading `parts` without the files that set `Acquire::Languages
  "none"` (Docker's `docker-no-languages`), which `-o Acquire::Languages::=en` cannot undo
  (the list then holds "none", and "none" wins). None when no part sets it."""
  files = sorted(glob.glob(os.path.join(parts or APT_CONF_PARTS, "*")))
  drop = [f for f in files if os.path.isfile(f) and _sets_languages_none(f)]
  if not drop:
    return None
  kept = os.path.join(tmp, "apt.conf.d")
  os.makedirs(kept)
  for f in files:
    if f not in drop and os.path.isfile(f):
      shutil.copy(f, kept)
  config = os.path.join(tmp, "apt.conf")
  with open(config, "w") as f:
    f.write(f'Dir::Etc::Parts "{kept}";\n')
  return config


def _sets_languages_none(path: str) -> bool:
  try:
    with open(path, errors="replace") as f:
      text = f.read()
  except OSError:
    return False
  return bool(re.search(r'^\s*Acquire::Languages\s+"none"', text, re.MULTILINE))


def fetch_package(package: str, cache_dir: str) -> str:
  """Downloads and unpacks a Debian package under `cache_dir`; returns its root directory.

  Idempotent: a package already unpacked (marked by a `.done` file) is not fetched again.
  """
  root = os.path.join(cache_dir, "root", package)
  if os.path.exists(os.path.join(root, ".done")):
    return root
  _require_tool("apt-get", "apt")
  _require_tool("dpkg-deb", "dpkg")
  if not apt_lists_present():
    raise DataError(f"apt has no package lists, so Debian package {package!r} cannot be "
                    f"fetched. Run (as root):\n  {APT_UPDATE_CMD}")
  debs = os.path.join(cache_dir, "debs")
  os.makedirs(debs, exist_ok=True)
  before = set(glob.glob(os.path.join(debs, f"{package}_*.deb")))
  if not before:
    proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                          text=True)
    if proc.returncode != 0:
      raise DataError(f"`apt-get download {package}` failed:\n{proc.stderr.strip()}\n"
                      f"If apt cannot find the package, refresh its lists (as root):\n"
                      f"  {APT_UPDATE_CMD}")
  deb = sorted(glob.glob(os.path.join(debs, f"{package}_*.deb")))[-1]
  tmp = root + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
  shutil.rmtree(root, ignore_errors=True)
  os.rename(tmp, root)
  with open(os.path.join(root, ".done"), "w") as f:
    f.write(os.path.basename(deb) + "\n")
  return root


def translation_index(lang: str, lists_dir: str = APT_LISTS) -> str:
  """The decompressed text of apt's bookworm/main `Translation-<lang>` index."""
  pattern = os.path.join(lists_dir, f"*_main_i18n_Translation-{lang}*")
  files = sorted(f for f in glob.glob(pattern) if "-security_" not in f and "-updates_" not in f)
  if not files:
    raise DataError(f"apt's Translation-{lang} index is missing from {lists_dir} (Debian "
                    f"images skip description translations). Run as root `python -m "
                    f"synthesizer_jax.data.prepare --apt_update ...`, which runs\n  "
                    f"{APT_UPDATE_CMD}\nwith the apt config parts that set Acquire::Languages "
                    f"\"none\" (Docker's docker-no-languages) left out.")
  path = files[0]
  if path.endswith((".lz4", ".gz", ".xz", ".zst")):
    helper = _require_tool("/usr/lib/apt/apt-helper", "apt")
    data = subprocess.run([helper, "cat-file", path], capture_output=True, check=True).stdout
  else:
    with open(path, "rb") as f:
      data = f.read()
  return data.decode("utf-8", "replace")


def parse_descriptions(text: str, lang: str) -> dict[str, tuple[str, str, list[str]]]:
  """Parses a Translation index into {description md5: (package, synopsis, paragraphs)}.

  Long descriptions are deb822 continuation lines; a line holding only " ." separates
  paragraphs. Lines inside a paragraph are joined with spaces.
  """
  records = {}
  for block in text.split("\n\n"):
    md5 = synopsis = package = None
    paragraphs, current = [], []
    for line in block.split("\n"):
      if line.startswith("Package:"):
        package = line.split(":", 1)[1].strip()
      elif line.startswith("Description-md5:"):
        md5 = line.split(":", 1)[1].strip()
      elif line.startswith(f"Description-{lang}:"):
        synopsis = line.split(":", 1)[1].strip()
      elif line.startswith(" ") and synopsis is not None:
        if line.strip() == ".":
          if current:
            paragraphs.append(" ".join(current))
          current = []
        else:
          current.append(line.strip())
    if current:
      paragraphs.append(" ".join(current))
    if md5 and synopsis:
      records[md5] = (package or "", synopsis, paragraphs)
  return records


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜÀ-Ý\"“«])")


def split_sentences(paragraph: str) -> list[str]:
  """Splits a paragraph after . ! ? followed by a capitalised word (good enough for DDTP)."""
  return [s for s in _SENTENCE_END.split(paragraph) if s]


def ddtp_pairs(en: dict, other: dict) -> list[tuple[str, str, str]]:
  """Aligned (group key, English, translation) pairs from two parsed Translation indexes.

  Synopses pair directly. Long descriptions pair paragraph by paragraph when both sides
  have as many paragraphs, then sentence by sentence when the sentence counts match too
  (else the paragraph pair is kept whole). The group key is the description md5, so all
  pairs of one description land in the same split. Deduplicated on the English side.
  """
  out, seen = [], set()

  def add(key, a, b):
    if a and b and a not in seen and "\t" not in a + b:
      seen.add(a)
      out.append((key, a, b))

  for md5 in sorted(other):
    if md5 not in en:
      continue
    _, en_syn, en_par = en[md5]
    _, tr_syn, tr_par = other[md5]
    add(md5, en_syn, tr_syn)
    if len(en_par) != len(tr_par):
      continue
    for a, b in zip(en_par, tr_par, strict=False):
      sa, sb = split_sentences(a), split_sentences(b)
      if len(sa) == len(sb):
        for x, y in zip(sa, sb, strict=False):
          add(md5, x, y)
      else:
        add(md5, a, b)
  return out
