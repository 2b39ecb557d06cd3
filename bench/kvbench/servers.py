"""Server processes for the benchmarks: kvault or llama-server on a free loopback port (with its
own temporary KV cache directory for kvault), and the demo models they serve."""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from .client import get_json
from .util import CACHE, ROOT, gpu_flags, log


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process (kvault or llama-server) on a free loopback port."""

    def __init__(self, argv, name, health="/health", port=None):
        self.port = port or free_port()  # a given port: a restart behind a proxy that knows it
        self.cache_dir = None
        if name.startswith("kvault") and "--cache-dir" not in argv:  # its own KV cache directory, not the user's
            self.cache_dir = tempfile.mkdtemp(prefix="kvault-bench-cache-")
            argv = argv + ["--cache-dir", self.cache_dir]
        self.name = name
        argv = argv + gpu_flags(name)
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
        self.proc.kill()  # not left running behind the error
        self.proc.wait()
        if self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        raise RuntimeError(f"{self.name} did not become healthy: see {self.log.name}")

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


def private_binaries(kvault, prefix, extras=()):
    """A private copy of the kvault binary (and of `extras`, programs next to it, where present),
    removed at exit: rebuilding build/ while a run goes on (hours) neither breaks it (the file is
    briefly not executable while it is linked) nor mixes two versions in one run. Returns the
    copy's path."""
    bin_dir = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, bin_dir, True)
    os.makedirs(os.path.join(bin_dir, "bin"))
    shutil.copy2(kvault, os.path.join(bin_dir, "bin", "kvault"))
    for name in extras:
        path = os.path.join(os.path.dirname(os.path.abspath(kvault)), name)
        if os.path.exists(path):
            shutil.copy2(path, os.path.join(bin_dir, "bin", name))
    share = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(kvault))), "share")
    if os.path.isdir(share):  # the vocabulary `model make-demo` reads
        os.symlink(share, os.path.join(bin_dir, "share"))
    return os.path.join(bin_dir, "bin", "kvault")


def llama_tools():
    """The directory of llama.cpp's programs (llama-server, llama-bench, llama-batched-bench), built
    from the pinned source by bench/build-llama-tools.sh the first time; or KVAULT_LLAMA_TOOLS_DIR
    where they were built already (scripts/gpu-check.sh: in kvault's own CUDA build tree)."""
    if os.environ.get("KVAULT_LLAMA_TOOLS_DIR"):
        return os.environ["KVAULT_LLAMA_TOOLS_DIR"]
    return subprocess.run(["bash", os.path.join(ROOT, "bench", "build-llama-tools.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]


def model_meta(kvault, model):
    """What kvault's /v1/models says of the model (llama.cpp's description, parameter count)."""
    info = Server([kvault, "serve", "--model", model, "--log-level", "warn", "--pool-tokens", "4096"], "kvault-info")
    meta = get_json(info.port, "/v1/models")["data"][0]["meta"]
    info.stop()
    return meta
