"""Server processes for the benchmarks: kvault or llama-server on a free loopback port (with its
own temporary KV cache directory for kvault), and the demo models they serve."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from .util import CACHE, log


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process (kvault or llama-server) on a free loopback port."""

    def __init__(self, argv, name, health="/health"):
        self.port = free_port()
        self.cache_dir = None
        if name.startswith("kvault") and "--cache-dir" not in argv:  # its own KV cache directory, not the user's
            self.cache_dir = tempfile.mkdtemp(prefix="kvault-bench-cache-")
            argv = argv + ["--cache-dir", self.cache_dir]
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv + ["--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy(health)

    def _wait_healthy(self, health):
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{health}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.cache_dir:  # the temporary cache directory this object made (GBs after the bigger suites)
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def memory(self):
        """The process's resident memory from /proc/<pid>/status, MiB: VmRSS (now), VmHWM (peak),
        RssAnon (heap and anonymous maps: KV pool, RAM tier) and RssFile (mapped files: the model)."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024  # kB
        return out


def ensure_model(kvault, size, seed=42):
    path = os.path.join(CACHE, "models", f"demo-{size}-{seed}.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        log(f"generating the {size} demo model at {path}")
        subprocess.run([kvault, "model", "make-demo", "--size", size, "--out", path, "--seed", str(seed)], check=True)
    return path
