"""PersonaChat from local files in ParlAI's `*_self_original.txt` format (TFDS has none).

Put `train_self_original.txt` and `valid_self_original.txt` (and optionally
`test_self_original.txt`) in `<data_dir>/personachat/raw/`. Each line starts with a turn
number that restarts at 1 for each dialogue:

    1 your persona: i like to ski.
    2 your persona: i have a dog.
    3 hi , how are you ?<TAB>i am good , just back from skiing .<TAB><TAB>cand 1|cand 2|...

Persona lines give the speaker's persona; other lines are the partner's utterance, a tab,
then the response to learn (then optional reward and candidates, ignored). Each turn
becomes one example: inputs = "persona: ... history: <last turns> <utterance>", targets =
the response. Without a test file, the validation dialogues are split in two by a hash.
"""

from __future__ import annotations

import os
import re

from synthesizer_jax.data.corpora import assign_split, clean
from synthesizer_jax.data.registry import DataError

HISTORY_TURNS = 4
_TURN = re.compile(r"^(\d+) (.*)$")


def parse(text: str) -> list[list[tuple]]:
  """Dialogues as lists of (inputs, targets) examples."""
  dialogues, persona, history, examples = [], [], [], []
  for line in text.splitlines():
    m = _TURN.match(line)
    if not m:
      continue
    number, body = int(m.group(1)), m.group(2)
    if number == 1 and (persona or examples):
      dialogues.append(examples)
      persona, history, examples = [], [], []
    if body.startswith("your persona:"):
      persona.append(clean(body[len("your persona:"):]))
      continue
    fields = body.split("\t")
    if len(fields) < 2:
      continue
    utterance, response = clean(fields[0]), clean(fields[1])
    context = history[-(HISTORY_TURNS - 1):] + [utterance] if HISTORY_TURNS > 1 else [utterance]
    inputs = f"persona: {' '.join(persona)} history: {' | '.join(context)}"
    examples.append((inputs, response))
    history += [utterance, response]
  if examples:
    dialogues.append(examples)
  return dialogues


def split_rows(raw_dir: str) -> dict[str, list[tuple]]:
  """(key, inputs, targets) rows per split from the ParlAI files in `raw_dir`."""
  files = {s: os.path.join(raw_dir, f"{s}_self_original.txt") for s in ("train", "valid", "test")}
  for s in ("train", "valid"):
    if not os.path.exists(files[s]):
      raise DataError(f"PersonaChat needs {files[s]} (ParlAI format, see "
                      "synthesizer_jax/data/personachat.py and docs/data.md).")
  out = {"train": [], "validation": [], "test": []}
  for source, path in files.items():
    if not os.path.exists(path):
      continue
    with open(path, encoding="utf-8") as f:
      dialogues = parse(f.read())
    for i, dialogue in enumerate(dialogues):
      key = f"{source}:{i}"
      if source == "train":
        split = "train"
      elif source == "test":
        split = "test"
      elif os.path.exists(files["test"]):
        split = "validation"
      else:
        split = "test" if assign_split(key, 500, 0) == "train" else "validation"
      out[split].extend((key, a, b) for a, b in dialogue)
  return out
