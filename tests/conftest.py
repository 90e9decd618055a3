"""Test set-up: 8 virtual CPU devices and strict numerics, before JAX is imported; the GCS
emulator fixture (`gcs`)."""

import gc
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# XLA's CPU backend compiled without LLVM's optimisations: the suite's programs are small and
# many, so compiling them is most of its time, and -O0 compiles them in about half the time.
# XLA's own (HLO) passes, fusion included, still run, so the programs and the properties
# tested are the same. XLA_FLAGS=--xla_backend_optimization_level=2 runs the suite at XLA's
# default instead. Subprocesses inherit the flag (tests/workers.py keeps it).
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The GCS emulator's switch for epath (gcs_emulator.py), set before epath's first use: epath
# decides once per process whether gs:// goes through tf.io.gfile or fsspec.
os.environ["EPATH_USE_TF"] = "false"
# One persistent XLA compilation cache for every process of a test run (the pytest-xdist
# workers and the subprocesses tests start inherit it): the suite compiles the same small
# programs many times over, in many tests and processes, and a compile found there is loaded
# instead (about a fifth of the suite's CPU time on a fresh clone; more once the cache is
# warm). Entries are keyed by the program, the compile options and the JAX version, so a
# change in any of them compiles afresh. JAX_COMPILATION_CACHE_DIR= (empty) turns it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
  """Runs a test both un-jitted and under jax.jit: `maybe_jit(fn)` returns fn or jax.jit(fn)."""
  return jax.jit if request.param else (lambda fn, **_: fn)


@pytest.fixture(scope="session")
def _gcs_server(tmp_path_factory):
  from gcs_emulator import Emulator

  server = Emulator(str(tmp_path_factory.mktemp("gcs")))
  server.start()
  saved = {k: os.environ.get(k) for k in server.env}
  os.environ.update(server.env)
  yield server
  server.stop()
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value


@pytest.fixture
def gcs(_gcs_server):
  """The GCS emulator (gcs_emulator.Emulator), running, with the libraries' switches set."""
  _gcs_server.ensure()  # not left an outage, or stuck, by a test before
  yield _gcs_server
  _gcs_server.start()
  gc.collect()  # tensorboardX's GCS writers upload once more when collected: while it is up
