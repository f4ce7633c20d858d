/*
 * test_engine.c - the request engine, the prefix cache and block sharing in the KV cache.
 *
 * Prefix cache and zl_kv_seq_attach: small caches without a model, with reference counts and free counts worked
 * out by hand. Engine tests run the real SmolLM2 file (skipped when absent): greedy requests run together,
 * with chunked prefill, with the prefix cache and under KV pressure (preemption) must give exactly the tokens
 * each gives alone with a plain engine; stop strings cut the text exactly where the alone text has them;
 * max_tokens, cancellation (all KV blocks back), seeds, a full queue and bad parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "engine/engine.h"
#include "engine/kvcache.h"
#include "engine/prefix.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* KV attach and the prefix cache (no model) */

static zl_kv *small_kv(int32_t n_blocks, int32_t max_seqs)
{
    zl_kv_params p = {.n_layer = 1, .kv_dim = 4, .block_size = 4, .n_blocks = n_blocks, .max_seqs = max_seqs,
                      .type = ZL_F32};
    zl_kv *kv;
    assert_int_equal(zl_kv_create(&p, &kv, NULL), ZL_OK);
    return kv;
}

static void test_kv_attach(void **st)
{
    (void)st;
    zl_kv *kv = small_kv(8, 3);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 10, NULL), ZL_OK); /* 3 blocks */
    int32_t n;
    const int32_t *tab = zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 3);
    int32_t share[2] = {tab[0], tab[1]};
    assert_int_equal(zl_kv_seq_attach(kv, 1, share, 2, NULL), ZL_OK);
    assert_int_equal(zl_kv_seq_len(kv, 1), 8);
    assert_int_equal(zl_kv_block_refcount(kv, share[0]), 2);
    assert_int_equal(zl_kv_n_used_blocks(kv), 3);
    /* Growing the sharer takes a new block; the shared ones are not touched. */
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 9, NULL), ZL_OK);
    assert_int_equal(zl_kv_n_used_blocks(kv), 4);
    /* Attach to a non-empty sequence, or of a free block, fails and changes nothing. */
    assert_int_equal(zl_kv_seq_attach(kv, 1, share, 1, NULL), ZL_EINVAL);
    int32_t dead = 7;
    assert_int_equal(zl_kv_block_refcount(kv, dead), 0);
    assert_int_equal(zl_kv_seq_attach(kv, 2, &dead, 1, NULL), ZL_EINVAL);
    assert_int_equal(zl_kv_seq_len(kv, 2), 0);
    assert_int_equal(zl_kv_seq_attach(kv, 3, share, 1, NULL), ZL_ERANGE);
    zl_kv_seq_free(kv, 0);
    assert_int_equal(zl_kv_n_used_blocks(kv), 3); /* two shared + the sharer's own */
    zl_kv_seq_free(kv, 1);
    assert_int_equal(zl_kv_n_used_blocks(kv), 0);
    zl_kv_destroy(kv);
}

static void test_prefix_cache(void **st)
{
    (void)st;
    zl_kv *kv = small_kv(8, 2);
    zl_prefix *pc;
    assert_int_equal(zl_prefix_create(kv, &pc, NULL), ZL_OK);
    const int32_t a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const int32_t b[12] = {1, 2, 3, 4, 5, 6, 7, 9, 9, 10, 11, 12}; /* differs in the 2nd block */
    int32_t got[4];
    assert_int_equal(zl_prefix_lookup(pc, a, 12, got, 4), 0);

    assert_int_equal(zl_kv_seq_reserve(kv, 0, 12, NULL), ZL_OK);
    int32_t n;
    const int32_t *tab = zl_kv_seq_blocks(kv, 0, &n);
    int32_t t0[3] = {tab[0], tab[1], tab[2]};
    zl_prefix_insert(pc, a, t0, 3);
    assert_int_equal(zl_prefix_n_blocks(pc), 3);
    assert_int_equal(zl_kv_block_refcount(kv, t0[0]), 2);
    assert_int_equal(zl_prefix_n_evictable(pc), 0); /* the sequence still uses them */

    /* Same first block, different second block: one hit. A shorter prompt: only whole blocks. */
    assert_int_equal(zl_prefix_lookup(pc, b, 12, got, 4), 1);
    assert_int_equal(got[0], t0[0]);
    assert_int_equal(zl_prefix_lookup(pc, a, 7, got, 4), 1);
    assert_int_equal(zl_prefix_lookup(pc, a, 12, got, 2), 2); /* capped */
    assert_int_equal(zl_prefix_lookup(pc, a, 12, got, 4), 3);
    assert_memory_equal(got, t0, sizeof t0);
    /* The second block alone is not a prefix: its key includes the first. */
    assert_int_equal(zl_prefix_lookup(pc, a + 4, 8, got, 4), 0);

    /* The sequence ends: its blocks survive in the cache, evictable. */
    zl_kv_seq_free(kv, 0);
    assert_int_equal(zl_kv_n_used_blocks(kv), 3);
    assert_int_equal(zl_prefix_n_evictable(pc), 3);

    /* A new sequence attaches the first two; eviction may only take the third. */
    assert_int_equal(zl_prefix_lookup(pc, a, 11, got, 2), 2);
    assert_int_equal(zl_kv_seq_attach(kv, 1, got, 2, NULL), ZL_OK);
    assert_int_equal(zl_prefix_n_evictable(pc), 1);
    assert_int_equal(zl_prefix_evict(pc, 8), 1);
    assert_int_equal(zl_kv_n_free_blocks(kv), 6);
    assert_int_equal(zl_prefix_lookup(pc, a, 12, got, 4), 2);
    zl_kv_seq_free(kv, 1);
    /* Least recently used first, the deepest block of a prompt before its parent. */
    assert_int_equal(zl_prefix_evict(pc, 7), 1);
    assert_int_equal(zl_prefix_lookup(pc, a, 12, got, 4), 1);
    zl_prefix_destroy(pc);
    assert_int_equal(zl_kv_n_used_blocks(kv), 0);
    zl_kv_destroy(kv);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The engine on SmolLM2 */

static const char *real_model_path(void)
{
    const char *p = getenv("ZILI_TEST_MODEL");
    if (!p)
        p = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    return access(p, R_OK) == 0 ? p : NULL;
}

static zl_model *load_real(void)
{
    const char *path = real_model_path();
    if (!path)
        return NULL;
    zl_model *m;
    zl_err e = {{0}};
    if (zl_model_load(path, NULL, &m, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    return m;
}

static zl_engine *make_engine(const zl_model *m, int32_t n_parallel, int32_t n_ctx, int32_t n_blocks,
                              int32_t n_batch, bool prefix, int32_t max_queue)
{
    zl_engine_params p = zl_engine_default_params();
    p.n_parallel = n_parallel;
    p.n_ctx = n_ctx;
    p.n_blocks = n_blocks;
    p.n_batch = n_batch;
    p.n_threads = 2;
    p.prefix_cache = prefix;
    p.max_queue = max_queue;
    zl_engine *e;
    zl_err err = {{0}};
    if (zl_engine_create(m, &p, &e, &err) != ZL_OK)
        fail_msg("engine: %s", err.msg);
    return e;
}

static int32_t *tokenize(const zl_model *m, const char *text, size_t *n)
{
    int32_t *t;
    zl_err e = {{0}};
    if (zl_tokenize(zl_model_vocab(m), text, strlen(text), true, true, &t, n, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    return t;
}

typedef struct result {
    char *text;
    zl_finish finish;
    int32_t n_gen, n_cached;
} result;

static zl_req *submit(zl_engine *e, const zl_model *m, const char *prompt, const zl_req_params *p)
{
    size_t n;
    int32_t *t = tokenize(m, prompt, &n);
    zl_req *r;
    zl_err err = {{0}};
    if (zl_engine_submit(e, t, n, p, &r, &err) != ZL_OK)
        fail_msg("submit: %s", err.msg);
    free(t);
    return r;
}

/* Drains r to its end, concatenating the text and checking every chunk is valid UTF-8 on its own. */
static result drain(zl_req *r)
{
    result res = {0};
    size_t len = 0;
    res.text = calloc(1, 1);
    for (;;) {
        zl_req_chunk c;
        assert_int_equal(zl_req_next(r, -1, &c), ZL_OK);
        res.text = realloc(res.text, len + c.len + 1);
        memcpy(res.text + len, c.text, c.len + 1);
        len += c.len;
        res.n_gen = c.n_gen;
        res.n_cached = c.n_cached;
        const zl_finish f = c.finish;
        zl_req_chunk_free(&c);
        if (f != ZL_FINISH_NONE) {
            res.finish = f;
            break;
        }
    }
    zl_req_release(r);
    return res;
}

static zl_req_params greedy(int32_t max_tokens)
{
    zl_req_params p;
    zl_req_params_init(&p);
    p.sampling.temp = 0.0f;
    p.max_tokens = max_tokens;
    p.ignore_eos = true; /* fixed lengths make the comparison strict */
    return p;
}

static const char *k_prompts[] = {
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):",
    "List three colors:",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Water boils at",
    "In 1492, Columbus",
    "My favourite programming language is",
    "Question: what is 12 times 12? Answer:",
    "Les fleurs du jardin sont",
    ("The following is a conversation between a helpful assistant and a curious user who wants to learn about the "
     "history of the Roman Empire, its emperors and its roads. User: Who was the first emperor? Assistant:"),
};
enum { N_PROMPTS = sizeof k_prompts / sizeof k_prompts[0], GEN = 24 };

static void wait_idle(zl_engine *e, zl_engine_stats *s)
{
    for (int i = 0; i < 500; i++) {
        zl_engine_stats_get(e, s);
        if (s->running == 0 && s->queue_depth == 0 && s->kv_blocks_used == 0)
            return;
        usleep(10000);
    }
}

/* Each prompt alone on a plain engine (no prefix cache, one sequence, whole prompt in one batch). */
static void run_alone(const zl_model *m, result *alone)
{
    zl_engine *e = make_engine(m, 1, 256, 0, 256, false, 16);
    for (int i = 0; i < N_PROMPTS; i++) {
        zl_req_params p = greedy(GEN);
        alone[i] = drain(submit(e, m, k_prompts[i], &p));
        assert_int_equal(alone[i].n_gen, GEN);
        assert_int_equal(alone[i].finish, ZL_FINISH_LENGTH);
    }
    zl_engine_destroy(e);
}

static void check_together(const zl_model *m, zl_engine *e, const result *alone, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        zl_req *r[N_PROMPTS];
        zl_req_params p = greedy(GEN);
        for (int i = 0; i < N_PROMPTS; i++)
            r[i] = submit(e, m, k_prompts[i], &p);
        for (int i = 0; i < N_PROMPTS; i++) {
            result res = drain(r[i]);
            assert_int_equal(res.finish, ZL_FINISH_LENGTH);
            assert_int_equal(res.n_gen, GEN);
            if (strcmp(res.text, alone[i].text))
                fail_msg("prompt %d round %d: together '%s' != alone '%s'", i, round, res.text, alone[i].text);
            free(res.text);
        }
    }
    zl_engine_stats s;
    wait_idle(e, &s);
    assert_int_equal(s.kv_blocks_used, 0);
    assert_int_equal(s.running, 0);
}

static void free_results(result *r, int n)
{
    for (int i = 0; i < n; i++)
        free(r[i].text);
}

static void test_batching_invariance(void **st)
{
    (void)st;
    zl_model *m = load_real();
    if (!m)
        skip();
    result alone[N_PROMPTS];
    run_alone(m, alone);
    print_message("alone[0]: '%s'\n", alone[0].text);
    assert_non_null(strstr(alone[0].text, "Paris"));

    /* All together, one batch of decodes plus whole prompts. */
    zl_engine *e = make_engine(m, 16, 256, 0, 256, false, 64);
    check_together(m, e, alone, 1);
    zl_engine_destroy(e);
    /* Chunked prefill (8 tokens per step for everyone) with the prefix cache; the second round hits it. */
    e = make_engine(m, 16, 256, 0, 16, true, 64);
    check_together(m, e, alone, 2);
    zl_engine_stats s;
    zl_engine_stats_get(e, &s);
    print_message("prefix: %llu hits of %llu lookups, %llu cached prompt tokens, %llu steps\n",
                  (unsigned long long)s.prefix_hits, (unsigned long long)s.prefix_lookups,
                  (unsigned long long)s.cached_prompt_tokens, (unsigned long long)s.steps);
    assert_true(s.prefix_hits >= 1 && s.cached_prompt_tokens >= 32);
    zl_engine_destroy(e);
    free_results(alone, N_PROMPTS);
    zl_model_free(m);
}

static void test_kv_pressure(void **st)
{
    (void)st;
    zl_model *m = load_real();
    if (!m)
        skip();
    result alone[N_PROMPTS];
    run_alone(m, alone);
    /* 6 blocks of 16 = 96 positions (one context) for 11 requests of 10 .. 45 + 24 tokens: admission waits and
     * decodes preempt. */
    for (int prefix = 0; prefix < 2; prefix++) {
        zl_engine *e = make_engine(m, 8, 96, 6, 32, prefix, 64);
        check_together(m, e, alone, 1);
        zl_engine_stats s;
        zl_engine_stats_get(e, &s);
        print_message("kv pressure (prefix %d): %llu preemptions, %llu steps\n", prefix,
                      (unsigned long long)s.preemptions, (unsigned long long)s.steps);
        zl_engine_destroy(e);
    }
    free_results(alone, N_PROMPTS);
    zl_model_free(m);
}

static void test_stop_and_length(void **st)
{
    (void)st;
    zl_model *m = load_real();
    if (!m)
        skip();
    zl_engine *e = make_engine(m, 4, 256, 0, 64, true, 16);
    zl_req_params p = greedy(40);
    result full = drain(submit(e, m, k_prompts[1], &p));
    assert_int_equal(full.finish, ZL_FINISH_LENGTH);
    assert_int_equal(full.n_gen, 40);
    const size_t len = strlen(full.text);
    assert_true(len > 30);

    /* A stop string taken from the middle of the text: the reply is exactly the text before it. Four
     * characters almost surely span a token boundary; the text before it must not be lost. */
    char stop[8];
    memcpy(stop, full.text + 20, 4);
    stop[4] = 0;
    const size_t at = (size_t)(strstr(full.text, stop) - full.text);
    p.stop[0] = "never appears \x01";
    p.stop[1] = stop;
    p.n_stop = 2;
    result cut = drain(submit(e, m, k_prompts[1], &p));
    assert_int_equal(cut.finish, ZL_FINISH_STOP);
    assert_int_equal(strlen(cut.text), at);
    assert_memory_equal(cut.text, full.text, at);

    /* A stop string that never comes: nothing held back at the end. */
    p.stop[0] = "zzzzqqqq";
    p.n_stop = 1;
    result none = drain(submit(e, m, k_prompts[1], &p));
    assert_string_equal(none.text, full.text);
    assert_int_equal(none.finish, ZL_FINISH_LENGTH);

    /* max_tokens 1; and without ignore_eos a chat reply ends by itself with STOP. */
    zl_req_params one = greedy(1);
    result r1 = drain(submit(e, m, k_prompts[0], &one));
    assert_int_equal(r1.n_gen, 1);
    assert_int_equal(r1.finish, ZL_FINISH_LENGTH);
    zl_req_params chat = greedy(200);
    chat.ignore_eos = false;
    result rc = drain(submit(e, m,
                             "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n"
                             "<|im_start|>assistant\n",
                             &chat));
    print_message("chat: '%s' (%d tokens)\n", rc.text, rc.n_gen);
    assert_int_equal(rc.finish, ZL_FINISH_STOP);
    assert_non_null(strstr(rc.text, "Paris"));
    assert_null(strstr(rc.text, "<|im_end|>"));
    free(full.text);
    free(cut.text);
    free(none.text);
    free(r1.text);
    free(rc.text);
    zl_engine_destroy(e);
    zl_model_free(m);
}

static void test_cancel_and_seed(void **st)
{
    (void)st;
    zl_model *m = load_real();
    if (!m)
        skip();
    zl_engine *e = make_engine(m, 8, 512, 0, 64, true, 16);
    /* Cancel 8 running requests after their first text; every block they held comes back. */
    zl_req *r[8];
    zl_req_params p = greedy(400);
    for (int i = 0; i < 8; i++)
        r[i] = submit(e, m, k_prompts[i], &p);
    for (int i = 0; i < 8; i++) {
        zl_req_chunk c;
        do {
            assert_int_equal(zl_req_next(r[i], -1, &c), ZL_OK);
            zl_req_chunk_free(&c);
        } while (c.n_gen == 0 && c.finish == ZL_FINISH_NONE);
        if (i % 2)
            zl_req_release(r[i]); /* the client goes away */
        else
            zl_req_cancel(r[i]);
    }
    for (int i = 0; i < 8; i += 2) {
        result res = drain(r[i]);
        assert_int_equal(res.finish, ZL_FINISH_CANCELLED);
        assert_true(res.n_gen < 400);
        free(res.text);
    }
    zl_engine_stats s;
    wait_idle(e, &s);
    assert_int_equal(s.kv_blocks_used, 0);
    assert_int_equal(s.kv_blocks_used + s.kv_blocks_free + s.kv_blocks_cached, s.kv_blocks_total);
    assert_int_equal(s.requests_finished[ZL_FINISH_CANCELLED], 8);

    /* Same seed, same text (also when run at the same time); another seed, (almost surely) another text. */
    zl_req_params sp;
    zl_req_params_init(&sp);
    sp.sampling.temp = 1.0f;
    sp.sampling.seed = 1234;
    sp.max_tokens = 32;
    sp.ignore_eos = true;
    zl_req *a = submit(e, m, k_prompts[1], &sp), *b = submit(e, m, k_prompts[1], &sp);
    sp.sampling.seed = 99;
    zl_req *c = submit(e, m, k_prompts[1], &sp);
    result ra = drain(a), rb = drain(b), rc = drain(c);
    assert_string_equal(ra.text, rb.text);
    assert_string_not_equal(ra.text, rc.text);
    free(ra.text);
    free(rb.text);
    free(rc.text);
    zl_engine_destroy(e);
    zl_model_free(m);
}

static void test_queue_and_params(void **st)
{
    (void)st;
    zl_model *m = load_real();
    if (!m)
        skip();
    zl_engine *e = make_engine(m, 1, 64, 0, 32, false, 2);
    size_t n;
    int32_t *t = tokenize(m, k_prompts[0], &n);
    zl_req_params p = greedy(30);
    zl_err err = {{0}};
    zl_req *r[6] = {0};
    int accepted = 0, full = 0;
    for (int i = 0; i < 6; i++) {
        const int rc = zl_engine_submit(e, t, n, &p, &r[i], &err);
        if (rc == ZL_OK)
            accepted++;
        else if (rc == ZL_EFULL)
            full++;
        else
            fail_msg("submit: %s", err.msg);
    }
    /* One running at most, two waiting: at least 3 of 6 are refused. */
    assert_true(accepted <= 3 && full >= 3);
    for (int i = 0; i < 6; i++)
        if (r[i])
            free(drain(r[i]).text);

    /* Bad requests. */
    zl_req *x;
    assert_int_equal(zl_engine_submit(e, t, 0, &p, &x, &err), ZL_ERANGE);
    int32_t big[64] = {0};
    assert_int_equal(zl_engine_submit(e, big, 64, &p, &x, &err), ZL_ERANGE); /* no room for a reply */
    int32_t oov = 49152;
    assert_int_equal(zl_engine_submit(e, &oov, 1, &p, &x, &err), ZL_ERANGE);
    zl_logit_bias lb = {.token = 49152, .bias = 1.0f};
    zl_req_params pb = p;
    pb.bias = &lb;
    pb.n_bias = 1;
    assert_int_equal(zl_engine_submit(e, t, n, &pb, &x, &err), ZL_EINVAL);
    assert_non_null(strstr(err.msg, "49152"));
    zl_req_params pt = p;
    pt.sampling.top_p = 2.0f;
    assert_int_equal(zl_engine_submit(e, t, n, &pt, &x, &err), ZL_EINVAL);

    /* logit_bias -inf on the greedy choice changes the first token; logprobs are <= 0 and sorted. */
    zl_req_params p1 = greedy(1);
    p1.logprobs = true;
    p1.top_logprobs = 5;
    zl_req *q = submit(e, m, k_prompts[0], &p1);
    zl_req_chunk c;
    int32_t first = -1;
    do {
        assert_int_equal(zl_req_next(q, -1, &c), ZL_OK);
        if (c.n_lp) {
            first = c.lp[0].token;
            assert_true(c.lp[0].logprob <= 0.0f);
            assert_int_equal(c.lp[0].n_top, 5);
            assert_int_equal(c.lp[0].top_token[0], first);
            assert_float_equal(c.lp[0].top_logprob[0], c.lp[0].logprob, 1e-6);
            for (int i = 1; i < 5; i++)
                assert_true(c.lp[0].top_logprob[i] <= c.lp[0].top_logprob[i - 1]);
        }
        zl_req_chunk_free(&c);
    } while (c.finish == ZL_FINISH_NONE);
    zl_req_release(q);
    assert_true(first >= 0);
    lb.token = first;
    lb.bias = -INFINITY;
    p1.bias = &lb;
    p1.n_bias = 1;
    q = submit(e, m, k_prompts[0], &p1);
    int32_t second = -1;
    do {
        assert_int_equal(zl_req_next(q, -1, &c), ZL_OK);
        if (c.n_lp)
            second = c.lp[0].token;
        zl_req_chunk_free(&c);
    } while (c.finish == ZL_FINISH_NONE);
    zl_req_release(q);
    assert_true(second >= 0 && second != first);
    free(t);
    zl_engine_destroy(e);
    zl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_attach),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_batching_invariance),
        cmocka_unit_test(test_kv_pressure),
        cmocka_unit_test(test_stop_and_length),
        cmocka_unit_test(test_cancel_and_seed),
        cmocka_unit_test(test_queue_and_params),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
