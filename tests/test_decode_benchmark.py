"""The decode benchmark runs at a tiny size (so it cannot rot) and reports sane figures."""

import json

from benchmarks import decode


def test_decode_benchmark_tiny(tmp_path):
  out = tmp_path / "decode.json"
  rows = decode.main(["--preset", "tiny", "--kinds", "dot,random", "--batches", "1,2",
                      "--prompt_len", "4", "--new_tokens", "3", "--repeats", "1",
                      "--out", str(out)])
  assert [r["kind"] for r in rows] == ["dot", "random"]
  by_kind = {r["kind"]: r for r in rows}
  # Synthetic kinds keep values only: half of dot's key+value bytes.
  assert by_kind["random"]["kv_bytes_per_token"] * 2 == by_kind["dot"]["kv_bytes_per_token"]
  assert all(r["tokens_per_s_b1"] > 0 and r["tokens_per_s_b2"] > 0 for r in rows)
  saved = json.loads(out.read_text())
  assert saved["rows"] == rows and saved["meta"]["args"]["preset"] == "tiny"
