"""A one-minute end-to-end check: train a tiny byte-level `DecoderLM` on real text on the CPU.

The text is the Python reference manual's topic help that ships with CPython
(`pydoc_data.topics`, PSF licence), so it needs no download. Run:

    python -m synthesizer_jax.demo --attention dense --steps 300

It prints the loss as it trains, the held-out loss before and after, and a
greedy sample, and exits non-zero if training did not reduce the held-out loss.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import synthesizer_jax as sj


def load_text() -> bytes:
  """The CPython reference-manual topics as one UTF-8 byte string (~460 KB)."""
  import pydoc_data.topics

  return "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode()


def batches(data: np.ndarray, batch: int, length: int, seed: int):
  """Endless random windows [batch, length + 1] of the byte array (byte + 1; 0 is padding)."""
  rng = np.random.default_rng(seed)
  while True:
    starts = rng.integers(0, len(data) - length - 1, batch)
    yield np.stack([data[s:s + length + 1] for s in starts]).astype(np.int32) + 1


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--attention", default="dense", help=f"one of {sj.KINDS} or a mixture")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=64)
  args = parser.parse_args(argv)

  cfg = sj.ModelConfig(vocab_size=257, d_model=64, num_heads=4, head_dim=16, mlp_dim=256,
                       num_layers=2, max_len=args.length, dropout_rate=0.0,
                       self_attention=args.attention)
  data = np.frombuffer(load_text(), np.uint8)
  split = int(len(data) * 0.95)
  train, held_out = batches(data[:split], args.batch, args.length, 0), data[split:]
  eval_batch = next(batches(held_out, 64, args.length, 1))

  model = sj.DecoderLM(cfg)
  variables = model.init(jax.random.key(0), eval_batch[:, :-1])
  params, consts = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(3e-3, weight_decay=0.01))
  opt_state = tx.init(params)

  def loss_fn(params, batch):
    logits = model.apply({"params": params, **consts}, batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  eval_loss = jax.jit(loss_fn)
  before = float(eval_loss(params, eval_batch))
  print(f"model: DecoderLM, attention={cfg.self_attention}, "
        f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters; data: "
        f"{len(data):,} bytes of CPython reference text")
  start = time.time()
  for i in range(1, args.steps + 1):
    params, opt_state, loss = step(params, opt_state, next(train))
    if i % 25 == 0 or i == args.steps:
      print(f"step {i:4d}  train loss {float(loss):.3f}  ({i / (time.time() - start):.1f} steps/s)")
  after = float(eval_loss(params, eval_batch))
  print(f"held-out loss: {before:.3f} -> {after:.3f} nats/byte")

  # Greedy sample in a fixed [1, length] window (right padding is in every token's future).
  next_token = jax.jit(lambda p, window, i: jnp.argmax(
      model.apply({"params": p, **consts}, window)[0, i]))
  text = list(b"The assert statement ")
  for _ in range(args.length - len(text)):
    window = np.zeros((1, args.length), np.int32)
    window[0, :len(text)] = np.array(text) + 1
    text.append(int(next_token(params, window, len(text) - 1)) - 1)
  print("sample:", bytes(np.clip(text, 0, 255).astype(np.uint8)).decode(errors="replace"))
  if not after < before - 0.5:
    print("FAILED: held-out loss did not go down", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
