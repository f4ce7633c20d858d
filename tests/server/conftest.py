"""Fixtures for the zili serve tests: a server process on a free loopback port, started from build/zili with the
SmolLM2 model (tests are skipped when either is missing). ZILI_BIN and ZILI_TEST_MODEL override the paths.
ZILI_SANITIZED=1 says the binary is an ASan/UBSan build (`make asan-server`): deadlines are SLOW times longer."""
import os
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ZILI") or os.environ.get("ZILI_BIN", os.path.join(ROOT, "build", "zili"))
MODEL = os.environ.get("ZILI_TEST_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
SANITIZED = os.environ.get("ZILI_SANITIZED") == "1"
SLOW = 4 if SANITIZED else 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra, model=MODEL, host="127.0.0.1", url_host=None):
        """host is --host; url_host where clients connect (default host; an IPv6 literal goes in brackets)."""
        if not os.path.exists(BIN) or not os.path.exists(model):
            pytest.skip(f"needs {BIN} and {model}")
        self.model = model
        self.port = free_port()
        url_host = url_host or host
        self.url = "http://%s:%d" % ("[%s]" % url_host if ":" in url_host else url_host, self.port)
        self.log = open(os.path.join("/tmp", "zili-serve-%d.log" % self.port), "w+")
        self.proc = subprocess.Popen([BIN, "serve", "-m", model, "--host", host, "--port", str(self.port),
                                      *extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60 * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("zili serve exited with %d" % self.proc.returncode)
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("zili serve did not come up")

    def stop(self, timeout=30):
        timeout *= SLOW
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    s = Server("--parallel", "16", "-c", "1024", "--max-body", "65536")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def strict_server():
    """An API key, no queue (authorized generation requests get 503) and a 2 s read timeout."""
    s = Server("--parallel", "1", "-c", "256", "--api-key", "sekret", "--max-queue", "0", "--timeout", "2")
    yield s
    assert s.stop() == 0


def metrics(s):
    text = urllib.request.urlopen(s.url + "/metrics", timeout=10 * SLOW).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def healthy(s, deadline_s=30):
    """The server answers /health and gives every KV block back."""
    assert s.proc.poll() is None, "zili serve died"
    assert urllib.request.urlopen(s.url + "/health", timeout=10 * SLOW).status == 200
    deadline = time.time() + deadline_s * SLOW
    while True:
        m = metrics(s)
        if m["zili_kv_blocks_used"] == 0 and m["zili_running_sequences"] == 0:
            break
        assert time.time() < deadline, f"KV blocks still in use: {m['zili_kv_blocks_used']}"
        time.sleep(0.2)
    assert m["zili_kv_blocks_used"] + m["zili_kv_blocks_cached"] + m["zili_kv_blocks_free"] == \
        m["zili_kv_blocks_total"]
    return m
