"""An in-memory stand-in for `synthesizer_jax.data` (no TensorFlow), for training tests.

Same functions and batch features as the real module; the data are tiny learnable
patterns, deterministic in (seed, shard, batch index), so resuming at `start_batch`
gives exactly the batches an uninterrupted run would have seen.
"""

import dataclasses

import numpy as np

VOCAB = 32
TASKS = ("fake_lm", "fake_encdec", "fake_classify")
_SHAPES = {"fake_lm": ("lm", "perplexity"), "fake_encdec": ("encdec", "bleu"),
           "fake_classify": ("classifier", "glue")}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  name: str
  shape: str
  metric: str
  vocab_path: str
  num_classes: object
  feature_keys: tuple


def task_info(name, data_dir=None):
  if name not in TASKS:
    raise ValueError(f"Unknown task {name!r}")
  shape, metric = _SHAPES[name]
  keys = {"lm": ("targets",), "encdec": ("inputs", "targets"), "classifier": ("inputs",)}[shape]
  return TaskInfo(name, shape, metric, f"{data_dir}/vocab/fake.model",
                  2 if shape == "classifier" else None, keys)


class Vocab:
  """Letters a.. map to ids 3..; 0 pad, 1 EOS, 2 UNK."""

  vocab_size = VOCAB
  eos_id = 1

  def encode(self, text):
    return [3 + (ord(c) - ord("a")) % (VOCAB - 3) for c in text]

  def decode(self, ids):
    return "".join(chr(ord("a") + i - 3) for i in ids if i >= 3)


def get_vocabulary(name, data_dir=None):
  return Vocab()


def _sequences(rng, n, length):
  """Counting sequences with a random start and stride (learnable in a few steps)."""
  start = rng.integers(3, VOCAB, (n, 1))
  stride = rng.integers(1, 3, (n, 1))
  return (3 + (start - 3 + stride * np.arange(length)) % (VOCAB - 3)).astype(np.int32)


def _shift(targets):
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


def make_batch(name, rng, batch_size, lengths, pack):
  shape = _SHAPES[name][0]
  if shape == "classifier":
    x = _sequences(rng, batch_size, lengths["inputs"])
    x[:, lengths["inputs"] - 2:] = 0  # some padding
    return {"encoder_input_tokens": x, "targets": (x[:, 0] > VOCAB // 2).astype(np.int32)}
  tl = lengths["targets"]
  tgt = _sequences(rng, batch_size, tl)
  tgt[:, tl - 3] = 1  # EOS then padding
  tgt[:, tl - 2:] = 0
  batch = {"decoder_target_tokens": tgt, "decoder_input_tokens": _shift(tgt),
           "decoder_loss_weights": (tgt > 0).astype(np.int32)}
  if pack:
    seg = np.ones_like(tgt)
    seg[:, tl // 2:] = 2
    seg[tgt == 0] = 0
    inp = _shift(tgt)
    inp[:, tl // 2] = 0  # each packed segment starts from 0
    pos = np.concatenate([np.arange(tl // 2), np.arange(tl - tl // 2)])
    batch.update(decoder_input_tokens=inp, decoder_segment_ids=seg,
                 decoder_positions=np.broadcast_to(pos, tgt.shape).astype(np.int32) * (seg > 0))
  if shape == "encdec":
    src = tgt[:, ::-1][:, : lengths["inputs"]].copy()
    src = np.where(src > 1, src, 0)
    batch["encoder_input_tokens"] = np.ascontiguousarray(src)
    if pack:
      batch["encoder_segment_ids"] = (src > 0).astype(np.int32)
      batch["encoder_positions"] = np.broadcast_to(
          np.arange(src.shape[1]), src.shape).astype(np.int32) * (src > 0)
  return batch


def get_dataset(name, split, *, feature_lengths, batch_size, pack=True, shuffle=True, seed=0,
                data_dir=None, shard_index=0, num_shards=1, start_batch=0, repeat=True):
  task_info(name)
  n_eval = 3
  offset = 0 if split == "train" else 10_000

  def gen():
    i = start_batch
    while repeat or i < n_eval:
      rng = np.random.default_rng([seed, shard_index, num_shards, offset + i])
      yield make_batch(name, rng, batch_size, feature_lengths, pack)
      i += 1

  return gen()
