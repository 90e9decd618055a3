"""A real GCS JSON API on loopback for the tests: `gcp-storage-emulator` in a subprocess.

The libraries reach it through their own switches, set in this process's environment (and
so inherited by the workers it starts): STORAGE_EMULATOR_HOST (gcsfs, google-cloud-storage),
TENSORSTORE_GCS_HTTP_URL + GOOGLE_AUTH_TOKEN_FOR_TESTING (TensorStore, which writes Orbax's
arrays), EPATH_USE_TF=false (epath through fsspec) and CLOUD_STORAGE_EMULATOR_ENDPOINT:
google-cloud-cpp's own switch, which ArrayRecord's reader of gs:// shards uses (riegeli's
GcsReader; it ignores STORAGE_EMULATOR_HOST and would wait on Google's endpoint instead).
The library itself sets none of them.
The emulator's own server answers one connection at a time and blocks on a client that
connects and stalls, so a stuck or killed worker would hang every later test: `serve()` runs
it threaded, with a socket timeout per request and one lock around the storage it shares.
Objects are kept on disk, so `stop()` then `start()` is an outage that loses nothing.
Known gap: the emulator ignores generation preconditions (`ifGenerationMatch=0`), so the
workdir lock's create-if-absent race is not exercised here (docs/reliability.md); nor does it
send the x-goog-generation header, which OCDBT's manifest updates need, so runs on it save
with TrainConfig.checkpoint_ocdbt=False.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

BUCKET = "sj-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Emulator:
  """One emulator process on a fixed port (fsspec and TensorStore cache their clients, so a
  restart must come back on the same port)."""

  def __init__(self, root: str, bucket: str = BUCKET):
    self.root, self.bucket = root, bucket
    self.port = _free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.proc = None

  @property
  def env(self) -> dict:
    return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x", "EPATH_USE_TF": "false",
            "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.url}

  def start(self) -> None:
    if self.running():
      return
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(self.port), self.root, self.bucket],
        cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
      try:
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        return
      except OSError:
        if self.proc.poll() is not None:
          raise RuntimeError(
              f"gcp-storage-emulator exited with {self.proc.returncode}") from None
        time.sleep(0.2)
    raise RuntimeError(f"gcp-storage-emulator did not answer on port {self.port} in 60 s")

  def stop(self) -> None:
    if self.proc is not None:
      self.proc.kill()
      self.proc.wait()
      self.proc = None

  def running(self) -> bool:
    return self.proc is not None and self.proc.poll() is None

  def answers(self, timeout: float = 10.0) -> bool:
    """Whether the emulator answers an HTTP request (a live process may still be stuck)."""
    import urllib.request

    try:
      with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}", timeout=timeout):
        return True
    except OSError:
      return False

  def ensure(self) -> None:
    """Running and answering: a stuck emulator is restarted on its port (objects kept)."""
    if self.running() and not self.answers():
      self.stop()
    self.start()

  def new_path(self, name: str) -> str:
    """A fresh gs:// prefix in the emulator's bucket."""
    return f"gs://{self.bucket}/{name}-{uuid.uuid4().hex[:8]}"


def serve(port: int, root: str, bucket: str) -> None:
  """The emulator's server, threaded (see the module docstring); runs until killed."""
  from http import server as http_server

  from gcp_storage_emulator import server as emulator

  class Threaded(http_server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

  lock = threading.RLock()
  handle = emulator.Router.handle

  def locked_handle(self, method):
    with lock:
      handle(self, method)

  emulator.Router.handle = locked_handle
  emulator.RequestHandler.timeout = 60  # a stalled client's socket, not the whole server
  emulator.server.HTTPServer = Threaded  # the module the emulator's APIThread builds from
  emulator.create_server("127.0.0.1", port, False, bucket, data_dir=root).run()


if __name__ == "__main__":
  serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
