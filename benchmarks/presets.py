"""The model sizes and sweeps of benchmarks/attention.py (`--preset`), and its variant lists."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import synthesizer_jax as sj


@dataclasses.dataclass(frozen=True)
class Preset:
  """Model size and sweep of one benchmark run."""

  d_model: int
  num_heads: int
  mlp_dim: int
  num_layers: int
  vocab_size: int
  lengths: Sequence[int]
  tokens_per_batch: int  # batch = max(1, tokens_per_batch // length): same tokens at each length
  dtype: str = "float32"
  repeats: int = 5
  variants: Sequence[str] = ()
  batch_length: int = 1024  # length of the batch-size sweep
  batch_sizes: Sequence[int] = (1, 2, 4, 8, 16)
  loss_chunk: int = 0  # training steps: logits and loss this many positions at a time (0: all)

  def model_config(self, kind: str, length: int, attention_impl: str = "auto") -> sj.ModelConfig:
    # Synthetic kinds are built for the benchmarked length (max_len = n), as the paper does.
    return sj.ModelConfig(vocab_size=self.vocab_size, d_model=self.d_model,
                          num_heads=self.num_heads, head_dim=self.d_model // self.num_heads,
                          mlp_dim=self.mlp_dim, num_layers=self.num_layers, max_len=length,
                          dropout_rate=0.0, self_attention=kind, dtype=self.dtype,
                          attention_impl=attention_impl)


KIND_VARIANTS = ("dot", "dot_jax") + tuple(k for k in sj.KINDS if k != "dot") + (
    "random/per_batch",)
FUSED_VARIANTS = tuple(f"{kind}@{impl}" for kind in ("dot", "dense", "dense+dot", "random",
                                                     "factorized_random")
                       for impl in ("materialized", "blockwise"))
FUSED_GPU_VARIANTS = ("dot_cudnn",) + tuple(
    f"{kind}@{impl}" for kind in ("dot", "dense", "dense+dot", "factorized_random")
    for impl in ("materialized", "blockwise", "cudnn", "pallas")) + (
        "random", "random@blockwise", "random@cudnn")
PRESETS = {
    "tiny": Preset(d_model=32, num_heads=2, mlp_dim=64, num_layers=1, vocab_size=64,
                   lengths=(16, 32), tokens_per_batch=64, repeats=2,
                   variants=("dot", "dot_jax", "random", "random/per_batch"),
                   batch_length=16, batch_sizes=(1, 4)),
    "cpu": Preset(d_model=256, num_heads=4, mlp_dim=1024, num_layers=2, vocab_size=4096,
                  lengths=(256, 512, 1024, 2048), tokens_per_batch=4096, repeats=3,
                  variants=KIND_VARIANTS + ("fixed_random/cached",),
                  batch_length=1024, batch_sizes=(1, 2, 4, 8, 16)),
    "gpu": Preset(d_model=512, num_heads=8, mlp_dim=2048, num_layers=6, vocab_size=32128,
                  lengths=(256, 512, 1024, 2048, 4096, 8192), tokens_per_batch=32768,
                  dtype="bfloat16", repeats=10,
                  variants=KIND_VARIANTS + ("dot_xla", "dot_cudnn", "fixed_random/cached",
                                            "factorized_random/per_batch"),
                  batch_length=2048, batch_sizes=(1, 2, 4, 8, 16, 32)),
    # Materialized vs fused attention on the CPU: the cpu preset's model, one sequence per batch
    # up to n=16384 (`memory` compiles only; `step` times).
    "fused": Preset(d_model=256, num_heads=4, mlp_dim=1024, num_layers=2, vocab_size=4096,
                    lengths=(1024, 2048, 4096, 8192, 16384), tokens_per_batch=4096, repeats=3,
                    variants=FUSED_VARIANTS),
    # The same on a GPU at the gpu preset's size (benchmarks/fused_gpu.sh), against cuDNN `dot`.
    "fused_gpu": Preset(d_model=512, num_heads=8, mlp_dim=2048, num_layers=6, vocab_size=32128,
                        lengths=(1024, 4096, 16384), tokens_per_batch=32768, dtype="bfloat16",
                        repeats=5, variants=FUSED_GPU_VARIANTS),
}
