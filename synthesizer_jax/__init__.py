"""synthesizer_jax: Transformers with synthesized attention (Tay et al., 2021) in JAX/Flax."""

from synthesizer_jax import attention, decoding
from synthesizer_jax.attention import KINDS, Attention, parse_kind
from synthesizer_jax.config import AttentionConfig, ModelConfig
from synthesizer_jax.decoding import Generation, generate
from synthesizer_jax.transformer import DecoderLM, EncoderClassifier, EncoderDecoder

__version__ = "0.1.0"

__all__ = ["KINDS", "Attention", "AttentionConfig", "DecoderLM", "EncoderClassifier",
           "EncoderDecoder", "Generation", "ModelConfig", "attention", "decoding", "generate",
           "parse_kind"]
