/*
 * test_model.c - model loading and the llama forward pass.
 *
 * A tiny llama model with F32 weights is written as a GGUF file (tests/unit/common/gguf_builder) and its logits
 * are checked against a naive double-precision forward pass written here from the architecture's definition
 * (RMSNorm, RoPE on pairs (2i, 2i+1), causal grouped-query attention, SwiGLU). Variants of the same file test the
 * loader's checks. On the real SmolLM2 file (skipped when absent) the logits must not depend on how the tokens
 * are batched, and greedy decoding must know the capital of France.
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

#include "common/gguf_builder.h"
#include "core/dtype.h"
#include "model/model.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* The tiny model */

enum { EMBD = 32, HEAD = 4, HEAD_KV = 2, HD = 8, FF = 48, LAYER = 2, VOCAB = 40, CTX = 64 };
#define THETA 10000.0f
#define EPS 1e-5f

typedef struct tiny_opts {
    const char *arch;      /* general.architecture */
    const char *omit;      /* tensor left out of the file */
    const char *reshape;   /* tensor written with one extra row */
    const char *retype;    /* matrix written as IQ4_NL (no kernels in zili) */
    const char *extra;     /* an extra tensor the architecture does not use */
    int head_count_kv;     /* value of attention.head_count_kv */
    bool no_embd_key;      /* drop llama.embedding_length */
    bool tied;             /* no output.weight */
    bool rope_freqs;       /* llama3-style rope_freqs.weight: per-pair divisors of the angle */
    float linear_factor;   /* rope.scaling.type linear with this factor; 0: none */
    bool untyped_factor;   /* write only rope.scaling.factor (llama.cpp reads that as linear) */
} tiny_opts;

static tiny_opts tiny_default(void)
{
    tiny_opts o = {.arch = "llama", .head_count_kv = HEAD_KV};
    return o;
}

typedef struct tensor_def {
    char name[48];
    int64_t ne0, ne1;   /* as written */
    uint32_t type;
    float *data;        /* ne0 * ne1 floats (F32) */
} tensor_def;

typedef struct tiny_model {
    tensor_def t[64];
    int n;
} tiny_model;

/* Deterministic values in [-1, 1): a 64-bit LCG, seeded per tensor by its name. */
static float lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void add_tensor(tiny_model *tm, const char *name, int64_t ne0, int64_t ne1, float scale, float offset)
{
    tensor_def *t = &tm->t[tm->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->type = ZL_F32;
    t->data = malloc((size_t)(ne0 * ne1) * sizeof(float));
    uint64_t s = 1469598103934665603ull;
    for (const char *c = name; *c; c++)
        s = (s ^ (uint8_t)*c) * 1099511628211ull;
    for (int64_t i = 0; i < ne0 * ne1; i++)
        t->data[i] = offset + scale * lcg_next(&s);
}

static const tensor_def *find_def(const tiny_model *tm, const char *name)
{
    for (int i = 0; i < tm->n; i++)
        if (strcmp(tm->t[i].name, name) == 0)
            return &tm->t[i];
    return NULL;
}

static void tiny_make(tiny_model *tm, const tiny_opts *o)
{
    memset(tm, 0, sizeof *tm);
    char nm[48];
    add_tensor(tm, "token_embd.weight", EMBD, VOCAB, 1.0f, 0);
    add_tensor(tm, "output_norm.weight", EMBD, 1, 0.2f, 1.0f);
    if (!o->tied)
        add_tensor(tm, "output.weight", EMBD, VOCAB, 0.3f, 0);
    for (int il = 0; il < LAYER; il++) {
#define T(suffix, ne0, ne1, sc, off)                                                                            \
    snprintf(nm, sizeof nm, "blk.%d." suffix, il);                                                              \
    add_tensor(tm, nm, ne0, ne1, sc, off)
        T("attn_norm.weight", EMBD, 1, 0.2f, 1.0f);
        T("attn_q.weight", EMBD, HEAD * HD, 0.3f, 0);
        T("attn_k.weight", EMBD, HEAD_KV * HD, 0.3f, 0);
        T("attn_v.weight", EMBD, HEAD_KV * HD, 0.3f, 0);
        T("attn_output.weight", HEAD * HD, EMBD, 0.2f, 0);
        T("ffn_norm.weight", EMBD, 1, 0.2f, 1.0f);
        T("ffn_gate.weight", EMBD, FF, 0.3f, 0);
        T("ffn_up.weight", EMBD, FF, 0.3f, 0);
        T("ffn_down.weight", FF, EMBD, 0.2f, 0);
#undef T
    }
    if (o->extra)
        add_tensor(tm, o->extra, EMBD, 1, 1.0f, 0);
    if (o->rope_freqs)
        add_tensor(tm, "rope_freqs.weight", HD / 2, 1, 3.0f, 4.0f); /* divisors in [1, 7) */
}

static void tiny_free(tiny_model *tm)
{
    for (int i = 0; i < tm->n; i++)
        free(tm->t[i].data);
}

/* Writes tm (with the damage o asks for) as a GGUF file; returns its malloc'd path. */
static char *tiny_write(const tiny_model *tm, const tiny_opts *o)
{
    gguf_builder b;
    gb_init(&b);
    int n_written = 0;
    for (int i = 0; i < tm->n; i++)
        n_written += !(o->omit && strcmp(o->omit, tm->t[i].name) == 0);
    const int n_kv = 14 - (o->no_embd_key ? 1 : 0) + (o->linear_factor != 0 ? (o->untyped_factor ? 1 : 2) : 0);
    gb_header(&b, 3, (uint64_t)n_written, (uint64_t)n_kv);
    gb_kv_str(&b, "general.architecture", o->arch);
    gb_kv_u32(&b, "llama.context_length", CTX);
    if (!o->no_embd_key)
        gb_kv_u32(&b, "llama.embedding_length", EMBD);
    gb_kv_u32(&b, "llama.block_count", LAYER);
    gb_kv_u32(&b, "llama.feed_forward_length", FF);
    gb_kv_u32(&b, "llama.attention.head_count", HEAD);
    gb_kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)o->head_count_kv);
    gb_kv_f32(&b, "llama.rope.freq_base", THETA);
    gb_kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", EPS);
    gb_kv_u32(&b, "llama.rope.dimension_count", HD);
    if (o->linear_factor != 0) {
        if (!o->untyped_factor)
            gb_kv_str(&b, "llama.rope.scaling.type", "linear");
        gb_kv_f32(&b, "llama.rope.scaling.factor", o->linear_factor);
    }
    gb_kv_str(&b, "tokenizer.ggml.model", "llama");
    const char *toks[VOCAB];
    char tok_text[VOCAB][8];
    for (int i = 0; i < VOCAB; i++) {
        snprintf(tok_text[i], sizeof tok_text[i], "t%d", i);
        toks[i] = tok_text[i];
    }
    gb_kv_arr_str(&b, "tokenizer.ggml.tokens", toks, VOCAB);
    gb_kv_arr(&b, "tokenizer.ggml.scores", GGUF_T_FLOAT32, VOCAB);
    for (int i = 0; i < VOCAB; i++)
        gb_f32(&b, (float)-i);
    gb_kv_u32(&b, "general.alignment", 32);

    uint64_t off = 0;
    uint64_t offs[64];
    size_t sizes[64];
    for (int i = 0; i < tm->n; i++) {
        const tensor_def *t = &tm->t[i];
        if (o->omit && strcmp(o->omit, t->name) == 0)
            continue;
        int64_t ne1 = t->ne1 + (o->reshape && strcmp(o->reshape, t->name) == 0 ? 1 : 0);
        uint32_t type = o->retype && strcmp(o->retype, t->name) == 0 ? ZL_IQ4_NL : ZL_F32;
        size_t row;
        zl_row_size(type, t->ne0, &row);
        sizes[i] = row * (size_t)ne1;
        offs[i] = off;
        const uint64_t ne[2] = {(uint64_t)t->ne0, (uint64_t)ne1};
        gb_tensor_info(&b, t->name, ne1 == 1 ? 1 : 2, ne, type, off);
        off += (sizes[i] + 31) / 32 * 32;
    }
    gb_align(&b, 32);
    const size_t data_start = b.len;
    for (int i = 0; i < tm->n; i++) {
        const tensor_def *t = &tm->t[i];
        if (o->omit && strcmp(o->omit, t->name) == 0)
            continue;
        assert_int_equal(b.len - data_start, offs[i]);
        if (sizes[i] == (size_t)(t->ne0 * t->ne1) * sizeof(float)) {
            gb_bytes(&b, t->data, sizes[i]);
        } else {
            /* reshaped or retyped: real rows first, then zeros */
            size_t have = (size_t)(t->ne0 * t->ne1) * sizeof(float);
            gb_bytes(&b, t->data, have < sizes[i] ? have : sizes[i]);
            if (have < sizes[i])
                gb_zeros(&b, sizes[i] - have);
        }
        gb_align(&b, 32);
    }
    assert_false(b.oom);
    char *path = strdup("/tmp/zili_test_model_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.buf, b.len), (ssize_t)b.len);
    close(fd);
    gb_free(&b);
    return path;
}

/* Writes the variant and tries to load it; returns the status (the model, if loaded, in *out or freed). */
static int tiny_load(const tiny_opts *o, zl_model **out, zl_err *e, tiny_model *keep)
{
    tiny_model tm;
    tiny_make(&tm, o);
    char *path = tiny_write(&tm, o);
    zl_model *m = NULL;
    int rc = zl_model_load(path, NULL, &m, e);
    unlink(path);
    free(path);
    if (keep)
        *keep = tm;
    else
        tiny_free(&tm);
    if (out)
        *out = m;
    else
        zl_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The reference: a naive forward pass in double over one sequence, all positions. */

/* y[r] = sum_c W[r][c] x[c], W stored as rows of n_in (ggml layout (n_in, n_out)). */
static void ref_matvec(const tensor_def *w, const double *x, double *y)
{
    for (int64_t r = 0; r < w->ne1; r++) {
        double s = 0;
        for (int64_t c = 0; c < w->ne0; c++)
            s += (double)w->data[r * w->ne0 + c] * x[c];
        y[r] = s;
    }
}

static void ref_rmsnorm(const double *x, const tensor_def *g, double *y)
{
    double ss = 0;
    for (int c = 0; c < EMBD; c++)
        ss += x[c] * x[c];
    const double sc = 1.0 / sqrt(ss / EMBD + (double)EPS);
    for (int c = 0; c < EMBD; c++)
        y[c] = x[c] * sc * g->data[c];
}

/* Rotates pairs (2i, 2i+1) of each head by pos * THETA^(-2i/HD) / ff[i] / factor (linear scaling; llama3
 * frequency factors divide the angle). */
static void ref_rope(double *v, int n_heads, int pos, const float *ff, double factor)
{
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < HD / 2; i++) {
            const double ang = pos * pow((double)THETA, -2.0 * i / HD) / (ff ? ff[i] : 1.0) / factor;
            double *p = v + h * HD + 2 * i;
            const double a = p[0], b = p[1];
            p[0] = a * cos(ang) - b * sin(ang);
            p[1] = a * sin(ang) + b * cos(ang);
        }
}

static void ref_forward(const tiny_model *tm, const tiny_opts *opt, const int32_t *tok, int n,
                        double *logits /* (n, VOCAB) */)
{
    const tensor_def *rf = find_def(tm, "rope_freqs.weight");
    const float *ff = rf ? rf->data : NULL;
    const double factor = opt->linear_factor != 0 ? opt->linear_factor : 1.0;
    static double x[CTX][EMBD], K[CTX][HEAD_KV * HD], V[CTX][HEAD_KV * HD];
    double xb[EMBD], q[HEAD * HD], att[HEAD * HD], o[EMBD], g[FF], u[FF], sc[CTX];
    char nm[48];
    const tensor_def *emb = find_def(tm, "token_embd.weight");
    for (int p = 0; p < n; p++)
        for (int c = 0; c < EMBD; c++)
            x[p][c] = emb->data[tok[p] * EMBD + c];
#define W(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), find_def(tm, nm))
    for (int il = 0; il < LAYER; il++) {
        /* K, V of every position first (causality is in the attention loop). */
        for (int p = 0; p < n; p++) {
            ref_rmsnorm(x[p], W("attn_norm.weight"), xb);
            ref_matvec(W("attn_k.weight"), xb, K[p]);
            ref_matvec(W("attn_v.weight"), xb, V[p]);
            ref_rope(K[p], HEAD_KV, p, ff, factor);
        }
        for (int p = 0; p < n; p++) {
            ref_rmsnorm(x[p], W("attn_norm.weight"), xb);
            ref_matvec(W("attn_q.weight"), xb, q);
            ref_rope(q, HEAD, p, ff, factor);
            for (int h = 0; h < HEAD; h++) {
                const int hk = h / (HEAD / HEAD_KV);
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t <= p; t++) {
                    double d = 0;
                    for (int c = 0; c < HD; c++)
                        d += q[h * HD + c] * K[t][hk * HD + c];
                    sc[t] = d / sqrt((double)HD);
                    mx = fmax(mx, sc[t]);
                }
                for (int t = 0; t <= p; t++)
                    sum += (sc[t] = exp(sc[t] - mx));
                for (int c = 0; c < HD; c++) {
                    double a = 0;
                    for (int t = 0; t <= p; t++)
                        a += sc[t] / sum * V[t][hk * HD + c];
                    att[h * HD + c] = a;
                }
            }
            ref_matvec(W("attn_output.weight"), att, o);
            for (int c = 0; c < EMBD; c++)
                x[p][c] += o[c];
            ref_rmsnorm(x[p], W("ffn_norm.weight"), xb);
            ref_matvec(W("ffn_gate.weight"), xb, g);
            ref_matvec(W("ffn_up.weight"), xb, u);
            for (int f = 0; f < FF; f++)
                g[f] = g[f] / (1.0 + exp(-g[f])) * u[f];
            ref_matvec(W("ffn_down.weight"), g, o);
            for (int c = 0; c < EMBD; c++)
                x[p][c] += o[c];
        }
    }
#undef W
    const tensor_def *out = find_def(tm, "output.weight");
    if (!out)
        out = emb;
    for (int p = 0; p < n; p++) {
        ref_rmsnorm(x[p], find_def(tm, "output_norm.weight"), xb);
        ref_matvec(out, xb, logits + p * VOCAB);
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Helpers */

typedef struct runner {
    zl_cpu *cpu;
    zl_kv *kv;
    zl_fwd *fwd;
} runner;

static runner runner_make(const zl_model *m, int32_t block_size, int32_t n_blocks, int32_t max_seqs, uint32_t type,
                          int32_t max_tokens)
{
    const zl_hparams *h = zl_model_hparams(m);
    runner r;
    zl_err e;
    r.cpu = zl_cpu_create(2);
    assert_non_null(r.cpu);
    zl_kv_params kp = {.n_layer = h->n_layer, .kv_dim = h->n_head_kv * h->head_dim, .block_size = block_size,
                       .n_blocks = n_blocks, .max_seqs = max_seqs, .type = type};
    assert_int_equal(zl_kv_create(&kp, &r.kv, &e), ZL_OK);
    assert_int_equal(zl_fwd_create(m, max_tokens, &r.fwd, &e), ZL_OK);
    return r;
}

static void runner_free(runner *r)
{
    zl_fwd_destroy(r->fwd);
    zl_kv_destroy(r->kv);
    zl_cpu_destroy(r->cpu);
}

/* Evaluates tokens [0, n) of one sequence in chunks of `chunk`, all logits into out (n, n_vocab). */
/* -1: batches leave zl_batch.gemm NULL (llama.cpp's per-batch rule); 0 or 1: every token gets that mode. */
static int g_gemm_mode = -1;

static void eval_chunked(const zl_model *m, runner *r, int32_t seq, const int32_t *tok, int n, int chunk,
                         float *out)
{
    const int32_t nv = zl_model_hparams(m)->n_vocab;
    int32_t pos[64], seqs[64];
    int8_t want[64], gemm[64];
    zl_err e = {{0}};
    for (int s = 0; s < n; s += chunk) {
        const int nb = n - s < chunk ? n - s : chunk;
        for (int i = 0; i < nb; i++) {
            pos[i] = s + i;
            seqs[i] = seq;
            want[i] = 1;
            gemm[i] = (int8_t)g_gemm_mode;
        }
        /* a fixed mode fixes the logits rows' too (by default a row's mode counts its sequence's rows in the batch) */
        zl_batch b = {.n = nb, .token = tok + s, .pos = pos, .seq = seqs, .logits = want,
                      .gemm = g_gemm_mode >= 0 ? gemm : NULL, .out_gemm = g_gemm_mode >= 0 ? gemm : NULL};
        const int rc = zl_model_forward(m, r->cpu, r->kv, r->fwd, &b, out + (size_t)s * nv, &e);
        if (rc != ZL_OK)
            fail_msg("forward: %s", e.msg);
    }
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst))
            worst = d; /* NaN propagates as a failure */
    }
    return worst;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Tiny-model tests */

static const int32_t k_prompt[12] = {1, 7, 13, 2, 39, 21, 0, 5, 5, 30, 11, 8};

static void test_tiny_load(void **st)
{
    (void)st;
    tiny_opts o = tiny_default();
    zl_model *m;
    zl_err e = {{0}};
    assert_int_equal(tiny_load(&o, &m, &e, NULL), ZL_OK);
    const zl_hparams *h = zl_model_hparams(m);
    assert_int_equal(h->arch, ZL_ARCH_LLAMA);
    assert_string_equal(h->arch_name, "llama");
    assert_int_equal(h->n_embd, EMBD);
    assert_int_equal(h->n_layer, LAYER);
    assert_int_equal(h->n_head, HEAD);
    assert_int_equal(h->n_head_kv, HEAD_KV);
    assert_int_equal(h->head_dim, HD);
    assert_int_equal(h->n_rot, HD);
    assert_int_equal(h->n_ff, FF);
    assert_int_equal(h->n_vocab, VOCAB); /* from the token list: no vocab_size key */
    assert_int_equal(h->n_ctx_train, CTX);
    assert_false(h->rope_neox);
    assert_false(h->tied_embeddings);
    assert_int_equal(h->rope_scaling, ZL_ROPE_NONE);
    assert_float_equal(h->rope_theta, THETA, 0);
    assert_float_equal(h->norm_eps, EPS, 0);
    /* Parameters: embeddings, output and its norm, and per layer 2 norms + q,k,v,o + 3 FFN matrices. */
    const uint64_t per_layer = 2 * EMBD + EMBD * (HEAD * HD) * 2 + EMBD * (HEAD_KV * HD) * 2 + 3 * EMBD * FF;
    assert_int_equal(zl_model_n_params(m), 2 * EMBD * VOCAB + EMBD + LAYER * per_layer);
    assert_null(zl_model_warning(m));
    zl_model_free(m);

    o.tied = true;
    assert_int_equal(tiny_load(&o, &m, &e, NULL), ZL_OK);
    assert_true(zl_model_hparams(m)->tied_embeddings);
    assert_int_equal(zl_model_n_params(m), EMBD * VOCAB + EMBD + LAYER * per_layer);
    zl_model_free(m);
}

static void test_tiny_malformed(void **st)
{
    (void)st;
    zl_err e = {{0}};
    tiny_opts o = tiny_default();
    o.omit = "blk.1.ffn_up.weight";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "'blk.1.ffn_up.weight'"));
    assert_non_null(strstr(e.msg, "missing"));
    assert_non_null(strstr(e.msg, "/tmp/zili_test_model_"));

    o = tiny_default();
    o.reshape = "blk.0.attn_k.weight";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "'blk.0.attn_k.weight' has shape (32, 17), expected (32, 16)"));

    o = tiny_default();
    o.omit = "output_norm.weight";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "'output_norm.weight'"));

    o = tiny_default();
    o.retype = "blk.0.attn_q.weight";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "iq4_nl"));

    o = tiny_default();
    o.extra = "blk.0.ffn_gate_inp.weight";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "'blk.0.ffn_gate_inp.weight'"));

    o = tiny_default();
    o.head_count_kv = 3; /* 4 heads do not split into 3 groups */
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "head_count 4 is not a multiple of head_count_kv 3"));

    o = tiny_default();
    o.head_count_kv = 0;
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "head_count_kv = 0"));

    o = tiny_default();
    o.no_embd_key = true;
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EFORMAT);
    assert_non_null(strstr(e.msg, "'llama.embedding_length' is missing"));

    o = tiny_default();
    o.arch = "mamba";
    assert_int_equal(tiny_load(&o, NULL, &e, NULL), ZL_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "'mamba'"));

    zl_model *m = (zl_model *)&m;
    assert_int_equal(zl_model_load("/nonexistent/x.gguf", NULL, &m, &e), ZL_EIO);
    assert_null(m);
}

static void test_tiny_matches_reference(void **st)
{
    (void)st;
    tiny_opts o = tiny_default();
    tiny_model tm;
    zl_model *m;
    zl_err e = {{0}};
    assert_int_equal(tiny_load(&o, &m, &e, &tm), ZL_OK);
    enum { N = 12 };
    static double ref[N * VOCAB];
    ref_forward(&tm, &o, k_prompt, N, ref);
    static float got[N * VOCAB];
    float ref_f[N * VOCAB];
    for (int i = 0; i < N * VOCAB; i++)
        ref_f[i] = (float)ref[i];

    /* One batch, F32 cache, blocks of 4 so attention crosses block boundaries. */
    runner r = runner_make(m, 4, 8, 1, ZL_F32, 16);
    eval_chunked(m, &r, 0, k_prompt, N, N, got);
    const double d_f32 = max_rel_diff(got, ref_f, N * VOCAB);
    print_message("tiny model vs double reference, f32 cache: max rel diff %.3g\n", d_f32);
    assert_true(d_f32 < 1e-4);
    runner_free(&r);

    /* F16 cache: K, V and the query rounded to half precision. */
    r = runner_make(m, 4, 8, 1, ZL_F16, 16);
    eval_chunked(m, &r, 0, k_prompt, N, 5, got);
    const double d_f16 = max_rel_diff(got, ref_f, N * VOCAB);
    print_message("tiny model vs double reference, f16 cache: max rel diff %.3g\n", d_f16);
    assert_true(d_f16 < 1e-2);
    runner_free(&r);

    /* Tied embeddings: the output projection is token_embd. */
    zl_model_free(m);
    tiny_free(&tm);
    o.tied = true;
    assert_int_equal(tiny_load(&o, &m, &e, &tm), ZL_OK);
    ref_forward(&tm, &o, k_prompt, N, ref);
    for (int i = 0; i < N * VOCAB; i++)
        ref_f[i] = (float)ref[i];
    r = runner_make(m, 16, 1, 1, ZL_F32, 16);
    eval_chunked(m, &r, 0, k_prompt, N, 1, got);
    assert_true(max_rel_diff(got, ref_f, N * VOCAB) < 1e-4);
    runner_free(&r);
    zl_model_free(m);
    tiny_free(&tm);
}

/* RoPE variants: llama3 frequency factors (rope_freqs.weight) and linear position scaling, with and without the
 * rope.scaling.type key (a factor alone means linear, as llama.cpp reads it). */
static void test_tiny_rope_scaling(void **st)
{
    (void)st;
    enum { N = 12 };
    static double ref[N * VOCAB];
    static float got[N * VOCAB], ref_f[N * VOCAB];
    for (int variant = 0; variant < 3; variant++) {
        tiny_opts o = tiny_default();
        if (variant == 0)
            o.rope_freqs = true;
        else
            o.linear_factor = 4.0f;
        o.untyped_factor = variant == 2;
        tiny_model tm;
        zl_model *m;
        zl_err e = {{0}};
        assert_int_equal(tiny_load(&o, &m, &e, &tm), ZL_OK);
        const zl_hparams *h = zl_model_hparams(m);
        assert_int_equal(h->rope_scaling, variant == 0 ? ZL_ROPE_LLAMA3 : ZL_ROPE_LINEAR);
        assert_float_equal(h->rope_scale, variant == 0 ? 1.0f : 4.0f, 0);
        ref_forward(&tm, &o, k_prompt, N, ref);
        for (int i = 0; i < N * VOCAB; i++)
            ref_f[i] = (float)ref[i];
        runner r = runner_make(m, 4, 8, 1, ZL_F32, 16);
        eval_chunked(m, &r, 0, k_prompt, N, 7, got);
        const double d = max_rel_diff(got, ref_f, N * VOCAB);
        print_message("tiny model, %s: max rel diff %.3g\n",
                      variant == 0 ? "rope_freqs" : variant == 1 ? "linear x4" : "factor 4 without a type", d);
        assert_true(d < 1e-4);
        runner_free(&r);
        zl_model_free(m);
        tiny_free(&tm);
    }
}

static void test_tiny_forward_errors(void **st)
{
    (void)st;
    tiny_opts o = tiny_default();
    zl_model *m;
    zl_err e = {{0}};
    assert_int_equal(tiny_load(&o, &m, &e, NULL), ZL_OK);
    runner r = runner_make(m, 4, 3, 2, ZL_F32, 16);
    float out[4 * VOCAB];
    int32_t tok[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3}, seq[4] = {0, 0, 0, 0};
    int8_t want[4] = {0, 0, 0, 1};
    zl_batch b = {.n = 4, .token = tok, .pos = pos, .seq = seq, .logits = want};

    /* A gap in positions. */
    pos[2] = 5;
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, out, &e), ZL_ERANGE);
    assert_non_null(strstr(e.msg, "position 5 of sequence 0, expected 2"));
    assert_int_equal(zl_kv_seq_len(r.kv, 0), 0);
    pos[2] = 2;
    /* A token id out of range. */
    tok[1] = VOCAB;
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, out, &e), ZL_ERANGE);
    assert_int_equal(zl_kv_seq_len(r.kv, 0), 0);
    tok[1] = 2;
    /* A sequence out of range. */
    seq[3] = 2;
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, out, &e), ZL_ERANGE);
    seq[3] = 0;
    /* Good batch, then the next must continue at 4, not restart at 0. */
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, out, &e), ZL_OK);
    assert_int_equal(zl_kv_seq_len(r.kv, 0), 4);
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, out, &e), ZL_ERANGE);
    assert_int_equal(zl_kv_seq_len(r.kv, 0), 4);

    /* The pool has 3 blocks of 4: seq 1 takes 1 (fits), seq 0 would need a 3rd block (none left) -> full, and
     * seq 1's reservation is rolled back too. */
    int32_t tok2[4] = {1, 2, 3, 4}, pos2[4] = {0, 4, 1, 5}, seq2[4] = {1, 0, 1, 0};
    zl_batch b2 = {.n = 4, .token = tok2, .pos = pos2, .seq = seq2, .logits = want};
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b2, out, &e), ZL_OK);
    int32_t pos3[4] = {2, 6, 3, 7};
    int32_t tok3[4] = {1, 2, 3, 4};
    zl_batch b3 = {.n = 4, .token = tok3, .pos = pos3, .seq = seq2, .logits = want};
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b3, out, &e), ZL_OK); /* seq 0: 8, seq 1: 4 */
    assert_int_equal(zl_kv_n_free_blocks(r.kv), 0);
    int32_t pos4[2] = {4, 8}, seq4[2] = {1, 0};
    zl_batch b4 = {.n = 2, .token = tok3, .pos = pos4, .seq = seq4, .logits = want};
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b4, out, &e), ZL_EFULL);
    assert_int_equal(zl_kv_seq_len(r.kv, 0), 8);
    assert_int_equal(zl_kv_seq_len(r.kv, 1), 4);

    /* Batch larger than the scratch, and a cache of the wrong shape. */
    int32_t big[17] = {0};
    zl_batch b5 = {.n = 17, .token = big, .pos = big, .seq = big, .logits = (int8_t *)big};
    assert_int_equal(zl_model_forward(m, r.cpu, r.kv, r.fwd, &b5, out, &e), ZL_EINVAL);
    runner_free(&r);
    zl_kv_params kp = {.n_layer = LAYER, .kv_dim = HEAD * HD, .block_size = 4, .n_blocks = 4, .max_seqs = 1,
                       .type = ZL_F32};
    zl_kv *kv;
    assert_int_equal(zl_kv_create(&kp, &kv, &e), ZL_OK);
    r = runner_make(m, 4, 4, 1, ZL_F32, 4);
    assert_int_equal(zl_model_forward(m, r.cpu, kv, r.fwd, &b, out, &e), ZL_EINVAL);
    zl_kv_destroy(kv);
    runner_free(&r);
    zl_model_free(m);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Real model */

static const char *real_model_path(void)
{
    const char *p = getenv("ZILI_TEST_MODEL");
    if (!p)
        p = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    return access(p, R_OK) == 0 ? p : NULL;
}

static void test_real_batching_invariance(void **st)
{
    (void)st;
    const char *path = real_model_path();
    if (!path)
        skip();
    zl_model *m;
    zl_err e = {{0}};
    if (zl_model_load(path, NULL, &m, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    const zl_hparams *h = zl_model_hparams(m);
    const int32_t nv = h->n_vocab;
    const char *text = "The quick brown fox jumps over the lazy dog, and then it runs far away.";
    int32_t *tok;
    size_t n;
    assert_int_equal(zl_tokenize(zl_model_vocab(m), text, strlen(text), true, true, &tok, &n, &e), ZL_OK);
    assert_true(n >= 10 && n <= 32);
    float *one = malloc(n * (size_t)nv * sizeof(float)), *each = malloc(n * (size_t)nv * sizeof(float));
    float *mix = malloc(n * (size_t)nv * sizeof(float));

    /* The arithmetic of a token depends on its mode (llama.cpp's single-token vs multi-token kernels, see
     * zl_batch.gemm); with the mode fixed, how tokens are batched must not change a bit. */
    for (int mode = 0; mode < 2; mode++) {
        g_gemm_mode = mode;
        runner r = runner_make(m, 16, 8, 2, ZL_F32, 32);
        eval_chunked(m, &r, 0, tok, (int)n, (int)n, one);
        zl_kv_seq_free(r.kv, 0);
        eval_chunked(m, &r, 0, tok, (int)n, 1, each);
        zl_kv_seq_free(r.kv, 0);
        const double d_each = max_rel_diff(each, one, n * (size_t)nv);

        /* Interleaved: batches of 3 tokens of seq 1 (another text, one token ahead) and 3 of seq 0, alternating
         * which sequence comes first; only seq 0's rows are kept. */
        const int32_t other[40] = {504, 2, 1113, 800, 30, 9, 17, 88, 1234, 5, 600, 700, 61, 62, 63, 64, 65, 66, 67,
                                   68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88};
        float *scratch = malloc(6 * (size_t)nv * sizeof(float));
        int32_t bt[6], bp[6], bs[6];
        int8_t bw[6], bg[6] = {(int8_t)mode, (int8_t)mode, (int8_t)mode, (int8_t)mode, (int8_t)mode, (int8_t)mode};
        size_t done0 = 0, done1 = 0;
        for (int round = 0; done0 < n; round++) {
            int k = 0;
            for (int part = 0; part < 2; part++) {
                const int s = (part + round) % 2;
                for (int j = 0; j < 3; j++) {
                    if (s == 0 && done0 < n) {
                        bt[k] = tok[done0];
                        bp[k] = (int32_t)done0++;
                    } else if (s == 1 && done1 < 40) {
                        bt[k] = other[done1];
                        bp[k] = (int32_t)done1++;
                    } else {
                        continue;
                    }
                    bs[k] = s;
                    bw[k] = s == 0;
                    k++;
                }
            }
            zl_batch b = {.n = k, .token = bt, .pos = bp, .seq = bs, .logits = bw, .gemm = bg, .out_gemm = bg};
            if (zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, scratch, &e) != ZL_OK)
                fail_msg("forward: %s", e.msg);
            int o = 0;
            for (int i = 0; i < k; i++)
                if (bw[i])
                    memcpy(mix + (size_t)bp[i] * nv, scratch + (size_t)o++ * nv, (size_t)nv * sizeof(float));
        }
        const double d_mix = max_rel_diff(mix, one, n * (size_t)nv);
        print_message("SmolLM2, %zu tokens, mode %d: token by token vs one batch %.3g, interleaved with a 2nd "
                      "sequence %.3g\n", n, mode, d_each, d_mix);
        assert_true(d_each < 1e-4);
        assert_true(d_mix < 1e-4);
        free(scratch);
        runner_free(&r);
    }
    /* With an F16 cache, bit for bit: a batch of n tokens runs the query heads that share a KV head together
     * (attention.c's attend_group, on the avx512 sets), one token at a time runs them one by one (3 heads per item
     * would leave 2 threads unbalanced); both must give attend_one's bits, in both modes. */
    for (int mode = 0; mode < 2; mode++) {
        g_gemm_mode = mode;
        runner r = runner_make(m, 16, 8, 2, ZL_F16, 32);
        eval_chunked(m, &r, 0, tok, (int)n, (int)n, one);
        zl_kv_seq_free(r.kv, 0);
        eval_chunked(m, &r, 0, tok, (int)n, 1, each);
        size_t differ = 0;
        for (size_t i = 0; i < n * (size_t)nv; i++)
            differ += memcmp(&one[i], &each[i], sizeof one[i]) != 0;
        print_message("SmolLM2, F16 cache, mode %d: %zu of %zu logits differ between one batch and token by token\n",
                      mode, differ, n * (size_t)nv);
        assert_int_equal(differ, 0);
        runner_free(&r);
    }
    g_gemm_mode = -1;
    free(one);
    free(each);
    free(mix);
    free(tok);
    zl_model_free(m);
}

static void test_real_greedy_paris(void **st)
{
    (void)st;
    const char *path = real_model_path();
    if (!path)
        skip();
    zl_model *m;
    zl_err e = {{0}};
    if (zl_model_load(path, NULL, &m, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    const zl_hparams *h = zl_model_hparams(m);
    /* What llama.cpp's metadata dump reports for this file. */
    assert_int_equal(h->n_layer, 30);
    assert_int_equal(h->n_embd, 576);
    assert_int_equal(h->n_head, 9);
    assert_int_equal(h->n_head_kv, 3);
    assert_int_equal(h->head_dim, 64);
    assert_int_equal(h->n_ff, 1536);
    assert_int_equal(h->n_vocab, 49152);
    assert_true(h->tied_embeddings);
    assert_float_equal(h->rope_theta, 100000.0f, 0);
    assert_true(zl_model_n_params(m) > 134000000 && zl_model_n_params(m) < 135000000);

    const char *text = "The capital of France is";
    int32_t *tok;
    size_t n;
    assert_int_equal(zl_tokenize(zl_model_vocab(m), text, strlen(text), true, true, &tok, &n, &e), ZL_OK);
    runner r = runner_make(m, 16, 4, 1, ZL_F16, 16);
    float *logits = malloc((size_t)h->n_vocab * sizeof(float));
    int8_t want[16];
    int32_t pos[16], seq[16] = {0};
    char text_out[256] = "";
    size_t len = 0;
    int32_t cur[16];
    memcpy(cur, tok, n * sizeof *cur);
    int32_t past = 0, nb = (int32_t)n;
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < nb; i++) {
            pos[i] = past + i;
            want[i] = i == nb - 1;
        }
        zl_batch b = {.n = nb, .token = cur, .pos = pos, .seq = seq, .logits = want};
        if (zl_model_forward(m, r.cpu, r.kv, r.fwd, &b, logits, &e) != ZL_OK)
            fail_msg("forward: %s", e.msg);
        past += nb;
        int32_t best = 0;
        for (int32_t i = 1; i < h->n_vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        int l = zl_token_to_piece(zl_model_vocab(m), best, false, text_out + len, sizeof text_out - len - 1);
        assert_true(l >= 0 && (size_t)l < sizeof text_out - len - 1);
        len += (size_t)l;
        text_out[len] = 0;
        cur[0] = best;
        nb = 1;
    }
    print_message("greedy: \"%s\" ->\"%s\"\n", text, text_out);
    assert_true(strncmp(text_out, " Paris", 6) == 0);
    free(logits);
    free(tok);
    runner_free(&r);
    zl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_load),
        cmocka_unit_test(test_tiny_malformed),
        cmocka_unit_test(test_tiny_matches_reference),
        cmocka_unit_test(test_tiny_rope_scaling),
        cmocka_unit_test(test_tiny_forward_errors),
        cmocka_unit_test(test_real_batching_invariance),
        cmocka_unit_test(test_real_greedy_paris),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
