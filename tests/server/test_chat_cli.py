"""`zili chat` driven through a pseudo-terminal (issue 27, item 2), on SmolLM2 with greedy decoding: Ctrl-C in the
middle of a reply keeps the partial reply and the program, Ctrl-D quits, empty lines are ignored, a conversation
longer than a small context drops its oldest turns, the slash commands, and libedit's arrow keys (editing, history)
never reaching the model. What reached the model is read back with /save, whose JSON the tests parse."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from conftest import BIN, MODEL, ROOT, SLOW

GEMMA = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
LONG_QUESTION = "Write a long story about a dragon who learns to paint."


class Chat:
    """zili chat on the child side of a pty (its controlling terminal, so Ctrl-C is a real SIGINT)."""

    def __init__(self, *args, model=MODEL):
        if not os.path.exists(BIN) or not os.path.exists(model):
            pytest.skip(f"needs {BIN} and {model}")
        argv = [BIN, "chat", "-m", model, "--temp", "0", *args]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(BIN, argv)
        self.out = b""
        self.pos = 0  # how far expect() has consumed self.out
        self.expect(rb"> ")

    def read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return None
        if not data:
            return None
        self.out += data
        return True

    def expect(self, pattern, timeout=60):
        """Waits for pattern (bytes regex) after what earlier expects consumed; returns the match."""
        deadline = time.time() + timeout * SLOW
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.out, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.time()
            if left <= 0 or self.read(left) is None:
                m = rx.search(self.out, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise AssertionError("no %r in the output; it was:\n%s" % (pattern, self.out.decode(errors="replace")))

    def send(self, data):
        os.write(self.fd, data)

    def ask(self, text, timeout=120):
        """Sends a line and waits for the next prompt; returns what came between."""
        start = len(self.out)
        self.send(text.encode() + b"\r")
        self.expect(rb"\n> ", timeout)
        return self.out[start:self.pos].decode(errors="replace")

    def save(self, path):
        self.send(b"/save " + str(path).encode() + b"\r")
        self.expect(rb"\(saved \d+ messages to [^)]*\)")
        self.expect(rb"> ")
        with open(path) as f:
            return json.load(f)

    def quit(self, timeout=30):
        self.send(b"\x04")
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self.read(0.1)
        self.kill()
        raise AssertionError("zili chat did not quit on Ctrl-D")

    def alive(self):
        return os.waitpid(self.pid, os.WNOHANG)[0] == 0

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


@pytest.fixture
def chat():
    made = []

    def start(*args, **kw):
        c = Chat(*args, **kw)
        made.append(c)
        return c
    yield start
    for c in made:
        c.kill()


def greedy_reply(question, n, *extra):
    """The same first turn through `zili run --chat` (an independent path through the CLI): its greedy reply."""
    r = subprocess.run([BIN, "run", "-m", MODEL, "--chat", "--temp", "0", "-n", str(n), "-p", question, *extra],
                       capture_output=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_one_session_ctrl_c_empty_lines_and_the_end_of_generation(chat, tmp_path):
    """One zili chat process: empty lines, Ctrl-C at the prompt, Ctrl-C in a reply, a reply to its end, Ctrl-D."""
    head40 = greedy_reply(LONG_QUESTION, 40)
    assert len(head40) >= 80, head40
    c = chat()
    # Empty and blank lines are ignored (nothing is sent; the prompt comes back).
    for line in (b"\r", b"   \r", b"\t\r"):
        c.send(line)
        c.expect(rb"> ")
    # Ctrl-C at the prompt abandons the line being typed.
    c.send(b"this line is abandoned")
    c.expect(rb"abandoned")
    c.send(b"\x03")
    c.expect(rb"\^C\r?\n> ")
    assert c.alive()
    assert c.save(tmp_path / "empty.json") == []
    # Ctrl-C in the middle of a reply: once its first 80 characters (as `zili run` gives them) are out.
    c.send(LONG_QUESTION.encode() + b"\r")
    c.expect(re.escape(head40[:80].replace("\n", "\r\n").encode()), timeout=120)
    c.send(b"\x03")
    n_kept = int(c.expect(rb"\[stopped: (\d+) tokens kept\]").group(1))
    c.expect(rb"> ")
    assert c.alive()
    # The next reply runs to the model's end of generation (the tokens/s line), not to a limit.
    reply2 = c.ask("What is the capital of France?")
    assert "Paris" in reply2 and re.search(r"\[\d+ tokens, [0-9.]+ tokens/s\]", reply2), reply2
    assert "[stopped" not in reply2
    msgs = c.save(tmp_path / "conv.json")
    assert [x["role"] for x in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == LONG_QUESTION and msgs[2]["content"] == "What is the capital of France?"
    # The partial reply is the beginning of the uninterrupted greedy reply.
    partial = msgs[1]["content"]
    assert len(partial) >= 80 and n_kept > 0, c.out
    assert head40.startswith(partial) if n_kept <= 40 else partial.startswith(head40), (partial, head40)
    t0 = time.time()
    assert c.quit() == 0
    assert time.time() - t0 < 10 * SLOW


def test_n_caps_the_reply_slash_commands_and_line_editing(chat, tmp_path):
    c = chat("-n", "8")
    out = c.ask("/help")
    for cmd in ("/clear", "/system TEXT", "/save FILE", "/load FILE", "/help"):
        assert cmd in out
    assert "(no system message)" in c.ask("/system")
    assert "(system message set)" in c.ask("/system You answer in French.")
    assert "system: You answer in French." in c.ask("/system")
    out = c.ask("Hello")
    assert "[stopped at the -n limit of 8 tokens]" in out
    msgs = c.save(tmp_path / "one.json")
    assert [x["role"] for x in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == "You answer in French." and msgs[1]["content"] == "Hello"
    assert msgs[2]["content"] == greedy_reply("Hello", 8, "--system", "You answer in French.")
    assert "(conversation cleared)" in c.ask("/clear")
    assert c.save(tmp_path / "two.json") == [msgs[0]]
    # /load: a conversation written by hand, then a question on top of it.
    conv = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada!"}]
    (tmp_path / "in.json").write_text(json.dumps({"messages": conv}))
    assert "(loaded 2 messages from" in c.ask("/load %s" % (tmp_path / "in.json"))
    c.ask("What is my name?")
    msgs = c.save(tmp_path / "three.json")
    assert msgs[:2] == conv and msgs[2] == {"role": "user", "content": "What is my name?"}
    # Bad files leave the conversation as it was.
    (tmp_path / "bad1.json").write_text("[{\"role\": \"wizard\", \"content\": \"x\"}]")
    (tmp_path / "bad2.json").write_text("{not json")
    (tmp_path / "bad3.json").write_text("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", "
                                        "\"content\": \"late\"}]")
    assert "message 0: needs \"role\"" in c.ask("/load %s" % (tmp_path / "bad1.json"))
    assert "bad2.json:" in c.ask("/load %s" % (tmp_path / "bad2.json"))
    assert "message 1: needs \"role\"" in c.ask("/load %s" % (tmp_path / "bad3.json"))
    assert "No such file" in c.ask("/load %s" % (tmp_path / "missing.json"))
    assert "cannot write" in c.ask("/save %s" % (tmp_path / "no" / "dir.json"))
    assert "unknown command '/frob'" in c.ask("/frob x")
    assert c.save(tmp_path / "four.json") == msgs
    # Line editing: "abd", Left, "c" is the line "abcd"; Up recalls it and Home + "x" makes "xabcd"; two Ups go
    # back to "abcd", sent unchanged. No escape sequence reaches the model.
    assert "(conversation cleared)" in c.ask("/clear")
    c.ask("abd\x1b[Dc")
    c.ask("\x1b[A\x1b[Hx")
    c.ask("\x1b[A\x1b[A")
    msgs = c.save(tmp_path / "edit.json")
    assert [x["content"] for x in msgs if x["role"] == "user"] == ["abcd", "xabcd", "abcd"]
    assert not any("\x1b" in x["content"] or "[D" in x["content"] for x in msgs)
    assert c.quit() == 0


def test_context_overflow_drops_the_oldest_turns(chat, tmp_path):
    c = chat("-c", "128", "-n", "24")
    questions = ["What is the capital of France?", "Name a color of the sky.", "What is two plus two?",
                 "What animal says moo?"]
    outs = [c.ask(q) for q in questions]
    notices = [o for o in outs if re.search(r"zili: context full: dropped the oldest \d+ turns?\r?\n", o)]
    assert notices, "".join(outs)
    assert c.alive()
    msgs = c.save(tmp_path / "conv.json")
    users = [x["content"] for x in msgs if x["role"] == "user"]
    assert users[-1] == questions[-1] and questions[0] not in users
    assert users == questions[len(questions) - len(users):]  # what is left is the newest turns, in order
    assert c.quit() == 0


def test_piped_input_without_a_terminal():
    if not os.path.exists(BIN) or not os.path.exists(MODEL):
        pytest.skip(f"needs {BIN} and {MODEL}")
    # No -n: the reply runs to the end of generation, as an uncapped `zili run` (-n -1) gives it.
    r = subprocess.run([BIN, "chat", "-m", MODEL, "--temp", "0"], input=b"\n\nWhat is 2+2?\n\n",
                       capture_output=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == greedy_reply("What is 2+2?", -1) + "\n"


def test_a_model_without_a_template_names_the_choices():
    if not os.path.exists(BIN) or not os.path.exists(GEMMA):
        pytest.skip(f"needs {BIN} and {GEMMA}")
    r = subprocess.run([BIN, "chat", "-m", GEMMA], input=b"", capture_output=True, timeout=60 * SLOW)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "has no chat template; name one with --chat-template NAME (chatml," in err and "gemma" in err
    assert err.count("\n") == 1
    r = subprocess.run([BIN, "chat", "-m", GEMMA, "--chat-template", "gemma", "--temp", "0", "-n", "4"],
                       input=b"Hi\n", capture_output=True, timeout=60 * SLOW)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
