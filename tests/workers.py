"""Starting and finishing the two-process worker runs (multihost_worker.py) of the tests."""

import json
import os
import re
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start(work, data_dir, options=None, per_process=None, n=2):
  """The worker processes; `per_process[i]` replaces process i's options."""
  port = free_port()
  # The worker sets its own device count; the suite's other XLA flags carry over.
  env = {**os.environ, "XLA_FLAGS": re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                                           os.environ.get("XLA_FLAGS", "")).strip()}
  procs = []
  for i in range(n):
    opts = (per_process or {}).get(i, options or {})
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(HERE, "multihost_worker.py"), str(i), str(n), str(port),
         work, data_dir, json.dumps(opts)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  return procs


def finish(procs, timeout=400):
  """(return codes, outputs). Past `timeout` every worker is killed, so a hung one cannot hold
  a port or the GCS emulator for the tests after it, and the test fails with each one's tail."""
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  except subprocess.TimeoutExpired:
    tails = []
    for i, p in enumerate(procs):
      p.kill()
      tails.append(f"--- process {i} ---\n{(p.communicate()[0] or '')[-2000:]}")
    raise AssertionError(f"workers still running after {timeout} s\n" + "\n".join(tails)) from None
  return [p.returncode for p in procs], outs
