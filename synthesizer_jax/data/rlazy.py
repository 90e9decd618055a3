"""Reads data objects from an R package's lazy-load database without R.

R packages ship their data sets as `data/Rdata.rdx` (an index) and `data/Rdata.rdb`
(concatenated, individually compressed serialized objects). Each blob starts with a
4-byte big-endian length and, for R >= 2.10 compression, a type byte: "Z" (raw LZMA2,
as R's xz), "2" (bzip2), "0" (stored); without a type byte the rest is zlib. The
decompressed bytes are R's serialization format, which the `rdata` package parses.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import warnings
import zlib

from synthesizer_jax.data.registry import DataError

_LZMA2_RAW = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _rdata():
  try:
    import rdata
  except ImportError as e:
    raise DataError("Reading R data sets needs the `rdata` package: "
                    "pip install rdata   (or: pip install -e '.[data]')") from e
  return rdata


def _decompress(blob: bytes) -> bytes:
  kind, body = blob[4:5], blob[5:]
  if kind == b"Z":
    try:
      return lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA2_RAW).decompress(body)
    except lzma.LZMAError:
      pass
  elif kind == b"2":
    try:
      return bz2.decompress(body)
    except OSError:
      pass
  elif kind == b"0":
    return body
  return zlib.decompress(blob[4:])


def _convert(raw: bytes):
  rdata = _rdata()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS" for headerless blobs
    return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=None))


def load_object(prefix: str, name: str):
  """Returns R object `name` from `<prefix>.rdx/.rdb` (a data.frame comes back as pandas)."""
  with open(prefix + ".rdx", "rb") as f:
    rdx = f.read()
  try:
    rdx = gzip.decompress(rdx)
  except OSError:
    rdx = _decompress(rdx)
  variables = _convert(rdx)["variables"]
  if name not in variables:
    raise DataError(f"R object {name!r} not in {prefix}.rdx; it has {sorted(variables)}")
  offset, length = (int(x) for x in variables[name])
  with open(prefix + ".rdb", "rb") as f:
    f.seek(offset)
    return _convert(_decompress(f.read(length)))
