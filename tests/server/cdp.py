"""A small Chrome DevTools Protocol client for the browser tests: starts Debian's headless Chromium with a fresh
profile, opens one page and drives it over the page's DevTools websocket (websocket-client).

Only what the tests use: commands with their replies (`call`), JavaScript evaluation (`js`, `wait`), real mouse
clicks and typing through the Input domain, screenshots, and request interception (`intercept`: the Fetch domain
answers matching requests with a given status and body, so that a test can feed the page replies the model would
not write, such as markup).
"""
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. close() ends the browser and removes its profile."""

    def __init__(self, binary, timeout=30):
        self.profile = tempfile.mkdtemp(prefix="zili-chromium-")
        self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
        args = [binary, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--remote-debugging-port=0", "--user-data-dir=" + self.profile, "--window-size=1100,800",
                "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.ws = None
        self.ids = itertools.count(1)
        self.events = []
        self.handlers = {}
        try:
            self._connect(timeout)
        except Exception:
            self.close()
            raise

    def _connect(self, timeout):
        # Chromium writes the port it chose into DevToolsActivePort in the profile.
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        port = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise CDPError("chromium exited with %d: %s" % (self.proc.returncode, self.log.read()[-2000:]))
            try:
                with open(port_file) as f:
                    port = int(f.readline())
                break
            except (OSError, ValueError):
                time.sleep(0.1)
        if port is None:
            raise CDPError("chromium did not open its DevTools port in %d s" % timeout)
        pages = []
        while time.time() < deadline and not pages:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
            except OSError:
                pass
            if not pages:
                time.sleep(0.1)
        if not pages:
            raise CDPError("chromium shows no page target")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def close(self):
        if self.ws:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # ---- protocol ------------------------------------------------------------------------------------------------

    def _dispatch(self, msg):
        h = self.handlers.get(msg.get("method"))
        if h:
            h(msg.get("params", {}))
        else:
            self.events.append(msg)
            del self.events[:-200]

    def _pump(self, timeout):
        """Reads one message (or none within timeout); events go to their handler. Returns the message."""
        self.ws.settimeout(timeout)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        msg = json.loads(raw)
        if "method" in msg:
            self._dispatch(msg)
        return msg

    def send(self, method, params=None):
        """Sends a command without waiting for its reply (used from event handlers); returns its id."""
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        return i

    def call(self, method, params=None, timeout=30):
        i = self.send(method, params)
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self._pump(max(0.01, deadline - time.time()))
            if msg and msg.get("id") == i:
                if "error" in msg:
                    raise CDPError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
        raise CDPError("%s: no reply in %d s" % (method, timeout))

    def js(self, expr, timeout=30):
        """The value of a JavaScript expression (promises awaited); a thrown exception raises CDPError."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True,
                                           "userGesture": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError("JavaScript: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        return r["result"].get("value")

    def wait(self, expr, timeout=30, what=None):
        """Waits until a JavaScript expression is truthy; returns its value."""
        deadline = time.time() + timeout
        while True:
            v = self.js(expr)
            if v:
                return v
            if time.time() > deadline:
                raise CDPError("timed out after %d s waiting for %s" % (timeout, what or expr))
            self._pump(0.05)

    def goto(self, url, timeout=30):
        self.call("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete' && location.href.startsWith(%s)" % json.dumps(url), timeout)

    # ---- input ---------------------------------------------------------------------------------------------------

    def click(self, selector):
        """A real mouse click at the centre of the element (a disabled button ignores it, as for a person)."""
        box = self.js("(() => { const e = document.querySelector(%s); if (!e) return null; e.scrollIntoView({block: "
                      "'center'}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
                      "})()" % json.dumps(selector))
        if not box:
            raise CDPError("no element matches %s" % selector)
        x, y = box
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for t in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": t, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type(self, selector, text):
        """Focuses the element and types text into it (Input.insertText: input events as from a keyboard)."""
        self.js("document.querySelector(%s).focus()" % json.dumps(selector))
        self.call("Input.insertText", {"text": text})

    def key(self, key, code, keycode):
        """One key press (keyDown + keyUp) on the focused element, e.g. key("Enter", "Enter", 13)."""
        for t in ("keyDown", "keyUp"):
            p = {"type": t, "key": key, "code": code, "windowsVirtualKeyCode": keycode}
            if t == "keyDown" and key == "Enter":
                p["text"] = "\r"
            self.call("Input.dispatchKeyEvent", p)

    # ---- artifacts and interception --------------------------------------------------------------------------------

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def intercept(self, url_pattern, reply):
        """Answers requests matching url_pattern (Fetch's wildcards) with reply(request) = (status, headers dict,
        body bytes) instead of sending them; reply=None ends the interception."""
        if reply is None:
            self.handlers.pop("Fetch.requestPaused", None)
            self.call("Fetch.disable")
            return

        def paused(p):
            status, headers, body = reply(p["request"])
            self.send("Fetch.fulfillRequest", {
                "requestId": p["requestId"], "responseCode": status,
                "responseHeaders": [{"name": k, "value": v} for k, v in headers.items()],
                "body": base64.b64encode(body).decode()})

        self.handlers["Fetch.requestPaused"] = paused
        self.call("Fetch.enable", {"patterns": [{"urlPattern": url_pattern, "requestStage": "Request"}]})
