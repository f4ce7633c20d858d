/*
 * deepseek2.c - DeepSeek V2 / V3 / R1 (`deepseek2`, also Kimi K2): multi-head latent attention (MLA) over a
 * compressed cache, with moe.c's routed FFN (sigmoid or softmax gating, expert groups, score bias, routed scaling,
 * shared experts) after n_layer_dense_lead dense layers.
 *
 *   x = token_embd[token]
 *   for each layer:
 *       h = rmsnorm(x) * attn_norm
 *       q = Wq_b . (rmsnorm(Wq_a . h) * q_a_norm)          (n_lora_q == 0: q = Wq . h)   (n_head, nope + rope)
 *       c, k_pe = Wkv_a . h                               (kv_lora_rank latent, rope dims shared by all heads)
 *       c = rmsnorm(c) * kv_a_norm;  q_pe, k_pe = rope(q_pe), rope(k_pe)
 *       per head: q_abs = Wk_b[head] . q_nope             (the key up-projection absorbed into the query)
 *       cache row = [c | k_pe] (kv_lora_rank + rope values per token and layer: 576 for DeepSeek V3)
 *       per head: o = softmax(([q_abs | q_pe] . row_t) * kq_scale) . c_t     (MQA over the latent, V = c)
 *       per head: o = Wv_b[head] . o                      (the value up-projection after attention)
 *       x += Wo . o
 *       x += dense SwiGLU (leading layers) or moe.c's routed experts + shared experts
 *   logits = output . rmsnorm(x)
 *
 * This is llama.cpp's graph for files with the split attn_k_b / attn_v_b (src/models/deepseek2.cpp, is_mla): it
 * runs the absorbed form for every batch, prefill included, with a K-only cache whose V is a view of K's first
 * kv_lora_rank values, so zili does the same (the cache never holds expanded keys or values; a prefix-cache block
 * is a block like any other). The arithmetic, op by op:
 *   - the projections are ordinary matmuls in the tokens' modes (attn_q_a and attn_kv_a_mqa share the conversion
 *     of h, as ggml converts a src1 once per type);
 *   - the latent's RMSNorm runs over the first kv_lora_rank values of each kv_a row (ggml's rms_norm of a view);
 *   - RoPE is ggml's normal (non-NEOX) rope on the views q_pe (offset nope of each head) and k_pe;
 *   - q_abs: ggml_mul_mat(wk_b, q_nope permuted) per head. q_nope is a strided view, so ggml's tinyBLAS first try
 *     (contiguous src1) fails: F32 wk_b (an F32 file) then take vec_dot for every token (measured: the tokens'
 *     modes instead differ from llama.cpp by 0.027 at 40 tokens); other types take tinyBLAS (or the tiled K-quant
 *     path) after the conversion of q_nope, in the tokens' modes as any matmul;
 *   - the attention is attention.c's (scores in the cache type, softmax, V sum as ggml's mul_mat of the
 *     transposed V copy), with V read from the K rows (k_only cache) and head_dim_v = kv_lora_rank;
 *   - Wv_b per head: ggml_mul_mat(wv_b, kqv) on the contiguous kqv, the tokens' modes;
 *   - kq_scale = mscale^2 / sqrt(nope + rope), mscale from YaRN's attention factor and yarn_log_multiplier as
 *     llama.cpp computes them (zl_deepseek2_scales).
 * Files without key_length_mla (older conversions with one attn_kv_b) are refused: llama.cpp runs those as plain
 * MHA with an expanded cache.
 *
 * Threads: as qwen.c (the thread that owns cpu, kv and f; the matmuls and attention use cpu's pool).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/dump.h"
#include "model/arch.h"

enum { MAX_GROUPS = 64 };

static int ds_int(zl_model *m, const char *key, int64_t def, int64_t lo, int64_t hi, int32_t *out, zl_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->hp.arch_name, key);
    zl_err e = {{0}};
    int64_t v;
    if (!gguf_get_i64(m->gguf, full, &v, &e)) {
        if (e.msg[0])
            return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
        if (def < 0)
            return zl_err_set(err, ZL_EFORMAT, "%s: required key '%s' is missing", gguf_path(m->gguf), full);
        v = def;
    }
    if (v < lo || v > hi)
        return zl_err_set(err, ZL_EFORMAT, "%s: %s = %lld out of range (%lld .. %lld)", gguf_path(m->gguf), full,
                          (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return ZL_OK;
}

static int ds_float(zl_model *m, const char *key, float def, float lo, float hi, float *out, zl_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->hp.arch_name, key);
    zl_err e = {{0}};
    float v;
    if (!gguf_get_f32(m->gguf, full, &v, &e)) {
        if (e.msg[0])
            return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
        v = def;
    }
    if (!(v >= lo && v <= hi))
        return zl_err_set(err, ZL_EFORMAT, "%s: %s = %g out of range (%g .. %g)", gguf_path(m->gguf), full,
                          (double)v, (double)lo, (double)hi);
    *out = v;
    return ZL_OK;
}

static int read_mla_hparams(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    const char *path = gguf_path(m->gguf);
    int rc;
    if ((rc = ds_int(m, "attention.q_lora_rank", 0, 0, 1 << 16, &h->n_lora_q, err)) != ZL_OK ||
        (rc = ds_int(m, "attention.kv_lora_rank", -1, 1, 1 << 16, &h->n_lora_kv, err)) != ZL_OK)
        return rc;
    char full[128];
    snprintf(full, sizeof full, "%s.attention.key_length_mla", h->arch_name);
    if (!gguf_find(m->gguf, full))
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: deepseek2 file without '%s' (an older conversion with one "
                          "attn_kv_b, run by llama.cpp without MLA) is not supported; convert it again", path, full);
    if ((rc = ds_int(m, "attention.key_length_mla", -1, 1, 1024, &h->head_dim_k_mla, err)) != ZL_OK ||
        (rc = ds_int(m, "attention.value_length_mla", -1, 1, 1024, &h->head_dim_v_mla, err)) != ZL_OK)
        return rc;
    if (h->n_head_kv != 1)
        return zl_err_set(err, ZL_EFORMAT, "%s: MLA needs head_count_kv 1 (the shared latent), got %d", path,
                          h->n_head_kv);
    if (h->head_dim != h->n_lora_kv + h->n_rot || h->head_dim_v != h->n_lora_kv)
        return zl_err_set(err, ZL_EFORMAT, "%s: MLA needs key_length = kv_lora_rank + rope.dimension_count (%d + %d) "
                          "and value_length = kv_lora_rank; got %d and %d", path, h->n_lora_kv, h->n_rot,
                          h->head_dim, h->head_dim_v);
    if (h->head_dim_k_mla <= h->n_rot)
        return zl_err_set(err, ZL_EFORMAT, "%s: key_length_mla %d leaves no unrotated dims (rope %d)", path,
                          h->head_dim_k_mla, h->n_rot);
    if (h->head_dim_k_mla > h->head_dim || h->head_dim_v_mla > h->head_dim)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: key_length_mla %d / value_length_mla %d above the latent row "
                          "of %d are not supported", path, h->head_dim_k_mla, h->head_dim_v_mla, h->head_dim);
    return ZL_OK;
}

static int read_moe_hparams(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    const char *path = gguf_path(m->gguf);
    int rc;
    if ((rc = ds_int(m, "leading_dense_block_count", 0, 0, h->n_layer, &h->n_layer_dense_lead, err)) != ZL_OK)
        return rc;
    if ((rc = zl_moe_read_hparams(m, false, err)) != ZL_OK)
        return rc;
    if ((rc = ds_int(m, "expert_shared_count", -1, 0, 64, &h->n_expert_shared, err)) != ZL_OK ||
        (rc = ds_int(m, "expert_gating_func", 1, 1, 2, &h->expert_gating, err)) != ZL_OK ||
        (rc = ds_float(m, "expert_weights_scale", 0.0f, 0.0f, 1e6f, &h->expert_weights_scale, err)) != ZL_OK ||
        (rc = ds_int(m, "expert_group_count", 0, 0, MAX_GROUPS, &h->n_expert_groups, err)) != ZL_OK ||
        (rc = ds_int(m, "expert_group_used_count", 0, 0, MAX_GROUPS, &h->n_group_used, err)) != ZL_OK)
        return rc;
    h->n_ff_shexp = h->n_expert_shared * h->n_ff_exp;
    char full[128];
    snprintf(full, sizeof full, "%s.expert_weights_norm", h->arch_name);
    zl_err e = {{0}};
    bool norm = false;
    if (!gguf_get_bool(m->gguf, full, &norm, &e) && e.msg[0])
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
    h->expert_weights_norm = norm;
    if (h->n_expert_groups > 1) { /* llama.cpp's asserts, as errors */
        if (h->n_expert_groups >= h->n_expert || h->n_expert % h->n_expert_groups != 0 || h->n_group_used < 1 ||
            h->n_group_used >= h->n_expert_groups)
            return zl_err_set(err, ZL_EFORMAT, "%s: expert groups %d (used %d) do not fit %d experts (need groups "
                              "dividing the experts, 1 <= used < groups)", path, h->n_expert_groups,
                              h->n_group_used, h->n_expert);
    }
    if (h->n_expert > (int64_t)h->n_embd * h->n_expert_used)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: %d experts above n_embd * experts used are not supported",
                          path, h->n_expert);
    if ((rc = ds_float(m, "rope.scaling.yarn_log_multiplier", 0.0f, 0.0f, 100.0f, &h->yarn_log_mul, err)) != ZL_OK)
        return rc;
    h->yarn_log_mul = h->yarn_log_mul / 0.1f; /* llama.cpp cancels the converter's factor 0.1 */
    return ZL_OK;
}

int zl_deepseek2_bind(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    int rc;
    if ((rc = read_mla_hparams(m, err)) != ZL_OK || (rc = read_moe_hparams(m, err)) != ZL_OK)
        return rc;
    if (h->rope_scaling == ZL_ROPE_LINEAR)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: deepseek2 with linear RoPE scaling is not supported",
                          gguf_path(m->gguf));
    const int64_t d = h->n_embd, H = h->n_head, kl = h->n_lora_kv, ql = h->n_lora_q, R = h->n_rot;
    const int64_t qk = h->head_dim_k_mla, nope = qk - R, vh = h->head_dim_v_mla;
    if ((rc = zl_model_bind_matrix(m, "token_embd.weight", d, h->n_vocab, true, &m->tok_embd, err)) != ZL_OK ||
        (rc = zl_model_bind_vector(m, "output_norm.weight", d, true, &m->output_norm, err)) != ZL_OK ||
        (rc = zl_model_bind_matrix(m, "output.weight", d, h->n_vocab, false, &m->output, err)) != ZL_OK)
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd;
    m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %d layers", gguf_path(m->gguf), h->n_layer);
    for (int32_t il = 0; il < h->n_layer; il++) {
        zl_layer *l = &m->layers[il];
#define MAT(suffix, ne0, ne1, field)                                                                                \
    do {                                                                                                            \
        if ((rc = zl_model_bind_layer_matrix(m, il, suffix, ne0, ne1, true, &l->field, err)) != ZL_OK)              \
            return rc;                                                                                              \
    } while (0)
#define VEC(suffix, n, field)                                                                                       \
    do {                                                                                                            \
        if ((rc = zl_model_bind_layer_vector(m, il, suffix, n, true, &l->field, err)) != ZL_OK)                     \
            return rc;                                                                                              \
    } while (0)
        VEC("attn_norm.weight", d, attn_norm);
        if (ql > 0) {
            MAT("attn_q_a.weight", d, ql, wq_a);
            VEC("attn_q_a_norm.weight", ql, attn_q_a_norm);
            MAT("attn_q_b.weight", ql, H * qk, wq_b);
        } else {
            MAT("attn_q.weight", d, H * qk, wq);
        }
        MAT("attn_kv_a_mqa.weight", d, kl + R, wkv_a_mqa);
        VEC("attn_kv_a_norm.weight", kl, attn_kv_a_norm);
        if ((rc = zl_model_bind_layer_experts(m, il, "attn_k_b.weight", nope, kl, H, &l->wk_b, err)) != ZL_OK ||
            (rc = zl_model_bind_layer_experts(m, il, "attn_v_b.weight", kl, vh, H, &l->wv_b, err)) != ZL_OK)
            return rc;
        MAT("attn_output.weight", H * vh, d, wo);
        VEC("ffn_norm.weight", d, ffn_norm);
        if (il < h->n_layer_dense_lead) {
            MAT("ffn_gate.weight", d, h->n_ff, w_gate);
            MAT("ffn_up.weight", d, h->n_ff, w_up);
            MAT("ffn_down.weight", h->n_ff, d, w_down);
            continue;
        }
        if ((rc = zl_moe_bind_ffn(m, il, err)) != ZL_OK ||
            (rc = zl_model_bind_layer_vector(m, il, "exp_probs_b.bias", h->n_expert, false, &l->exp_probs_b,
                                             err)) != ZL_OK)
            return rc;
#undef MAT
#undef VEC
    }
    return ZL_OK;
}

void zl_deepseek2_scales(zl_model *m)
{
    const zl_hparams *h = &m->hp;
    float attn = h->rope_attn_factor; /* llama.cpp's cparams.yarn_attn_factor (llama-context.cpp) */
    if (m->yarn_ext_factor != 0.0f) {
        const float factor = 1.0f / m->rope_freq_scale;
        const float lm = h->yarn_log_mul;
        /* get_mscale(s, ms) = s <= 1 ? 1 : 0.1 * ms * ln(s) + 1, contracted to an fma by GCC */
#define MSCALE(s, ms) ((s) <= 1.0f ? 1.0f : fmaf(0.1f * (ms), logf(s), 1.0f))
        float a;
        if (lm != 0.0f) {
            const float ms = lm != 1.0f ? lm : 1.0f; /* deepseek2: mscale = mscale_all_dim */
            a = MSCALE(factor, ms) / MSCALE(factor, lm);
        } else {
            a = MSCALE(factor, 1.0f);
        }
#undef MSCALE
        a = a * (1.0f / fmaf(0.1f, logf(factor), 1.0f));
        attn = a * h->rope_attn_factor;
    }
    m->rope_attn_factor = attn;
    /* the graph: attn_factor_org = attn * (1 + 0.1 ln(1 / freq_scale)), mscale = attn_factor_org * (1 + 0.1 *
     * yarn_log_mul * ln(1 / freq_scale)), kq_scale = mscale^2 / sqrt(key_length_mla) */
    const float lf = logf(1.0f / m->rope_freq_scale);
    const float org = attn * fmaf(0.1f, lf, 1.0f);
    const float mscale = org * fmaf(0.1f * h->yarn_log_mul, lf, 1.0f);
    m->kq_scale = 1.0f * mscale * mscale / sqrtf((float)h->head_dim_k_mla);
}

/* One head-batched matmul: for each head hh, y_hh (n, ne1) = w[hh] . x_hh (n, ne0), x and y laid out (n_head, n,
 * ne). */
static int per_head(zl_cpu *cpu, zl_fwd *f, const zl_tensor *w, int32_t n_head, const float *x, int32_t n, float *y,
                    const int8_t *modes)
{
    zl_matmul_job *jobs = f->moe_jobs;
    zl_tensor *views = f->moe_views;
    const size_t ne0 = (size_t)w->ne[0], ne1 = (size_t)w->ne[1];
    for (int32_t hh = 0; hh < n_head; hh++) {
        views[hh] = zl_expert_view(w, hh);
        jobs[hh] = (zl_matmul_job){&views[hh], x + (size_t)hh * (size_t)n * ne0, n, y + (size_t)hh * (size_t)n * ne1,
                                   modes};
    }
    return zl_matmul_many(cpu, n_head, jobs);
}

static int mla_attention_block(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    const int32_t n = b->n, H = h->n_head, R = h->n_rot, kl = h->n_lora_kv, qk = h->head_dim_k_mla;
    const int32_t nope = qk - R, vh = h->head_dim_v_mla, row = h->head_dim; /* row = kl + R */
    const size_t N = (size_t)n;
    int rc;

    zl_rmsnorm_mt(cpu, f->xb, f->x, l->attn_norm, n, h->n_embd, h->norm_eps);
    zl_dump("attn_norm", il, f->xb, n, h->n_embd);
    float *q = f->att; /* (n, H * qk) */
    if (l->wq_a.data) {
        if ((rc = zl_matmul_shared(cpu, 2, (const zl_tensor *const[]){&l->wq_a, &l->wkv_a_mqa}, f->xb, n,
                                   (float *const[]){f->hb, f->k}, f->tok_gemm)) != ZL_OK)
            return rc;
        zl_rmsnorm_mt(cpu, f->hb, f->hb, l->attn_q_a_norm, n, h->n_lora_q, h->norm_eps);
        if ((rc = zl_matmul_modes(cpu, &l->wq_b, f->hb, n, q, f->tok_gemm)) != ZL_OK)
            return rc;
    } else if ((rc = zl_matmul_shared(cpu, 2, (const zl_tensor *const[]){&l->wq, &l->wkv_a_mqa}, f->xb, n,
                                      (float *const[]){q, f->k}, f->tok_gemm)) != ZL_OK) {
        return rc;
    }
    zl_dump("q", il, q, n, (int64_t)H * qk);
    zl_dump("kv_cmpr_pe", il, f->k, n, row);
    /* k_pe and q_pe rotated (normal RoPE), the latent normalized, in place: f->k rows become the cache rows */
    for (int32_t i = 0; i < n; i++) {
        const float *cs = f->cs + (size_t)i * (size_t)R;
        float *kr = f->k + (size_t)i * (size_t)row;
        zl_rope_apply(kr + kl, 1, row, R, cs, false);
        zl_rope_apply(q + (size_t)i * (size_t)H * qk + nope, H, qk, R, cs, false);
        zl_rmsnorm(kr, kr, l->attn_kv_a_norm, 1, kl, h->norm_eps);
    }
    zl_dump("Kcur", il, f->k, n, row);

    /* q_abs per head: gather q_nope as (H, n, nope) into mla, multiply into att's tail? no: into f->q (H, n, kl) */
    float *g = f->mla;
    for (int32_t hh = 0; hh < H; hh++)
        for (int32_t i = 0; i < n; i++)
            memcpy(g + ((size_t)hh * N + (size_t)i) * (size_t)nope, q + ((size_t)i * H + (size_t)hh) * (size_t)qk,
                   (size_t)nope * sizeof(float));
    /* F32 wk_b: vec_dot for every token (ggml's tinyBLAS skips the strided q_nope); F16 and others: the modes */
    const int8_t *kb_modes = f->tok_gemm;
    if (l->wk_b.type == ZL_F32) {
        memset(f->moe_mode, ZL_MODE_ONE, N);
        kb_modes = f->moe_mode;
    }
    if ((rc = per_head(cpu, f, &l->wk_b, H, g, n, f->q, kb_modes)) != ZL_OK)
        return rc;
    /* the absorbed queries [q_abs | q_pe] per head into mla: (n, H, row) */
    for (int32_t i = 0; i < n; i++)
        for (int32_t hh = 0; hh < H; hh++) {
            float *dst = f->mla + ((size_t)i * H + (size_t)hh) * (size_t)row;
            memcpy(dst, f->q + ((size_t)hh * N + (size_t)i) * (size_t)kl, (size_t)kl * sizeof(float));
            memcpy(dst + kl, q + ((size_t)i * H + (size_t)hh) * (size_t)qk + nope, (size_t)R * sizeof(float));
        }
    zl_dump("Qcur", il, f->mla, n, (int64_t)H * row);
    zl_kv_store(kv, b, il, f->k, f->k);
    zl_attention_paged_mla(m, cpu, kv, f, b, il, f->mla, f->att); /* att: (n, H, kl) */
    zl_dump("kqv", il, f->att, n, (int64_t)H * kl);
    /* value up-projection per head: gather (H, n, kl) into q, multiply into mla (H, n, vh), scatter to att */
    for (int32_t hh = 0; hh < H; hh++)
        for (int32_t i = 0; i < n; i++)
            memcpy(f->q + ((size_t)hh * N + (size_t)i) * (size_t)kl, f->att + ((size_t)i * H + (size_t)hh) * (size_t)kl,
                   (size_t)kl * sizeof(float));
    if ((rc = per_head(cpu, f, &l->wv_b, H, f->q, n, f->mla, f->tok_gemm)) != ZL_OK)
        return rc;
    for (int32_t i = 0; i < n; i++)
        for (int32_t hh = 0; hh < H; hh++)
            memcpy(f->att + ((size_t)i * H + (size_t)hh) * (size_t)vh, f->mla + ((size_t)hh * N + (size_t)i) * (size_t)vh,
                   (size_t)vh * sizeof(float));
    zl_dump("kqv_out", il, f->att, n, (int64_t)H * vh);
    if ((rc = zl_matmul_modes(cpu, &l->wo, f->att, n, f->xb2, f->tok_gemm)) != ZL_OK)
        return rc;
    zl_dump("attn_out", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("ffn_inp", il, f->x, n, h->n_embd);
    return ZL_OK;
}

/* Keeps the rows of x whose tokens ask for logits as rows 0 .. n_out - 1, their sequences in seq. */
static int32_t keep_output_rows(const zl_model *m, zl_fwd *f, const zl_batch *b, int32_t *seq)
{
    const size_t d = (size_t)m->hp.n_embd;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (!b->logits[i])
            continue;
        if (n_out != i)
            memcpy(f->x + (size_t)n_out * d, f->x + (size_t)i * d, d * sizeof(float));
        seq[n_out++] = b->seq[i];
    }
    return n_out;
}

static int ffn(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes,
               const int32_t *seq)
{
    if (il >= m->hp.n_layer_dense_lead)
        return zl_moe_ffn(m, cpu, f, n, il, modes, seq);
    if (modes == f->tok_gemm)
        return zl_block_ffn_swiglu(m, cpu, f, n, il);
    /* a dense last layer on the logits rows: the output modes (tok_gemm is only read for those rows) */
    int8_t *save = f->tok_gemm;
    f->tok_gemm = (int8_t *)modes;
    const int rc = zl_block_ffn_swiglu(m, cpu, f, n, il);
    f->tok_gemm = save;
    return rc;
}

int zl_deepseek2_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                         zl_err *err)
{
    const zl_hparams *h = &m->hp;
    int32_t n_out = b->n;
    int rc = ZL_OK;
    zl_dump_step();
    zl_block_embed(m, f, b); /* x: (n, n_embd), cs: (n, n_rot) */
    for (int32_t il = 0; il < h->n_layer && rc == ZL_OK; il++) {
        if ((rc = mla_attention_block(m, cpu, kv, f, b, il)) != ZL_OK)
            break;
        if (il < h->n_layer - 1) {
            rc = ffn(m, cpu, f, b->n, il, f->tok_gemm, b->seq);
            continue;
        }
        n_out = keep_output_rows(m, f, b, f->moe_seq);
        if (n_out > 0)
            rc = ffn(m, cpu, f, n_out, il, f->out_gemm, f->moe_seq);
    }
    if (rc == ZL_OK && n_out > 0) {
        zl_rmsnorm_mt(cpu, f->xb, f->x, m->output_norm, n_out, h->n_embd, h->norm_eps);
        zl_dump("result_norm", -1, f->xb, n_out, h->n_embd);
        rc = zl_matmul_modes(cpu, &m->output, f->xb, n_out, out, f->out_gemm);
        zl_dump("result_output", -1, out, n_out, h->n_vocab);
    }
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: forward pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
