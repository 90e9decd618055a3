"""Command line: `python -m synthesizer_jax.data.prepare --data_dir DIR [--tasks NAME ...]`.

Builds the offline corpora, their fixed splits and the vocabularies (see `build.py`).
In Python, call `synthesizer_jax.data.prepare(data_dir, tasks)` instead.
"""

import sys

from synthesizer_jax.data.build import main

if __name__ == "__main__":
  sys.exit(main())
