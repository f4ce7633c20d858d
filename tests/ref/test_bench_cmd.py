"""`zili bench`: runs both tests on SmolLM2 and on a random model, prints well-formed JSON and a table, and refuses
bad arguments with a usage error. Checks shape only: speed is not a test."""
import json
import subprocess

import pytest

from common import SMOLLM2, random_models, zili_bin


def bench(*args):
    return subprocess.run([zili_bin(), "bench", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", [SMOLLM2, None], ids=["smollm2", "random-spm-q8_0"])
def test_bench_json(model):
    if model is None:
        model = next(m.path for m in random_models() if m.name == "spm-q8_0")
    r = bench("-m", model, "-p", "16", "-n", "4", "-r", "2", "-t", "2", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert [x["test"] for x in j["results"]] == ["pp16", "tg4"]
    assert all(x["tokens_per_s"] > 0 and x["sd"] >= 0 for x in j["results"])
    assert j["threads"] == 2 and j["reps"] == 2 and j["peak_rss_mib"] > 0 and j["size_mib"] > 0


def test_bench_table_and_errors():
    r = bench("-m", SMOLLM2, "-p", "0", "-n", "2", "-r", "1", "--no-mmap")
    assert r.returncode == 0, r.stderr
    assert "tg2" in r.stdout and "pp" not in r.stdout.split("peak")[0].split("test")[1]
    assert "read in" in r.stdout
    for bad in (["-p", "0", "-n", "0"], ["-r", "0"], ["-p", "-3"], ["--frobnicate"], ["-n"]):
        r = bench("-m", SMOLLM2, *bad)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert r.stderr.startswith("zili: ") and r.stderr.count("\n") == 1, r.stderr
    r = bench("-m", "/nonexistent.gguf")
    assert r.returncode == 1 and "nonexistent" in r.stderr


def test_bench_parallel():
    """`-s`: batched decode through the engine, one result per sequence count, the speed-up against S = 1."""
    r = bench("-m", SMOLLM2, "-s", "1,3", "-p", "5", "-n", "6", "-r", "1", "-t", "2", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["prompt"] == 5 and j["gen"] == 6
    assert [x["sequences"] for x in j["results"]] == [1, 3]
    assert all(x["decode_tokens_per_s"] > 0 and x["prefill_s"] > 0 for x in j["results"])
    r = bench("-m", SMOLLM2, "-s", "2,1", "-n", "3", "-r", "1")
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith("|") and l.split("|")[1].strip().isdigit()]
    assert [l.split("|")[1].strip() for l in rows] == ["2", "1"]
    assert rows[1].split("|")[4].strip() == "1.00x" and rows[0].split("|")[4].strip() == ""
    for bad in (["-s", "0"], ["-s", "1,,2"], ["-s", "x"], ["-s", "2", "-n", "1"], ["-s", "1,2,"]):
        r = bench("-m", SMOLLM2, *bad)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert r.stderr.startswith("zili: ") and r.stderr.count("\n") == 1, r.stderr


def test_bench_batch_size():
    """The batch size: chosen from the model when -b is not given (SmolLM2's 94 MiB of weights: 64, the smallest
    the rule picks; 128 where prompts take the AMX tiles, whose budget is twice as large), as given with -b, never
    above the context; reported in the JSON."""
    def n_batch(*args):
        r = bench("-m", SMOLLM2, "-n", "1", "-r", "1", "-t", "2", "--json", *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["n_batch"]

    tiles = "+amx" in bench("-m", SMOLLM2, "-n", "1", "-p", "0", "-r", "1", "--json").stdout
    assert n_batch("-p", "300") == (128 if tiles else 64)
    assert n_batch("-p", "300", "-b", "256") == 256
    assert n_batch("-p", "40") == 41  # context of 41 tokens: one batch holds all of it
