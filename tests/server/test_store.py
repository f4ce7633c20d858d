"""The model store (issue 27, item 3): `zili pull` against a loopback HTTP server (http.server in a thread, with
Range support) serving a small random model from tools/gen_gguf.py: a full pull, a cut connection resumed within
one pull and across pulls, wrong Content-Lengths, bad hashes (URL#sha256= and the URL.sha256 sidecar), a file that
is not a GGUF, `zili list`, `zili rm`, `-m NAME` in run / info / bench / serve, and a store that cannot be written."""
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import BIN, MODEL, ROOT, SLOW, free_port


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random llama model of ~18 MB (SmolLM2's vocabulary), made once for the module."""
    if not os.path.exists(BIN) or not os.path.exists(MODEL):
        pytest.skip(f"needs {BIN} and {MODEL}")
    path = tmp_path_factory.mktemp("tiny") / "tiny-q8.gguf"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gguf.py"), "--preset", "tiny", "--type", "q8_0",
                    "--seed", "7", "--vocab-from", MODEL, "-o", str(path)], check=True, capture_output=True,
                   timeout=300 * SLOW)
    return path.read_bytes()


class Files:
    """What the loopback server serves: path -> bytes, and per path how to misbehave."""

    def __init__(self):
        self.files = {}
        self.cut = {}        # path -> (bytes per response before the connection is cut, responses to cut; -1 all)
        self.claim = {}      # path -> the Content-Length announced instead of the true one
        self.no_range = set()  # paths that answer a Range request with 200 and the whole file
        self.log = []        # (path, Range header or None)
        self.lock = threading.Lock()


def make_handler(files):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            path = self.path
            rng = self.headers.get("Range")
            with files.lock:
                files.log.append((path, rng))
                body = files.files.get(path)
                cut = files.cut.get(path)
                if cut and cut[1] != 0:
                    files.cut[path] = (cut[0], cut[1] - 1)
                else:
                    cut = None
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and path not in files.no_range:
                start = int(m.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % len(body))
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
            else:
                self.send_response(200)
            rest = body[start:]
            self.send_header("Content-Length", str(files.claim.get(path, len(rest))))
            self.send_header("Connection", "close")
            self.end_headers()
            if cut:
                rest = rest[:cut[0]]
            elif path in files.claim:
                rest = rest[:files.claim[path]]
            try:
                self.wfile.write(rest)
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True

    return H


@pytest.fixture
def web():
    files = Files()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(files))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    files.base = "http://127.0.0.1:%d" % srv.server_address[1]
    yield files
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "store"
    return d


def zili(store, *args, timeout=120, **kw):
    env = dict(os.environ, ZILI_MODELS=str(store))
    return subprocess.run([BIN, *args], capture_output=True, timeout=timeout * SLOW, env=env, **kw)


def gets(web, path):
    return [r for p, r in web.log if p == path]


def test_full_pull_then_already_stored(web, store, tiny):
    web.files["/m/tiny-q8.gguf"] = tiny
    r = zili(store, "pull", web.base + "/m/tiny-q8.gguf")
    assert r.returncode == 0, r.stderr
    assert (store / "tiny-q8.gguf").read_bytes() == tiny
    assert not (store / "tiny-q8.part").exists()
    out = r.stdout.decode()
    assert str(store / "tiny-q8.gguf") in out and "(llama, Q8_0)" in out and "SHA-256" not in out
    # Not a terminal: no progress bar on stderr.
    assert b"\r" not in r.stderr and b"MiB" not in r.stderr, r.stderr
    assert gets(web, "/m/tiny-q8.gguf.sha256") == [None]  # the sidecar was asked for (404: no check)
    # A second pull of the same name downloads nothing.
    r = zili(store, "pull", web.base + "/m/tiny-q8.gguf")
    assert r.returncode == 0, r.stderr
    assert len(gets(web, "/m/tiny-q8.gguf")) == 1
    # A name that is no URL: fine when stored, otherwise a clear line (there is no registry).
    r = zili(store, "pull", "tiny-q8")
    assert r.returncode == 0 and b"already stored" in r.stdout
    r = zili(store, "pull", "smollm")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "'smollm' is not an http:// or https:// URL" in err and "no model registry" in err and err.count("\n") == 1


def test_sha256_from_the_url_and_from_a_sidecar(web, store, tiny):
    good = hashlib.sha256(tiny).hexdigest()
    web.files["/a.gguf"] = tiny
    r = zili(store, "pull", web.base + "/a.gguf#sha256=" + good.upper(), "--name", "alias-a")
    assert r.returncode == 0, r.stderr
    assert b"SHA-256 checked" in r.stdout and (store / "alias-a.gguf").read_bytes() == tiny
    assert gets(web, "/a.gguf.sha256") == []  # the URL's digest wins: no sidecar asked for
    web.files["/b.gguf"] = tiny
    web.files["/b.gguf.sha256"] = (good + "  b.gguf\n").encode()
    r = zili(store, "pull", web.base + "/b.gguf")
    assert r.returncode == 0, r.stderr
    assert b"SHA-256 checked" in r.stdout and (store / "b.gguf").exists()


def test_bad_hash_stores_nothing(web, store, tiny):
    web.files["/c.gguf"] = tiny
    bad = "0" * 64
    r = zili(store, "pull", web.base + "/c.gguf#sha256=" + bad)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "SHA-256 mismatch: expected %s, got %s" % (bad, hashlib.sha256(tiny).hexdigest()) in err, err
    assert err.count("\n") == 1
    assert not (store / "c.gguf").exists() and not (store / "c.part").exists()
    web.files["/c.gguf.sha256"] = (bad + "\n").encode()
    r = zili(store, "pull", web.base + "/c.gguf")
    assert r.returncode == 1 and b"SHA-256 mismatch" in r.stderr
    assert not (store / "c.gguf").exists()
    # A sidecar that holds no digest, a malformed #sha256=: refused before any download.
    web.files["/c.gguf.sha256"] = b"<html>not found</html>"
    r = zili(store, "pull", web.base + "/c.gguf")
    assert r.returncode == 1 and b"not a SHA-256" in r.stderr
    n = len(gets(web, "/c.gguf"))
    r = zili(store, "pull", web.base + "/c.gguf#sha256=abc")
    assert r.returncode == 1 and b"expected #sha256= and 64 hex digits" in r.stderr
    assert len(gets(web, "/c.gguf")) == n


def test_a_cut_connection_resumes_within_the_pull(web, store, tiny):
    web.files["/d.gguf"] = tiny
    web.cut["/d.gguf"] = (len(tiny) // 3, 1)  # the first response stops a third of the way
    r = zili(store, "pull", web.base + "/d.gguf")
    assert r.returncode == 0, r.stderr
    assert (store / "d.gguf").read_bytes() == tiny
    assert gets(web, "/d.gguf") == [None, "bytes=%d-" % (len(tiny) // 3)]
    assert b"resuming" in r.stderr


def test_a_pull_that_keeps_failing_leaves_a_part_the_next_pull_resumes(web, store, tiny):
    web.files["/e.gguf"] = tiny
    step = len(tiny) // 8
    web.cut["/e.gguf"] = (step, -1)  # every response cut after 1/8 of the file: 3 attempts get 3/8
    r = zili(store, "pull", web.base + "/e.gguf")
    assert r.returncode == 1
    err = r.stderr.decode().strip().splitlines()[-1]
    assert "kept: zili pull resumes it" in err and "of %d bytes" % len(tiny) in err, err
    part = store / "e.part"
    assert part.read_bytes() == tiny[:3 * step]
    assert not (store / "e.gguf").exists()
    assert "e" not in zili(store, "list").stdout.decode().split()  # a partial download is not listed
    web.cut.pop("/e.gguf")
    r = zili(store, "pull", web.base + "/e.gguf")
    assert r.returncode == 0, r.stderr
    assert gets(web, "/e.gguf")[-1] == "bytes=%d-" % (3 * step)
    assert (store / "e.gguf").read_bytes() == tiny and not part.exists()


def test_a_server_that_ignores_range_starts_over(web, store, tiny):
    web.files["/f.gguf"] = tiny
    web.no_range.add("/f.gguf")
    store.mkdir()
    (store / "f.part").write_bytes(b"garbage that is not the file's start")
    r = zili(store, "pull", web.base + "/f.gguf")
    assert r.returncode == 0, r.stderr
    assert gets(web, "/f.gguf")[0] is not None  # it asked for a range and got the whole file
    assert (store / "f.gguf").read_bytes() == tiny


def test_wrong_content_length(web, store, tiny):
    # Announces more than it sends (a short body): every attempt ends early; nothing is stored.
    web.files["/g.gguf"] = tiny
    web.claim["/g.gguf"] = len(tiny) + 1000
    r = zili(store, "pull", web.base + "/g.gguf")
    assert r.returncode == 1
    assert not (store / "g.gguf").exists()
    assert re.search(rb"after \d+ of %d bytes" % (len(tiny) + 1000), r.stderr), r.stderr
    # Announces less than the file (the body is cut to match): the GGUF check finds the file truncated.
    web.files["/h.gguf"] = tiny
    web.claim["/h.gguf"] = len(tiny) - 4096
    r = zili(store, "pull", web.base + "/h.gguf")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "not a valid GGUF file" in err and err.count("\n") == 1, err
    assert not (store / "h.gguf").exists() and not (store / "h.part").exists()


def test_not_a_gguf(web, store):
    web.files["/i.gguf"] = b"<!DOCTYPE html><html><body>Sign in to download</body></html>"
    r = zili(store, "pull", web.base + "/i.gguf")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "not a GGUF file (it starts with \"<!DO\", not \"GGUF\")" in err and err.count("\n") == 1, err
    assert not (store / "i.gguf").exists() and not (store / "i.part").exists()
    r = zili(store, "pull", web.base + "/missing.gguf")
    assert r.returncode == 1 and b"HTTP 404" in r.stderr
    r = zili(store, "pull", "file:///etc/passwd")
    assert r.returncode == 1 and b"not an http:// or https:// URL" in r.stderr


def test_list_rm_and_m_name(web, store, tiny):
    r = zili(store, "list")
    assert r.returncode == 0 and r.stdout == b"" and b"no models in" in r.stderr
    web.files["/m/tiny-q8.gguf"] = tiny
    web.files["/smol.gguf"] = open(MODEL, "rb").read()
    assert zili(store, "pull", web.base + "/m/tiny-q8.gguf", "--name", "tiny").returncode == 0
    assert zili(store, "pull", web.base + "/smol.gguf").returncode == 0
    rows = [line.split() for line in zili(store, "list").stdout.decode().splitlines()]
    assert rows[0] == ["NAME", "SIZE", "ARCH", "TYPE"]
    assert rows[1][0] == "smol" and rows[1][3:] == ["llama", "Q4_1"]
    assert rows[2] == ["tiny", "%.1f" % (len(tiny) / 1048576), "MiB", "llama", "Q8_0"]
    # -m NAME is the stored file, for run, info and bench.
    ref = subprocess.run([BIN, "run", "-m", MODEL, "-p", "Hello", "-n", "6", "--temp", "0"], capture_output=True)
    got = zili(store, "run", "-m", "smol", "-p", "Hello", "-n", "6", "--temp", "0")
    assert got.returncode == 0 and got.stdout == ref.stdout and ref.stdout
    info = zili(store, "info", "-m", "tiny")
    assert info.returncode == 0 and "random llama 4x256 q8_0 seed 7" in info.stdout.decode(), info.stderr
    b = zili(store, "bench", "-m", "tiny", "-p", "8", "-n", "2", "-r", "1")
    assert b.returncode == 0, b.stderr
    r = zili(store, "run", "-m", "nosuch", "-p", "hi")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "no model named 'nosuch' in %s" % store in err and err.count("\n") == 1, err
    # serve -m NAME: the model's id is the name.
    port = free_port()
    env = dict(os.environ, ZILI_MODELS=str(store))
    proc = subprocess.Popen([BIN, "serve", "-m", "smol", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60 * SLOW
        while True:
            assert proc.poll() is None and time.time() < deadline, "zili serve -m smol did not come up"
            try:
                models = json.load(urllib.request.urlopen("http://127.0.0.1:%d/v1/models" % port, timeout=2))
                break
            except OSError:
                time.sleep(0.1)
        assert [m["id"] for m in models["data"]] == ["smol"]
    finally:
        proc.terminate()
        proc.wait(30)
    # rm: the file and any partial download; an unknown name is one line and exit 1.
    r = zili(store, "rm", "tiny")
    assert r.returncode == 0 and not (store / "tiny.gguf").exists()
    assert [line.split()[0] for line in zili(store, "list").stdout.decode().splitlines()] == ["NAME", "smol"]
    r = zili(store, "rm", "tiny")
    assert r.returncode == 1 and b"no model named 'tiny'" in r.stderr
    r = zili(store, "rm", "../etc")
    assert r.returncode == 1 and b"is not a model name" in r.stderr


def test_a_store_that_cannot_be_written(web, tmp_path, tiny):
    web.files["/j.gguf"] = tiny
    # As root, permissions do not bind: zili runs as nobody then, in a directory nobody can reach (pytest's own
    # temporary tree is root's alone).
    top = tempfile.mkdtemp(prefix="zili-ro-")
    os.chmod(top, 0o755)
    ro = os.path.join(top, "ro")
    os.mkdir(ro, 0o555)
    drop = (lambda: os.setuid(65534)) if os.getuid() == 0 else None
    try:
        r = zili(os.path.join(ro, "models"), "pull", web.base + "/j.gguf", preexec_fn=drop)
        assert r.returncode == 1
        err = r.stderr.decode()
        assert "model store: cannot create %s/models: Permission denied" % ro in err and err.count("\n") == 1, err
        r = zili(ro, "pull", web.base + "/j.gguf", preexec_fn=drop)
        assert r.returncode == 1
        err = r.stderr.decode()
        assert "model store: cannot write to %s: Permission denied" % ro in err and err.count("\n") == 1, err
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(top)
    # A file where the store's directory should be.
    (tmp_path / "file").write_text("x")
    r = zili(tmp_path / "file" / "models", "pull", web.base + "/j.gguf")
    assert r.returncode == 1 and b"is not a directory" in r.stderr
