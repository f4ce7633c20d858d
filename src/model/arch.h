/*
 * arch.h - what model.c shares with the per-family files: the weight table,
 * the forward-pass scratch, the registry entry of an architecture, and helpers to bind tensors with checks.
 * (Family files: llama.c, qwen.c, gemma3.c, moe.c.)
 *
 * Only model.c and the family files include this; everything else sees zl_model through model.h.
 *
 * Shape comments use ggml's order: (ne[0], ne[1]) = (row length, rows), so a matmul weight (n_in, n_out)
 * maps n_in inputs to n_out outputs.
 */
#ifndef ZL_MODEL_ARCH_H
#define ZL_MODEL_ARCH_H

#include "model/model.h"

/* Lane accumulators of the attention's weighted sum of V: ggml's dot over positions, 4 vectors of 16 floats. */
#define ZL_ATT_MAX_LANES 64
#define ZL_ATT_GROUP 4 /* query heads whose scores one pass over K makes (attention.c) */

/* One transformer block. Norm vectors are float (zero-copy when the file stores F32). Optional tensors are
 * NULL / have data == NULL. */
typedef struct zl_layer {
    const float *attn_norm; /* (n_embd) */
    zl_tensor wq;           /* (n_embd, n_head * head_dim) */
    zl_tensor wk;           /* (n_embd, n_head_kv * head_dim) */
    zl_tensor wv;           /* (n_embd, n_head_kv * head_dim) */
    zl_tensor wo;           /* (n_head * head_dim, n_embd) */
    const float *bq;        /* (n_head * head_dim) or NULL */
    const float *bk, *bv;   /* (n_head_kv * head_dim) or NULL */
    const float *bo;        /* (n_embd) or NULL */
    const float *attn_q_norm; /* (head_dim) per-head RMSNorm gain of Q (qwen3), or NULL */
    const float *attn_k_norm; /* (head_dim) per-head RMSNorm gain of K (qwen3, gemma3), or NULL */
    const float *attn_post_norm; /* (n_embd) RMSNorm gain of the attention output (gemma3), or NULL */
    const float *ffn_norm;  /* (n_embd) */
    zl_tensor w_gate;       /* (n_embd, n_ff); qwen2moe: the shared expert's, (n_embd, n_ff_shexp) */
    zl_tensor w_up;         /* (n_embd, n_ff); qwen2moe: (n_embd, n_ff_shexp) */
    zl_tensor w_down;       /* (n_ff, n_embd); qwen2moe: (n_ff_shexp, n_embd) */
    /* Mixture of experts (hp.n_expert > 0). The expert tensors are 3-D, expert e's matrix the contiguous slice
     * at data + e * ne[1] * nb1 (zl_expert_view). */
    zl_tensor gate_inp;     /* (n_embd, n_expert) router */
    zl_tensor gate_exps;    /* (n_embd, n_ff_exp, n_expert) */
    zl_tensor up_exps;      /* (n_embd, n_ff_exp, n_expert) */
    zl_tensor down_exps;    /* (n_ff_exp, n_embd, n_expert) */
    zl_tensor gate_inp_shexp; /* (n_embd, 1) the shared expert's gate (qwen2moe), or data == NULL */
    const float *exp_probs_b; /* (n_expert) deepseek2's expert score bias (selection only), or NULL */
    /* deepseek2's multi-head latent attention (wq: attn_q when n_lora_q == 0; wo: attn_output) */
    zl_tensor wq_a;         /* (n_embd, n_lora_q) */
    const float *attn_q_a_norm; /* (n_lora_q) */
    zl_tensor wq_b;         /* (n_lora_q, n_head * head_dim_k_mla) */
    zl_tensor wkv_a_mqa;    /* (n_embd, n_lora_kv + n_rot) */
    const float *attn_kv_a_norm; /* (n_lora_kv) */
    zl_tensor wk_b;         /* (qk_nope, n_lora_kv, n_head) per head: q_nope -> latent (absorbed key) */
    zl_tensor wv_b;         /* (n_lora_kv, head_dim_v_mla, n_head) per head: latent -> value */
    const float *ffn_post_norm; /* (n_embd) RMSNorm gain of the FFN output (gemma3), or NULL */
    /* bert: biases and LayerNorms (gain, bias) after attention and after the FFN, or NULL */
    const float *b_up, *b_down;              /* (n_ff), (n_embd) */
    const float *attn_out_norm, *attn_out_norm_b; /* (n_embd) */
    const float *layer_out_norm, *layer_out_norm_b; /* (n_embd) */
    bool swa;               /* sliding-window layer: attends to the last hp.n_swa positions (gemma3) */
} zl_layer;

typedef struct zl_arch_impl zl_arch_impl;

/* A model's weights placed on a device (forward_dev.c): the last gpu_layers layers (and the output head) on dev,
 * the rest on the CPU backend; gpu_layers < 0: all that fit the device's memory. dev stays the caller's. */
typedef struct zl_dmodel zl_dmodel;
struct zl_dev;
int zl_dmodel_create(const zl_model *m, struct zl_dev *dev, int32_t gpu_layers, zl_dmodel **out, zl_err *err);
void zl_dmodel_free(zl_dmodel *dm);
const char *zl_dmodel_summary(const zl_dmodel *dm);
int32_t zl_dmodel_gpu_layers(const zl_dmodel *dm);
/* The device scratch and KV pools of one zl_fwd. */
typedef struct zl_dfwd zl_dfwd;
int zl_dfwd_create(zl_dmodel *dm, int32_t max_tokens, zl_dfwd **out, zl_err *err);
void zl_dfwd_destroy(zl_dfwd *f);
/* One validated, reserved batch through the device pass (modes / out_modes: the CPU part's arithmetic). */
int zl_dev_forward(const zl_model *m, zl_dfwd *f, zl_kv *kv, const zl_batch *b, const int8_t *modes,
                   const int8_t *out_modes, float *out, zl_err *err);

struct zl_model {
    zl_hparams hp;
    const zl_arch_impl *impl;
    gguf_file *gguf;
    zl_vocab *vocab;

    zl_tensor tok_embd;       /* (n_embd, n_vocab) */
    const float *output_norm; /* (n_embd) */
    zl_tensor output;         /* (n_embd, n_vocab); a copy of tok_embd's view when tied */
    const float *rope_freqs;  /* (n_rot / 2) llama3 frequency factors (angle divided by them), or NULL */
    zl_layer *layers;         /* n_layer */
    /* bert only (data / pointers NULL elsewhere) */
    zl_tensor pos_embd;       /* (n_embd, n_ctx_train) absolute position embeddings */
    zl_tensor type_embd;      /* (n_embd, n_token_types) token-type embeddings (every token has type 0), or none */
    const float *tok_norm, *tok_norm_b; /* (n_embd) LayerNorm of the embeddings */
    bool tiles;               /* some matrices are marked for the AMX tiles (zl_tensor.tiles) */
    float kq_scale;           /* attention scores = (q . k) * kq_scale; 1 / sqrt(head_dim) unless the family
                               * scales q itself (gemma3: 1) */

    /* RoPE constants derived at load (see model.c: rope_setup). */
    float rope_freq_scale;    /* 1 / factor for linear and YaRN, else 1 */
    float rope_attn_factor;   /* cos/sin magnitude (YaRN), else 1 */
    float yarn_ext_factor;    /* 0: no ramp */
    float yarn_corr[2];       /* YaRN ramp: dims below corr[0] extrapolate, above corr[1] interpolate */

    uint64_t n_params;
    struct zl_dev *dev;       /* the device the model was placed on (opts.device), or NULL: the CPU path */
    zl_dmodel *dm;            /* its placement */
    char warning[256];        /* "" when none */

    /* Allocations freed at zl_model_free: float copies of norm vectors stored as F16/BF16, tensor names. */
    void **owned;
    size_t n_owned, cap_owned;
    /* The file tensors bound so far (to report any the architecture does not use). */
    const gguf_tensor **bound;
    size_t n_bound, cap_bound;
};

/* Scratch of one forward pass, sized for max_tokens tokens at create; the per-thread attention buffers and the
 * per-sequence bookkeeping grow on first use with a larger KV cache or thread count (not per token). */
struct zl_fwd {
    int32_t max_tokens;
    float *x;    /* (max_tokens, n_embd) residual stream */
    float *xb;   /* (max_tokens, n_embd) normalised input of a block / gathered output rows */
    float *xb2;  /* (max_tokens, n_embd) output of a block before the residual add */
    float *q;    /* (max_tokens, n_head * head_dim) */
    float *k;    /* (max_tokens, n_head_kv * head_dim) */
    float *v;    /* (max_tokens, n_head_kv * head_dim) */
    float *att;  /* (max_tokens, n_head * head_dim) attention output */
    float *hb;   /* (max_tokens, max(n_ff, n_ff_shexp, n_ff_exp)) gate, then silu(gate) * up */
    float *hb2;  /* (max_tokens, the same) up */
    float *cs;   /* (max_tokens, n_rot) RoPE cos/sin of each token's position */
    float *cs_swa; /* (max_tokens, n_rot) the same for sliding-window layers (hp.n_swa > 0), else NULL */
    int8_t *tok_gemm; /* (max_tokens) per token: llama.cpp's multi-token arithmetic (see zl_batch.gemm) */
    int8_t *out_gemm; /* (max_tokens) per logits row: the same for the output matmul (2+ rows of its sequence) */
    zl_dfwd *dfwd;    /* the device pass's state when the model is placed on a device, else NULL */
    /* Mixture of experts only (hp.n_expert > 0), else NULL (moe.c). */
    float *moe_probs;   /* (max_tokens, n_expert) router probabilities */
    int32_t *moe_sel;   /* (max_tokens, n_expert_used) selected experts, best first */
    float *moe_w;       /* (max_tokens, n_expert_used) their weights */
    float *moe_slot;    /* (max_tokens * n_expert_used, n_embd) each selected expert's output, in moe_rows' order */
    float *moe_xg;      /* (max_tokens * n_expert_used, n_embd) the rows routed to each expert, gathered in
                         * moe_rows' order */
    float *moe_hg;      /* (max_tokens * n_expert_used, n_ff_exp) their gate outputs, then silu(gate) * up */
    float *moe_hu;      /* (max_tokens * n_expert_used, n_ff_exp) their up outputs */
    float *moe_yg;      /* (max_tokens, n_embd) the shared expert's output rows; a row of products in experts() */
    int32_t *moe_pos;   /* (max_tokens * n_expert_used) each (token, slot) pair's position in moe_rows */
    zl_matmul_job *moe_jobs; /* (2 * n_expert + 4) the matmuls of one layer's experts (and shared expert) */
    zl_tensor *moe_views;    /* (3 * n_expert) their gate / up / down views */
    int32_t *moe_rows;  /* (max_tokens * n_expert_used) per expert, (token, slot) pairs flattened as token * n_used +
                         * slot, grouped by expert in batch order */
    int32_t *moe_count; /* (n_expert + 1) start of each expert's group in moe_rows */
    int8_t *moe_mode;   /* (2, max_tokens * n_expert_used) the matmul mode of each gathered row, then all
                         * ZL_MODE_ONE */
    int32_t *moe_seq;   /* (max_tokens) the sequence of each row kept for the last layer */
    float *hidden;      /* zl_model_embed: when set, the output head writes each logits row's final normalised
                         * hidden state (n_embd floats) here instead of its logits */
    float *mla;         /* deepseek2 only: (max_tokens, n_head * head_dim) absorbed queries / per-head staging */

    int32_t seq_cap;     /* entries of seq_next / seq_start */
    int32_t *seq_next;   /* next expected position of each sequence while checking a batch; -1 untouched */
    int32_t *seq_start;  /* its stored length before the batch */
    int32_t *seq_list;   /* the sequences of the batch, in first-seen order (max_tokens) */

    int thr_cap;         /* threads the attention scratch is sized for */
    int32_t ctx_cap;     /* positions per thread in scores */
    float *scores;       /* (thr_cap, ZL_ATT_GROUP, ctx_cap) attention weights */
    void *q_conv;        /* (thr_cap, ZL_ATT_GROUP + 1, head_dim) floats: the query in the cache's type (F16
                          * caches), then up to ZL_ATT_GROUP queries widened from it */
    float *v_row;        /* (thr_cap, head_dim) a V row converted to float */
    float *v_lanes;      /* (thr_cap, ZL_ATT_GROUP * ZL_ATT_MAX_LANES, head_dim) lane accumulators of the weighted
                          * sum of V (attend_group: up to ZL_ATT_GROUP heads' side by side) */
    int32_t blk_cap;     /* KV blocks per thread in v_blk (enough for ctx_cap positions) */
    void *v_blk;         /* (thr_cap, blk_cap) const char *: one head's V rows in each block of a sequence */
};

/* A model family: the tensors it needs and its forward pass. */
struct zl_arch_impl {
    const char *name;     /* general.architecture */
    zl_arch arch;
    bool rope_neox;       /* pairs (i, i + n_rot/2): qwen2/3, gemma; llama GGUFs use (2i, 2i+1) */
    /* Binds m->tok_embd, output_norm, output, layers from m->gguf with zl_model_bind* (hparams are set). */
    int (*bind)(zl_model *m, zl_err *err);
    /* Runs a validated batch whose KV positions are reserved (see zl_model_forward). */
    int (*forward)(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                   zl_err *err);
};

/* Shared forward-pass blocks (blocks.c), each over the whole batch b of n tokens. */
/* x = token_embd[token], cs = each token's RoPE table. */
void zl_block_embed(const zl_model *m, zl_fwd *f, const zl_batch *b);
/* y[t] += bias for each of n rows of width d (bias NULL: nothing). */
void zl_block_add_bias(float *y, const float *bias, int32_t n, int64_t d);
/* RoPE on the batch's q and k (f->q, f->k), token i with the table cs + i * n_rot; tokens split between cpu's
 * threads when the batch is large enough (zl_cpu_for). */
void zl_block_rope(const zl_hparams *h, zl_cpu *cpu, zl_fwd *f, const float *cs, int32_t n);
/* x += down(silu(gate(rmsnorm(x))) * up(rmsnorm(x))) of layer il. */
int zl_block_ffn_swiglu(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il);
/* Final norm and output projection of the tokens that ask for logits, into consecutive rows of out. */
int zl_block_output(const zl_model *m, zl_cpu *cpu, zl_fwd *f, const zl_batch *b, float *out);

int zl_llama_bind(zl_model *m, zl_err *err);
int zl_llama_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                     zl_err *err);

int zl_qwen2_bind(zl_model *m, zl_err *err);
int zl_qwen3_bind(zl_model *m, zl_err *err);
int zl_qwen2moe_bind(zl_model *m, zl_err *err);
int zl_qwen3moe_bind(zl_model *m, zl_err *err);
int zl_qwen_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                    zl_err *err);

int zl_moe_bind(zl_model *m, zl_err *err);
/* A layer's attention block (x += attention of layer il over the batch) and FFN block (x += the FFN of layer il for
 * n rows of x; modes: the ordinary matmuls' arithmetic per row, seq: each row's sequence). */
typedef int (*zl_attn_block_fn)(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b,
                                int32_t il);
typedef int (*zl_ffn_block_fn)(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il,
                               const int8_t *modes, const int32_t *seq);
/* The MoE families' forward pass: embedding, attn + ffn per layer (the last layer's FFN on just the rows that ask
 * for logits, as llama.cpp drops the others), the output norm and head. */
int zl_moe_layers_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                          zl_attn_block_fn attn, zl_ffn_block_fn ffn, zl_err *err);
int zl_moe_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                   zl_err *err);
/* Reads expert_count, expert_used_count, expert_feed_forward_length (and with shared, qwen2moe's
 * expert_shared_feed_forward_length) into m->hp, range-checked. */
int zl_moe_read_hparams(zl_model *m, bool shared, zl_err *err);
/* Binds layer il's router, expert tensors and (hp.n_ff_shexp > 0) shared expert. */
int zl_moe_bind_ffn(zl_model *m, int32_t il, zl_err *err);
/* qwen.c's attention block (x += attention of layer il over the batch), shared with the MoE family. */
int zl_qwen_attention_block(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il);
/* The 2-D matrix of expert e of a 3-D expert tensor (a borrowed view). */
zl_tensor zl_expert_view(const zl_tensor *t, int64_t e);

int zl_bert_bind(zl_model *m, zl_err *err);
/* The causal forward pass entry of an encoder: refuses (bert makes embeddings only, zl_model_embed). */
int zl_bert_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                    zl_err *err);
/* bert's encoder over a batch of whole inputs (see zl_model_embed); leaves the final hidden states in f->x. */
int zl_bert_encode(const zl_model *m, zl_cpu *cpu, zl_fwd *f, const zl_batch *b, zl_err *err);
/* deepseek2.c: DeepSeek V2 / V3 with multi-head latent attention over moe.c's routed FFN. */
int zl_deepseek2_bind(zl_model *m, zl_err *err);
/* After the generic RoPE setup: llama.cpp's YaRN attention factor of deepseek2 (yarn_log_multiplier) into
 * m->rope_attn_factor and its kq_scale (mscale^2 / sqrt(head_dim_k_mla)) into m->kq_scale. */
void zl_deepseek2_scales(zl_model *m);
int zl_deepseek2_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                         zl_err *err);
/* moe.c: x += the routed FFN of layer il for n rows of x (modes: the ordinary matmuls' arithmetic per row, seq: each
 * row's sequence). */
int zl_moe_ffn(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes,
               const int32_t *seq);
/* MLA attention (attention.c): q (n, n_head * head_dim) absorbed queries against the k_only cache's rows, att
 * (n, n_head * head_dim_v), V being the first head_dim_v values of each K row. */
void zl_attention_paged_mla(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il,
                            const float *q, float *att);

int zl_gemma3_bind(zl_model *m, zl_err *err);
/* The scale gemma3 applies to q after RoPE (Gemma's query_pre_attn_scalar as llama.cpp derives it). */
float zl_gemma3_q_scale(const zl_hparams *h);
int zl_gemma3_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                      zl_err *err);

/* Binds tensor `name` as a matmul weight of shape exactly (ne0, ne1) with a computable type.
 * Missing and !required: t->data = NULL, ZL_OK. */
int zl_model_bind_matrix(zl_model *m, const char *name, int64_t ne0, int64_t ne1, bool required, zl_tensor *t,
                         zl_err *err);
/* Binds 1-D tensor `name` of exactly n elements as float (F32 zero-copy; F16/BF16 converted into an owned
 * buffer). Missing and !required: *out = NULL, ZL_OK. */
int zl_model_bind_vector(zl_model *m, const char *name, int64_t n, bool required, const float **out, zl_err *err);
/* The same for layer il's tensor "blk.<il>.<suffix>" (every family's per-layer tensors are named this way). */
int zl_model_bind_layer_matrix(zl_model *m, int32_t il, const char *suffix, int64_t ne0, int64_t ne1, bool required,
                               zl_tensor *t, zl_err *err);
/* Binds layer il's 3-D expert tensor "blk.<il>.<suffix>" of exactly (ne0, ne1, ne2) with a computable type; t->ne[2] =
 * ne2, rows nb1 apart, experts ne1 * nb1 apart. Always required. */
int zl_model_bind_layer_experts(zl_model *m, int32_t il, const char *suffix, int64_t ne0, int64_t ne1, int64_t ne2,
                                zl_tensor *t, zl_err *err);
int zl_model_bind_layer_vector(zl_model *m, int32_t il, const char *suffix, int64_t n, bool required,
                               const float **out, zl_err *err);

/* Attention over the paged cache for every (token, head) of a batch whose K/V rows of layer il are already in
 * kv: att[i, h] = softmax_t(q[i, h] . K[seq_i, t, h / group] * m->kq_scale) . V[seq_i, t, h / group], t in
 * [0, pos_i] (in [pos_i - hp.n_swa + 1, pos_i] on a sliding-window layer). q: (n, n_head * head_dim), att: same shape. Parallel over (token, head) pairs on cpu's pool. */
void zl_attention_paged(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il,
                        const float *q, float *att);

/* Writes rows k, v (n, kv_dim) of the batch's tokens into layer il of the cache at (seq_i, pos_i). */
void zl_kv_store(zl_kv *kv, const zl_batch *b, int32_t il, const float *k, const float *v);

/* hp.n_swa from "<arch>.attention.sliding_window" (0 when absent); a clear error when out of range. */
int zl_model_read_sliding_window(zl_model *m, zl_err *err);

/* The RoPE cos/sin table (n_rot floats) of position pos for this model (linear, llama3 and YaRN included). */
void zl_model_rope_table(const zl_model *m, int32_t pos, float *cs);

#endif
