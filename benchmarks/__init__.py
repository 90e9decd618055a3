"""Speed and memory benchmarks of the attention kinds (see benchmarks/README.md).

Run from the repository root:

    python -m benchmarks.attention --preset cpu     # or --preset gpu / --preset tiny
    python -m benchmarks.smoke                      # bf16 training smoke test of every model shape

Nothing here imports TensorFlow, seqio or ml_collections: it runs on the bare JAX install of an
accelerator machine.
"""
