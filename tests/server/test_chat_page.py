"""The chat page at / in a real browser: Debian's headless Chromium driven over the DevTools protocol (cdp.py)
against zili serve on SmolLM2 with --api-key. Screenshots go to build/artifacts/ (git-ignored).
Skips only where no Chromium is installed (scripts/setup.sh test installs it)."""
import json
import os

import pytest

from cdp import Browser, find_chromium
from conftest import ROOT, Server

ART = os.path.join(ROOT, "build", "artifacts")


@pytest.fixture(scope="module")
def page():
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    s = Server("--parallel", "2", "-c", "1024", "--api-key", "k1")
    b = Browser(binary)
    yield s, b
    b.close()
    assert s.stop() == 0


def history(b):
    chats = json.loads(b.js("localStorage.getItem('zili.chats')"))
    cur = json.loads(b.js("localStorage.getItem('zili.cur')"))
    return [m["role"] for c in chats if c["id"] == cur for m in c["messages"]]


def test_401_then_key_keeps_history_and_send_disabled_while_streaming(page):
    s, b = page
    b.goto(s.url + "/")
    b.js("localStorage.clear(); sessionStorage.clear()")
    b.goto(s.url + "/")
    b.js("document.getElementById('msg').value = 'hi'; document.getElementById('send').click()")
    b.wait("document.getElementById('error').textContent", 20)
    assert "401" in b.js("document.getElementById('error').textContent")
    assert history(b) == []
    assert b.js("document.getElementById('msg').value") == "hi"  # the text is given back
    b.js("document.getElementById('key').value = 'k1';"
         "document.getElementById('key').dispatchEvent(new Event('input'));"
         "document.getElementById('key').dispatchEvent(new Event('change'))")
    b.wait("document.getElementById('model').value.endsWith('.gguf')", 10, "the model name with the key")
    assert b.js("sessionStorage.getItem('zili.key')") == "k1"
    assert "k1" not in (b.js("JSON.stringify(localStorage)") or "")
    for n in (1, 2):
        b.js("document.getElementById('maxtok').value = '24'; document.getElementById('send').click()")
        assert b.js("document.getElementById('send').disabled") is True
        # A second send while the reply streams does nothing.
        b.js("document.getElementById('msg').value = 'again'; document.getElementById('f').requestSubmit()")
        b.wait("!document.getElementById('send').disabled", 90)
        assert history(b) == ["user", "assistant"] * n
        b.js("document.getElementById('msg').value = 'and more'")
    b.screenshot(os.path.join(ART, "chat_page_history.png"))
    assert "tok/s" in b.js("document.getElementById('stats').textContent")


def test_markdown_and_xss_render_as_dom(page):
    s, b = page
    b.goto(s.url + "/")
    b.js("const d = document.createElement('div'); d.id = 'probe'; document.body.appendChild(d);"
         "d.appendChild(md('# T\\n```py\\nx = 1 < 2\\n```\\n<img src=x onerror=alert(1)> <script>bad()</script>'))")
    assert b.js("document.querySelector('#probe pre code').textContent") == "x = 1 < 2"
    assert b.js("document.querySelectorAll('#probe .copy').length") == 1
    assert b.js("document.querySelectorAll('#probe img, #probe script').length") == 0
    assert "<img src=x onerror=alert(1)>" in b.js("document.getElementById('probe').textContent")
    b.screenshot(os.path.join(ART, "chat_page_markdown.png"))


def test_stop_mid_reply_then_new_chat(page):
    s, b = page
    b.goto(s.url + "/")
    b.js("document.getElementById('key').value = 'k1'; document.getElementById('maxtok').value = '400';"
         "document.getElementById('msg').value = 'Write a long story about a cat.';"
         "document.getElementById('send').click()")
    b.wait("(document.querySelector('#log .msg.assistant:last-child .body') || {}).textContent", 60, "some reply")
    b.click("#stop")
    b.wait("!document.getElementById('send').disabled", 30)
    chats = json.loads(b.js("localStorage.getItem('zili.chats')"))
    cur = json.loads(b.js("localStorage.getItem('zili.cur')"))
    msgs = [c for c in chats if c["id"] == cur][0]["messages"]
    assert [m["role"] for m in msgs][-2:] == ["user", "assistant"]
    assert "stopped" in msgs[-1]["info"] and msgs[-1]["content"]
    b.screenshot(os.path.join(ART, "chat_page_stopped.png"))
    n = len(chats)
    b.click("#new")
    assert history(b) == []
    assert b.js("document.querySelectorAll('#chats li').length") == n + 1
    assert b.js("document.querySelectorAll('#log .msg').length") == 0
