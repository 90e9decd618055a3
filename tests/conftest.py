"""Test set-up: 8 virtual CPU devices and strict numerics, before JAX is imported; the GCS
emulator fixture (`gcs`)."""

import gc
import os
import resource

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


# Where the suite's CPU time goes, beside pytest's --durations (wall time): each test's CPU
# seconds (its process, its threads and the subprocesses it waited for), from setup through
# teardown, are carried in the test's report (so they reach the controller from xdist workers)
# and the 30 largest are listed at the end. On 2 cores the suite's wall time is about its CPU
# time over 2: these are the tests that make it.
def _cpu_seconds():
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
      resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  item.cpu_start = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  if call.when == "teardown" and hasattr(item, "cpu_start"):
    item.user_properties.append(("cpu_s", _cpu_seconds() - item.cpu_start))
  yield


_CPU = {}


def pytest_runtest_logreport(report):
  if report.when == "teardown":
    for key, value in report.user_properties:
      if key == "cpu_s":
        _CPU[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
  if not _CPU:
    return
  top = sorted(_CPU.items(), key=lambda kv: -kv[1])[:30]
  terminalreporter.write_sep("=", f"most CPU: {len(top)} of {len(_CPU)} tests, "
                             f"{sum(_CPU.values()):.0f} CPU-s in all")
  for nodeid, seconds in top:
    terminalreporter.write_line(f"{seconds:7.2f}s cpu  {nodeid}")
