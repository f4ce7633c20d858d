/*
 * moe.c - mixture-of-experts models: `qwen3moe` (Qwen3-30B-A3B, Qwen3-235B-A22B) and `qwen2moe` (Qwen1.5-MoE,
 * Qwen2-57B-A14B). Their attention is qwen.c's (qwen3's per-head Q/K norms; qwen2's Q/K/V biases); the dense FFN
 * of every layer is replaced by a routed one:
 *
 *   x = token_embd[token]
 *   for each layer:
 *       x += attention(x)                                         (qwen.c: zl_qwen_attention_block)
 *       h = rmsnorm(x) * ffn_norm
 *       p = softmax(gate_inp . h)                                 (n_expert probabilities per token)
 *       e_0 .. e_{k-1} = the k = n_expert_used experts of largest p, best first
 *       w_j = p[e_j]             (qwen3moe: w_j / max(sum_j w_j, 2^-14), expert_weights_norm)
 *       moe = sum_j w_j * down_{e_j} . (silu(gate_{e_j} . h) * (up_{e_j} . h))     (summed j = 0, 1, ... in order)
 *       qwen2moe: moe += sigmoid(gate_inp_shexp . h) * down_sh . (silu(gate_sh . h) * (up_sh . h))
 *       x += moe
 *   logits = output . rmsnorm(x)
 *
 * The arithmetic is llama.cpp's (src/llama-graph.cpp build_moe_ffn, ggml-cpu's MUL_MAT_ID), op for op:
 *   - the router is an ordinary matmul (F32 weights in every file: llama.cpp never quantizes ffn_gate_inp), in the
 *     token's batch mode; the softmax is ggml's (zl_softmax_unpadded); the top k is ggml's argsort (std::sort, descending)
 *     cut to k: for n_expert <= 16 std::sort is an insertion sort, stable, so ties keep the lower expert first, as
 *     here; above 16 its introsort may order exact ties otherwise (never seen with float probabilities);
 *   - the weight sum is ggml_sum_rows (double accumulation, rounded to float), clamped below at 6.103515625e-5,
 *     then each weight divided by it;
 *   - MUL_MAT_ID on the CPU groups the batch's rows by expert and multiplies each expert's rows with vec_dot, one
 *     (row, token) at a time: never tinyBLAS, whatever the batch size (so F16 experts take ZL_MODE_ONE for every
 *     token). Only the K-quants take another path: ggml's tiled matmul for an expert with 8+ routed rows
 *     (ZL_MODE_MULTI8 for those rows here, see zl_matmul_tiled_type). Activations are converted to the weight's
 *     vec_dot type per row, as here (x quantized once per token for gate and up);
 *   - each expert's down output is multiplied by its weight, and the k products are added in slot order
 *     ((s_0 + s_1) + s_2) + ...; qwen2moe's sigmoid is ggml's silu(x) / x, its product with the shared expert is
 *     added to that sum, and the sum to the residual;
 *   - in the last layer only the rows that ask for logits go through the FFN (llama.cpp's out_ids), in the output
 *     matmul's modes; their expert row counts are over those rows.
 * Which rows share an expert's MUL_MAT_ID decides the K-quant path, so a row's arithmetic depends on the other
 * rows of its llama.cpp micro-batch routed to the same expert: here the rows of the same sequence in this batch
 * (the session API gives MoE models batches of 512, llama.cpp's micro-batch, so a prompt is cut where llama.cpp cuts
 * it; a smaller -b, or the engine's chunked prefill, may cut it elsewhere and then K-quant logits can differ in the
 * last bits).
 *
 * Execution reads each expert once per batch: the rows routed to expert e are gathered (moe_xg), multiplied by e's
 * gate / up / down slices of the 3-D tensors (2-D views, zl_expert_view), and summed from their slots. All the
 * experts of a layer share two pool runs (zl_matmul_many: gate and up, then down), not a few each: at one token a
 * layer's 8 experts of 768 rows are too small to dispatch one by one. qwen2moe's shared expert (its gate vector,
 * gate and up; then down) joins the same two runs.
 *
 * Threads: as qwen.c (the thread that owns cpu, kv and f; the matmuls use cpu's pool).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

/* llama.cpp's bound on experts (LLAMA_MAX_EXPERTS). */
enum { MAX_EXPERT = 1024, MAX_FF_EXP = 1 << 18 };

zl_tensor zl_expert_view(const zl_tensor *t, int64_t e)
{
    zl_tensor v = *t;
    v.data = (const char *)t->data + (size_t)e * (size_t)t->ne[1] * t->nb1;
    v.ne[2] = 1;
    return v;
}

/* Reads the integer `<arch>.<key>` (absent: def; def < 0: required) into *out, in [lo, hi]. */
static int moe_key(zl_model *m, const char *key, int64_t def, int64_t lo, int64_t hi, int32_t *out, zl_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->hp.arch_name, key);
    zl_err e = {{0}};
    int64_t v;
    if (!gguf_get_i64(m->gguf, full, &v, &e)) {
        if (e.msg[0])
            return zl_err_set(err, ZL_EFORMAT, "%s", e.msg); /* names the file and key (e.g. a per-layer array) */
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

int zl_moe_read_hparams(zl_model *m, bool shared, zl_err *err)
{
    zl_hparams *h = &m->hp;
    int rc;
    if ((rc = moe_key(m, "expert_count", -1, 1, MAX_EXPERT, &h->n_expert, err)) != ZL_OK ||
        (rc = moe_key(m, "expert_used_count", -1, 1, h->n_expert, &h->n_expert_used, err)) != ZL_OK)
        return rc;
    /* llama.cpp: n_ff / n_expert_used when the file has no expert_feed_forward_length */
    const int64_t def_ff = h->n_ff / h->n_expert_used > 0 ? h->n_ff / h->n_expert_used : 1;
    if ((rc = moe_key(m, "expert_feed_forward_length", def_ff, 1, MAX_FF_EXP, &h->n_ff_exp, err)) != ZL_OK)
        return rc;
    h->n_ff_shexp = 0;
    if (shared && (rc = moe_key(m, "expert_shared_feed_forward_length", h->n_ff, 1, MAX_FF_EXP, &h->n_ff_shexp,
                                err)) != ZL_OK)
        return rc;
    h->expert_weights_norm = !shared; /* qwen3moe normalizes, qwen2moe does not (llama.cpp's graphs) */
    return ZL_OK;
}

int zl_moe_bind_ffn(zl_model *m, int32_t il, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    zl_layer *l = &m->layers[il];
    const int64_t d = h->n_embd, ne = h->n_expert, ff = h->n_ff_exp;
    int rc;
    if ((rc = zl_model_bind_layer_matrix(m, il, "ffn_gate_inp.weight", d, ne, true, &l->gate_inp, err)) != ZL_OK ||
        (rc = zl_model_bind_layer_experts(m, il, "ffn_gate_exps.weight", d, ff, ne, &l->gate_exps, err)) != ZL_OK ||
        (rc = zl_model_bind_layer_experts(m, il, "ffn_up_exps.weight", d, ff, ne, &l->up_exps, err)) != ZL_OK ||
        (rc = zl_model_bind_layer_experts(m, il, "ffn_down_exps.weight", ff, d, ne, &l->down_exps, err)) != ZL_OK)
        return rc;
    if (h->n_ff_shexp == 0)
        return ZL_OK;
    /* qwen2moe's shared expert: its gate is a vector (n_embd), multiplied as a one-row matrix (llama.cpp's
     * mul_mat of a 1-D weight); deepseek2's shared experts have no gate */
    const int64_t fs = h->n_ff_shexp;
    if ((h->arch == ZL_ARCH_QWEN2MOE &&
         (rc = zl_model_bind_layer_matrix(m, il, "ffn_gate_inp_shexp.weight", d, 1, true, &l->gate_inp_shexp,
                                          err)) != ZL_OK) ||
        (rc = zl_model_bind_layer_matrix(m, il, "ffn_gate_shexp.weight", d, fs, true, &l->w_gate, err)) != ZL_OK ||
        (rc = zl_model_bind_layer_matrix(m, il, "ffn_up_shexp.weight", d, fs, true, &l->w_up, err)) != ZL_OK ||
        (rc = zl_model_bind_layer_matrix(m, il, "ffn_down_shexp.weight", fs, d, true, &l->w_down, err)) != ZL_OK)
        return rc;
    return ZL_OK;
}

/* The k largest of p[0 .. n) in descending order into sel, ties to the lower index (a stable descending sort cut to
 * k, as ggml's argsort is for n <= 16). */
static void top_k(const float *p, int32_t n, int32_t k, int32_t *sel)
{
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t e = 0; e < n; e++) {
            bool taken = false;
            for (int32_t i = 0; i < j && !taken; i++)
                taken = sel[i] == e;
            if (!taken && (best < 0 || p[e] > p[best]))
                best = e;
        }
        sel[j] = best;
    }
}

/* deepseek2's group-limited selection on one row's selection scores s (n_expert): the n_group_used groups whose two
 * best scores add up highest keep their scores, the others become -inf (llama.cpp's build_moe_ffn: argsort top 2
 * per group, sum_rows in double, argsort top n_group_used of the sums, the rest filled with -inf). */
static void limit_groups(const zl_hparams *h, float *s)
{
    const int32_t ng = h->n_expert_groups, per = h->n_expert / ng;
    float sums[64] = {0};
    int32_t top[64], best2[2];
    for (int32_t g = 0; g < ng; g++) {
        const int32_t k2 = per < 2 ? per : 2;
        top_k(s + (size_t)g * per, per, k2, best2);
        double sum = 0.0;
        for (int32_t j = 0; j < k2; j++)
            sum += (double)s[(size_t)g * per + best2[j]];
        sums[g] = (float)sum;
    }
    top_k(sums, ng, h->n_group_used, top);
    for (int32_t g = 0; g < ng; g++) {
        bool used = false;
        for (int32_t j = 0; j < h->n_group_used && !used; j++)
            used = top[j] == g;
        if (!used)
            for (int32_t e = 0; e < per; e++)
                s[(size_t)g * per + e] = -INFINITY;
    }
}

/* Router: probabilities, selected experts and their weights of n rows of f->xb. */
static int route(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes)
{
    const zl_hparams *h = &m->hp;
    const int32_t ne = h->n_expert, k = h->n_expert_used;
    int rc;
    /* moe_probs: (n, n_expert) */
    if ((rc = zl_matmul_modes(cpu, &m->layers[il].gate_inp, f->xb, n, f->moe_probs, modes)) != ZL_OK)
        return rc;
    zl_dump("ffn_moe_logits", il, f->moe_probs, n, ne);
    for (int32_t t = 0; t < n; t++) {
        float *p = f->moe_probs + (size_t)t * (size_t)ne;
        int32_t *sel = f->moe_sel + (size_t)t * (size_t)k;
        float *w = f->moe_w + (size_t)t * (size_t)k;
        const float *bias = m->layers[il].exp_probs_b;
        if (h->expert_gating == 2) { /* sigmoid: ggml's 1 / (1 + expf(-x)) */
            for (int32_t e = 0; e < ne; e++)
                p[e] = 1.0f / (1.0f + expf(-p[e]));
        } else {
            zl_softmax_unpadded(p, ne);
        }
        if (bias || h->n_expert_groups > 1) { /* the selection scores: probabilities + bias, groups limited */
            float *sc = f->moe_slot; /* free until experts() */
            for (int32_t e = 0; e < ne; e++)
                sc[e] = bias ? p[e] + bias[e] : p[e];
            if (h->n_expert_groups > 1)
                limit_groups(h, sc);
            top_k(sc, ne, k, sel);
        } else {
            top_k(p, ne, k, sel);
        }
        for (int32_t j = 0; j < k; j++)
            w[j] = p[sel[j]];
        if (h->expert_weights_norm) {
            double sum = 0.0;
            for (int32_t j = 0; j < k; j++)
                sum += (double)w[j];
            float s = (float)sum;
            if (!(s >= 6.103515625e-5f)) /* ggml_clamp(sum, 2^-14, inf); NaN stays NaN there too */
                s = s != s ? s : 6.103515625e-5f;
            for (int32_t j = 0; j < k; j++)
                w[j] = w[j] / s;
        }
        if (h->expert_weights_scale != 0.0f && h->expert_weights_scale != 1.0f) /* ggml_scale */
            for (int32_t j = 0; j < k; j++)
                w[j] = w[j] * h->expert_weights_scale;
    }
    zl_dump("ffn_moe_probs", il, f->moe_probs, n, ne);
    if (zl_dump_enabled() && k <= h->n_embd) { /* the selected experts as floats (moe_yg: free until experts()) */
        for (int32_t i = 0; i < n * k; i++)
            f->moe_yg[i] = (float)f->moe_sel[i];
        zl_dump("ffn_moe_topk", il, f->moe_yg, n, k);
    }
    zl_dump("ffn_moe_weights", il, f->moe_w, n, k);
    return ZL_OK;
}

/* The routed experts of n rows of f->xb into f->xb2. The (row, slot) pairs are grouped by expert (moe_rows; pair i
 * at position moe_pos[i]), their rows gathered into moe_xg in that order, and every expert's gate and up matmuls
 * run as one zl_matmul_many (one conversion per expert, shared by gate and up), the SwiGLU over all the gathered
 * rows, then every expert's down matmul as another, into moe_slot in grouped order; xb2[t] = sum over slots in
 * order of weight * output. seq[t]: the sequence of row t (rows of one sequence share a micro-batch). */
static int experts(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes,
                   const int32_t *seq)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    const int32_t ne = h->n_expert, k = h->n_expert_used;
    const size_t d = (size_t)h->n_embd, ff = (size_t)h->n_ff_exp;
    int32_t *start = f->moe_count;
    int rc;

    /* Group the (row, slot) pairs by expert, rows in batch order (ggml's matrix_rows). */
    memset(start, 0, (size_t)(ne + 1) * sizeof *start);
    for (int32_t i = 0; i < n * k; i++)
        start[f->moe_sel[i] + 1]++;
    for (int32_t e = 0; e < ne; e++)
        start[e + 1] += start[e];
    for (int32_t i = 0; i < n * k; i++) {
        const int32_t e = f->moe_sel[i];
        f->moe_pos[i] = start[e];
        f->moe_rows[start[e]++] = i;
    }
    for (int32_t e = ne; e > 0; e--)
        start[e] = start[e - 1];
    start[0] = 0;

    /* moe_mode: the rows' modes where the weight type has the tiled path; one_mode: vec_dot for every row (the
     * other types: ZL_MODE_MULTI8 would be tinyBLAS for F16 weights, which MUL_MAT_ID never takes) */
    const bool tg = zl_matmul_tiled_type(l->gate_exps.type), tu = zl_matmul_tiled_type(l->up_exps.type);
    const bool td = zl_matmul_tiled_type(l->down_exps.type);
    const bool tiled = tg || tu || td;
    const size_t nk = (size_t)n * (size_t)k;
    int8_t *one_mode = f->moe_mode + nk;
    memset(one_mode, ZL_MODE_ONE, nk);
    zl_matmul_job *jobs = f->moe_jobs;
    int n_jobs = 0;
    zl_tensor *views = f->moe_views; /* (3, n_expert): gate, up, down of the experts with rows */
    for (int32_t e = 0; e < ne; e++) {
        const int32_t r0 = start[e], nr = start[e + 1] - r0;
        if (nr == 0)
            continue;
        const int32_t *rows = f->moe_rows + r0;
        int8_t *mode = f->moe_mode + r0;
        float *xg = f->moe_xg + (size_t)r0 * d;
        for (int32_t r = 0; r < nr; r++) {
            const int32_t t = rows[r] / k;
            memcpy(xg + (size_t)r * d, f->xb + (size_t)t * d, d * sizeof(float));
            /* vec_dot, except the tiled K-quant path for the rows of a micro-batch with 8+ rows on this expert;
             * a row in one-token mode is a micro-batch of its own */
            mode[r] = ZL_MODE_ONE;
            if (tiled && (modes[t] & ZL_MODE_MASK) != ZL_MODE_ONE) {
                int32_t same = 0;
                for (int32_t q = 0; q < nr; q++) {
                    const int32_t tq = rows[q] / k;
                    same += seq[tq] == seq[t] && (modes[tq] & ZL_MODE_MASK) != ZL_MODE_ONE;
                }
                if (same >= 8)
                    mode[r] = ZL_MODE_MULTI8;
            }
        }
        zl_tensor *v = views + 3 * (size_t)(n_jobs / 2);
        v[0] = zl_expert_view(&l->gate_exps, e);
        v[1] = zl_expert_view(&l->up_exps, e);
        v[2] = zl_expert_view(&l->down_exps, e);
        /* gate into moe_hg, up into moe_hu: (nr, n_ff_exp) at the group's rows */
        jobs[n_jobs++] = (zl_matmul_job){&v[0], xg, nr, f->moe_hg + (size_t)r0 * ff, tg ? mode : one_mode + r0};
        jobs[n_jobs++] = (zl_matmul_job){&v[1], xg, nr, f->moe_hu + (size_t)r0 * ff, tu ? mode : one_mode + r0};
    }
    /* qwen2moe's shared expert in the same runs: its gate (n, 1) into moe_probs, gate and up (n, n_ff_shexp) into
     * hb and hb2, in the rows' own modes (ordinary matmuls in llama.cpp) */
    const int64_t fs = h->n_ff_shexp;
    const int n_routed = n_jobs;
    if (fs > 0) {
        if (l->gate_inp_shexp.data)
            jobs[n_jobs++] = (zl_matmul_job){&l->gate_inp_shexp, f->xb, n, f->moe_probs, modes};
        jobs[n_jobs++] = (zl_matmul_job){&l->w_gate, f->xb, n, f->hb, modes};
        jobs[n_jobs++] = (zl_matmul_job){&l->w_up, f->xb, n, f->hb2, modes};
    }
    if ((rc = zl_matmul_many(cpu, n_jobs, jobs)) != ZL_OK)
        return rc;
    zl_silu_mul_mt(cpu, f->moe_hg, f->moe_hg, f->moe_hu, n * k, (int64_t)ff);
    if (fs > 0)
        zl_silu_mul_mt(cpu, f->hb, f->hb, f->hb2, n, fs);
    /* down: (nr, n_embd) per expert into moe_slot, in grouped order; the shared expert's (n, n_embd) into moe_yg */
    n_jobs = n_routed / 2;
    for (int j = 0; j < n_jobs; j++) {
        const int32_t r0 = (int32_t)((jobs[2 * j].x - f->moe_xg) / (ptrdiff_t)d), nr = (int32_t)jobs[2 * j].n_tok;
        jobs[j] = (zl_matmul_job){&views[3 * (size_t)j + 2], f->moe_hg + (size_t)r0 * ff, nr,
                                  f->moe_slot + (size_t)r0 * d, td ? f->moe_mode + r0 : one_mode + r0};
    }
    if (fs > 0)
        jobs[n_jobs++] = (zl_matmul_job){&l->w_down, f->hb, n, f->moe_yg, modes};
    if ((rc = zl_matmul_many(cpu, n_jobs, jobs)) != ZL_OK)
        return rc;

    /* each slot's output times its weight (rounded), added in slot order (moe_xg: free now) */
    float *tmp = f->moe_xg;
    for (int32_t t = 0; t < n; t++) {
        float *o = f->xb2 + (size_t)t * d;
        for (int32_t j = 0; j < k; j++) {
            const int32_t i = t * k + j;
            const float w = f->moe_w[i];
            const float *y = f->moe_slot + (size_t)f->moe_pos[i] * d;
            float *s = j == 0 ? o : tmp;
            for (size_t c = 0; c < d; c++)
                s[c] = y[c] * w;
            if (j > 0)
                zl_add(o, tmp, (int64_t)d);
        }
    }
    zl_dump("ffn_moe_out", il, f->xb2, n, (int64_t)d);
    return ZL_OK;
}

/* qwen2moe: xb2 += sigmoid(gate_inp_shexp . xb) * shared SwiGLU expert of xb, for n rows, from the gate in
 * moe_probs and the expert's output in moe_yg (experts() computed both). */
static void shared_expert(const zl_model *m, zl_fwd *f, int32_t n, int32_t il)
{
    const size_t d = (size_t)m->hp.n_embd;
    zl_dump("ffn_shexp", il, f->moe_yg, n, (int64_t)d);
    if (!m->layers[il].gate_inp_shexp.data) { /* deepseek2: moe_out + shared experts' output (ggml_add) */
        zl_add(f->xb2, f->moe_yg, (int64_t)n * (int64_t)d);
        zl_dump("ffn_out", il, f->xb2, n, (int64_t)d);
        return;
    }
    for (int32_t t = 0; t < n; t++) {
        const float g = f->moe_probs[t];
        const float gate = (g / (1.0f + expf(-g))) / g; /* ggml: silu(g) / g, silu's scalar form for a row of 1 */
        const float *y = f->moe_yg + (size_t)t * d;
        float *o = f->xb2 + (size_t)t * d;
        for (size_t c = 0; c < d; c++)
            o[c] = o[c] + y[c] * gate;
    }
    zl_dump("ffn_out", il, f->xb2, n, (int64_t)d);
}

/* x += MoE feed-forward block of layer il for n rows of x; modes: each row's matmul arithmetic of the ordinary
 * matmuls (router, shared expert), seq: each row's sequence. */
int zl_moe_ffn(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes,
               const int32_t *seq)
{
    const zl_hparams *h = &m->hp;
    int rc;
    zl_rmsnorm_mt(cpu, f->xb, f->x, m->layers[il].ffn_norm, n, h->n_embd, h->norm_eps);
    zl_dump("ffn_norm", il, f->xb, n, h->n_embd);
    if ((rc = route(m, cpu, f, n, il, modes)) != ZL_OK || (rc = experts(m, cpu, f, n, il, modes, seq)) != ZL_OK)
        return rc;
    if (h->n_ff_shexp > 0)
        shared_expert(m, f, n, il);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("l_out", il, f->x, n, h->n_embd);
    return ZL_OK;
}

/* Keeps the rows of x whose tokens ask for logits, in order, as rows 0 .. n_out - 1, and their sequences in seq
 * (llama.cpp drops the other rows after the last layer's attention). Returns n_out. */
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

int zl_moe_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                   zl_err *err)
{
    const zl_hparams *h = &m->hp;
    int32_t n_out = b->n;
    int rc = ZL_OK;
    zl_dump_step();
    zl_block_embed(m, f, b); /* x: (n, n_embd), cs: (n, n_rot) */
    for (int32_t il = 0; il < h->n_layer && rc == ZL_OK; il++) {
        if ((rc = zl_qwen_attention_block(m, cpu, kv, f, b, il)) != ZL_OK)
            break;
        if (il < h->n_layer - 1) {
            rc = zl_moe_ffn(m, cpu, f, b->n, il, f->tok_gemm, b->seq);
            continue;
        }
        /* the last layer: only the rows that ask for logits, in the output matmul's modes */
        n_out = keep_output_rows(m, f, b, f->moe_seq);
        if (n_out > 0)
            rc = zl_moe_ffn(m, cpu, f, n_out, il, f->out_gemm, f->moe_seq);
    }
    if (rc == ZL_OK && n_out > 0) {
        zl_rmsnorm_mt(cpu, f->xb, f->x, m->output_norm, n_out, h->n_embd, h->norm_eps);
        zl_dump("result_norm", -1, f->xb, n_out, h->n_embd);
        rc = zl_matmul_modes(cpu, &m->output, f->xb, n_out, out, f->out_gemm); /* out: (n_out, n_vocab) */
        zl_dump("result_output", -1, out, n_out, h->n_vocab);
    }
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: forward pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
