"""synthesizer_jax: Transformers with synthesized attention (Tay et al., 2021) in JAX/Flax."""

from synthesizer_jax import attention, decoding, text
from synthesizer_jax.attention import KINDS, Attention, parse_kind
from synthesizer_jax.config import AttentionConfig, ModelConfig
from synthesizer_jax.decoding import Generation, generate
from synthesizer_jax.text import generate_text, load_vocabulary
from synthesizer_jax.transformer import DecoderLM, EncoderClassifier, EncoderDecoder
from synthesizer_jax.version import __version__  # noqa: F401  (sj.__version__)

__all__ = ["KINDS", "Attention", "AttentionConfig", "DecoderLM", "EncoderClassifier",
           "EncoderDecoder", "Generation", "ModelConfig", "attention", "decoding", "generate",
           "generate_text", "load_checkpoint", "load_vocabulary", "parse_kind", "text"]


def load_checkpoint(workdir_or_path, step=None):
  """(model, variables, config) of a train.py checkpoint, on whatever devices exist."""
  from synthesizer_jax.loading import load_checkpoint as load

  return load(workdir_or_path, step)
