"""T5's span-corruption objective in NumPy (Raffel et al. 2020, section 3.1.4), for
pre-training an EncoderDecoder; no TensorFlow, so the cached (Grain) path can use it too.

A document of `length` pieces is split into alternating clean and noise spans, clean first:
`round(length * noise_density)` noise pieces (at least 1, at most length - 1) in
`round(noise / mean_noise_span_length)` spans (at least 1), both counts partitioned into
spans uniformly at random. The inputs keep the clean pieces and put one sentinel where each
noise span was; the targets hold each noise span after its sentinel:

    pieces   a b c d e f g h         noise spans: "c d", "g"
    inputs   a b <S0> e f <S1> h
    targets  <S0> c d <S1> g

Sentinels are counted down from the last id of the vocabulary (<S0> = vocab_size - 1,
<S1> = vocab_size - 2, ...), as T5 does with its extra ids: the vocabulary must hold
`num_sentinels` ids above its real pieces (`check_sentinels`). EOS is appended by the
task's preprocessors after this, as in seqio.
`lengths_for(inputs_length)` is T5's `random_spans_helper`: how many raw pieces to cut so
that an example's inputs (with EOS) fill `inputs_length`, and how long its targets are then.
"""

from __future__ import annotations

import numpy as np

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def span_counts(length: int, noise_density: float = NOISE_DENSITY,
                mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
  """(noise pieces, noise spans) of a document of `length` pieces (length >= 2)."""
  if length < 2:
    raise ValueError(f"span corruption needs documents of at least 2 pieces, got {length}")
  if not 0.0 < noise_density < 1.0 or mean_noise_span_length < 1.0:
    raise ValueError(f"noise_density must be in (0, 1) and mean_noise_span_length >= 1; got "
                     f"{noise_density} and {mean_noise_span_length}")
  noise = min(max(int(round(length * noise_density)), 1), length - 1)
  spans = max(int(round(noise / mean_noise_span_length)), 1)
  return noise, spans


def _counts(length: int, noise_density: float, mean_noise_span_length: float
            ) -> tuple[int, int]:
  """(noise pieces, noise spans) as `noise_mask` lays them out."""
  noise, spans = span_counts(length, noise_density, mean_noise_span_length)
  return noise, min(spans, noise, length - noise)  # each span needs at least one piece


def _partition(rng: np.random.Generator, items: int, parts: int) -> np.ndarray:
  """`items` split into `parts` positive lengths, every split equally likely."""
  cuts = np.sort(rng.choice(items - 1, parts - 1, replace=False)) + 1 if parts > 1 else []
  return np.diff(np.concatenate([[0], cuts, [items]])).astype(np.int64)


def noise_mask(length: int, rng: np.random.Generator, noise_density: float = NOISE_DENSITY,
               mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
  """Boolean [length]: True on noise pieces; spans alternate clean, noise, clean, ..."""
  noise, spans = _counts(length, noise_density, mean_noise_span_length)
  noise_lengths = _partition(rng, noise, spans)
  clean_lengths = _partition(rng, length - noise, spans)
  runs = np.stack([clean_lengths, noise_lengths], axis=1).reshape(-1)
  return np.repeat(np.tile([False, True], spans), runs)


def corrupt(tokens: np.ndarray, mask: np.ndarray, vocab_size: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
  """(inputs, targets) of `tokens` with the noise spans of boolean `mask` (module docstring)."""
  tokens, mask = np.asarray(tokens), np.asarray(mask, bool)
  if tokens.shape != mask.shape or tokens.ndim != 1:
    raise ValueError(f"tokens {tokens.shape} and mask {mask.shape} must be one same-length row")
  starts = mask & ~np.concatenate([[False], mask[:-1]])
  sentinels = vocab_size - np.cumsum(starts)  # <S0> = vocab_size - 1, counted down
  inputs = np.where(starts, sentinels, tokens)[~mask | starts]
  # Targets: each noise span after its sentinel (np.insert puts a value before each index).
  noise_starts = starts[mask]
  targets = np.insert(tokens[mask], np.flatnonzero(noise_starts), sentinels[mask][noise_starts])
  dtype = tokens.dtype if np.issubdtype(tokens.dtype, np.integer) else np.int32
  return inputs.astype(dtype), targets.astype(dtype)


def span_corrupt(tokens: np.ndarray, vocab_size: int, rng: np.random.Generator,
                 noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) of one document, its spans drawn from `rng`."""
  mask = noise_mask(len(tokens), rng, noise_density, mean_noise_span_length)
  return corrupt(tokens, mask, vocab_size)


def corrupted_lengths(raw: np.ndarray, noise_density: float = NOISE_DENSITY,
                      mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
  """[E, 2] lengths of (inputs, targets), EOS included, of pieces of `raw` [E] pieces (>= 2):
  known before corrupting, so packing is planned on lengths alone."""
  table = {}
  for length in np.unique(raw).tolist():
    noise, spans = _counts(length, noise_density, mean_noise_span_length)
    table[length] = (length - noise + spans + 1, noise + spans + 1)
  return np.array([table[length] for length in np.asarray(raw).tolist()],
                  np.int64).reshape(-1, 2)


def example(tokens: np.ndarray, vocab_size: int, seed: tuple[int, ...], eos_id: int = 1
            ) -> dict[str, np.ndarray]:
  """{"inputs", "targets"} of one piece, EOS appended, its spans drawn from `seed` alone
  (the cached path seeds with (run seed, example index): any batch is computed alone)."""
  inputs, targets = span_corrupt(np.asarray(tokens, np.int32), vocab_size,
                                 np.random.default_rng(seed))
  eos = np.array([eos_id], np.int32)
  return {"inputs": np.concatenate([inputs, eos]), "targets": np.concatenate([targets, eos])}


def num_sentinels(length: int, noise_density: float = NOISE_DENSITY,
                  mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> int:
  """The most sentinels a document of `length` pieces uses (its noise spans)."""
  return span_counts(length, noise_density, mean_noise_span_length)[1]


def check_sentinels(pieces: int, vocab_size: int, length: int,
                    noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> None:
  """ValueError unless the ids above a vocabulary's `pieces` real pieces hold the sentinels
  of documents of up to `length` pieces (so no sentinel is read as a real piece)."""
  need = num_sentinels(length, noise_density, mean_noise_span_length)
  if vocab_size - need < pieces:
    raise ValueError(
        f"span corruption of {length}-piece documents needs {need} sentinel ids above the "
        f"vocabulary's {pieces} pieces, but the model's vocab_size is {vocab_size}; set "
        f"vocab_size to at least {pieces + need} (T5 adds 100 extra ids) or cut shorter "
        "documents")


def lengths_for(inputs_length: int, noise_density: float = NOISE_DENSITY,
                mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[int, int]:
  """(raw pieces to cut, targets length) so that a document's inputs, with one sentinel per
  noise span and EOS, fill `inputs_length` exactly or as nearly as possible (T5's
  `random_spans_helper`: 512 -> (568, 114) at the defaults)."""

  def after(length: int) -> tuple[int, int]:
    noise, spans = span_counts(length, noise_density, mean_noise_span_length)
    return length - noise + spans + 1, noise + spans + 1

  length = 2
  if after(length)[0] > inputs_length:
    raise ValueError(f"inputs_length {inputs_length} is too short for span corruption")
  while after(length + 1)[0] <= inputs_length:
    length += 1
  return length, after(length)[1]
