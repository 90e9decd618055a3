"""Mixtures `a+b[+c]`: B = sum_c w_hc B_c with w_h = softmax(per-head gate logits).

Paper section 3.4 mixes the logits of several synthesizers with learned weights
that sum to one; we learn one weight vector per head, initialised uniform.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax.attention.core import DotForm, LogitSource
from synthesizer_jax.layers import param


class Mixture(LogitSource):
  """Gated sum of the logits of `components` (kind names, each built from `source_types`)."""

  components: tuple[str, ...] = ()
  source_types: tuple[type[LogitSource], ...] = ()

  def setup(self):
    self.sources = [cls(self.cfg, name=kind) for kind, cls in zip(self.components,
                                                                  self.source_types)]
    self.gate_logits = param(self, "gate_logits", nn.initializers.zeros,
                             (self.cfg.num_heads, len(self.components)), ("heads", None))

  @property
  def needs_keys(self) -> bool:  # type: ignore[override]
    return any(cls.needs_keys for cls in self.source_types)

  def gates(self) -> jax.Array:
    """Mixture weights per head, [heads, components], rows sum to one."""
    return jax.nn.softmax(self.gate_logits.astype(jnp.float32), axis=-1)

  def keys(self, x_bke):
    if not self.needs_keys:
      return None  # all components synthetic: nothing to cache
    return tuple(source.keys(x_bke) for source in self.sources)

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    if keys is None:
      keys = (None,) * len(self.sources)
    w_hc = self.gates()
    total_bhqk = 0.0
    for c, (source, k) in enumerate(zip(self.sources, keys)):
      logits_bhqk = source.logits(x_bqe, k, pos_bq, pos_bk).astype(jnp.float32)
      total_bhqk = total_bhqk + w_hc[None, :, c, None, None] * logits_bhqk
    return total_bhqk

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk) -> DotForm | None:
    """sum_c w_hc B_c: gate-scaled queries of the components concatenated, biases added."""
    if keys is None:
      keys = (None,) * len(self.sources)
    w_hc = self.gates()
    total = None
    for c, (source, k) in enumerate(zip(self.sources, keys)):
      form = source.dot_form(x_bqe, k, pos_bq, pos_bk)
      if form is None:
        return None
      form = form.scaled(w_hc[:, c])
      total = form if total is None else total + form
    return total
