/*
 * model.h - a loaded model: hyperparameters, weights (zero-copy views into the GGUF mapping), vocabulary, and the
 * batch-first forward pass.
 *
 * The forward pass takes a batch of tokens from any number of sequences; each token carries its sequence id and
 * position. K/V for every token is written into the paged KV cache at (seq, pos), then attention for each token
 * reads positions [0, pos] of its own sequence. So prefill of one prompt, decode of many sequences, and a mix
 * of both (continuous batching with chunked prefill) are the same call.
 *
 * Threads: a zl_model is immutable after load and may be shared; a zl_fwd (scratch for one forward pass) and the
 * zl_kv it writes belong to one thread at a time.
 */
#ifndef ZL_MODEL_H
#define ZL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/ops.h"
#include "core/err.h"
#include "core/tensor.h"
#include "engine/kvcache.h"
#include "format/gguf.h"
#include "tokenizer/vocab.h"

typedef enum zl_arch {
    ZL_ARCH_LLAMA = 1, ZL_ARCH_QWEN2, ZL_ARCH_QWEN3, ZL_ARCH_GEMMA3, ZL_ARCH_QWEN2MOE, ZL_ARCH_QWEN3MOE,
    ZL_ARCH_DEEPSEEK2, ZL_ARCH_BERT
} zl_arch;

/* How an embedding is made of a sequence's hidden states (llama.cpp's LLAMA_POOLING_TYPE_* values, as
 * "<arch>.pooling_type" stores them). */
typedef enum zl_pooling { ZL_POOL_MEAN = 1, ZL_POOL_CLS = 2, ZL_POOL_LAST = 3 } zl_pooling;

typedef enum zl_rope_scaling { ZL_ROPE_NONE = 0, ZL_ROPE_LINEAR, ZL_ROPE_YARN, ZL_ROPE_LLAMA3 } zl_rope_scaling;

typedef struct zl_hparams {
    zl_arch arch;
    char arch_name[32];
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;      /* key/value length per head */
    int32_t n_ff;
    int32_t n_rot;         /* rotated dims per head */
    float norm_eps;
    float rope_theta;
    bool rope_neox;        /* pairs (i, i+n_rot/2) instead of (2i, 2i+1) */
    zl_rope_scaling rope_scaling;
    float rope_scale;      /* factor (linear / yarn / llama3) */
    int32_t rope_orig_ctx; /* original context of scaled models */
    float rope_attn_factor; /* rope.scaling.attn_factor (1 when absent): cos/sin magnitude */
    float llama3_low_freq_factor, llama3_high_freq_factor;
    bool tied_embeddings;  /* output projection reuses token_embd */
    /* Sliding-window attention (gemma3): layers marked swa attend to the last n_swa positions only (their own
     * included) and rotate with rope_theta_swa, unscaled; 0 / unused elsewhere. */
    int32_t n_swa;
    float rope_theta_swa;
    float logit_softcap;   /* logits = softcap * tanh(logits / softcap) when > 0 (gemma3 option), else 0 */
    /* Mixture of experts (qwen2moe, qwen3moe; 0 / false elsewhere): each token's FFN is the weighted sum of the
     * n_expert_used experts (of n_expert) its router ranks highest, each a SwiGLU of width n_ff_exp; qwen2moe adds
     * a shared expert of width n_ff_shexp gated by a sigmoid. */
    int32_t n_expert;
    int32_t n_expert_used;
    int32_t n_ff_exp;
    int32_t n_ff_shexp;    /* 0: no shared expert */
    bool expert_weights_norm; /* the selected experts' weights are divided by their sum (qwen3moe) */
    /* Embeddings: the file's pooling_type (absent: mean for encoders, last token for decoders); encoder: a
     * bidirectional model without an output head (bert), which only makes embeddings. */
    zl_pooling pooling;
    bool encoder;
    /* deepseek2 (0 elsewhere): multi-head latent attention. The cache holds per token and layer one row of head_dim =
     * n_lora_kv + n_rot values (the normalized latent, then the rotated shared key; n_head_kv 1), V is its first
     * head_dim_v = n_lora_kv values; each head's query is absorbed into that space. head_dim_k_mla / head_dim_v_mla:
     * the decompressed per-head key (nope + rope) and value widths. */
    int32_t head_dim_v;    /* V width per head in the cache: head_dim, or n_lora_kv with MLA */
    int32_t n_lora_q;      /* query rank (0: attn_q, as DeepSeek-V2-Lite) */
    int32_t n_lora_kv;
    int32_t head_dim_k_mla, head_dim_v_mla;
    int32_t n_layer_dense_lead; /* leading layers with a dense FFN */
    int32_t n_expert_shared;    /* shared experts (one SwiGLU of n_ff_shexp = n_expert_shared * n_ff_exp) */
    int32_t expert_gating;      /* 1 softmax, 2 sigmoid (llama.cpp's expert_gating_func) */
    float expert_weights_scale; /* routed scaling factor (1: none) */
    int32_t n_expert_groups, n_group_used; /* group-limited routing (0: none) */
    float yarn_log_mul;         /* rope.scaling.yarn_log_multiplier (0.1 * mscale_all_dim), 0 when absent */
} zl_hparams;

typedef struct zl_model zl_model;

typedef struct zl_model_opts {
    bool use_mmap;  /* default true */
    bool use_mlock; /* default false */
    bool no_repack; /* keep Q4_0 matrices in the file's layout (vec_dot's order) where the kernel set would
                     * repack them (backend/cpu/repack.h; also ZILI_NO_REPACK=1) */
    bool exact;     /* llama.cpp's arithmetic everywhere: no AMX tiles for prompts (backend/cpu/amx.h; also
                     * ZILI_EXACT=1) */
    const char *device; /* NULL or "cpu": today's CPU path; "vulkan[:N]": the weights go to that device and every
                         * forward pass runs through the device interface (model/forward_dev.c) */
    int32_t gpu_layers; /* with a device: how many of the last layers run on it (the rest on the CPU backend);
                         * negative: all that fit its memory */
} zl_model_opts;

/* Loads and validates path (format, required metadata and tensors with the shapes the architecture needs, types
 * zili supports, no tensor the architecture does not use) and its vocabulary. Weights stay in the mapping
 * (zero-copy); norm vectors stored as F16/BF16 are converted to float. Caller frees with zl_model_free. */
int zl_model_load(const char *path, const zl_model_opts *opts, zl_model **out, zl_err *err);
void zl_model_free(zl_model *m);

const zl_hparams *zl_model_hparams(const zl_model *m);
const zl_vocab *zl_model_vocab(const zl_model *m);
const gguf_file *zl_model_gguf(const zl_model *m);
uint64_t zl_model_n_params(const zl_model *m);
/* How many layers attend through a sliding window of hp.n_swa positions (0 when the model has none). */
int32_t zl_model_n_swa_layers(const zl_model *m);
/* A warning from load (e.g. mlock failed), or NULL. */
const char *zl_model_warning(const zl_model *m);
/* One line on where the weights are ("vulkan:0 (llvmpipe ...): 30 of 30 layers, 95 MiB of weights"), or NULL on
 * the CPU path. */
const char *zl_model_device_summary(const zl_model *m);
/* Whether prompts take the AMX tiles on some of m's matrices (backend/cpu/amx.h). */
bool zl_model_tiles(const zl_model *m);

/* A batch: n tokens; for each token i: token[i], pos[i], seq[i]; logits[i] != 0 asks for its output row.
 * Within one sequence, a batch must hold consecutive positions continuing what the KV cache stores (pos ==
 * stored length for the first one), so the cache stays dense; zl_model_forward checks this and reserves the
 * KV positions. */
typedef struct zl_batch {
    int32_t n;
    const int32_t *token;
    const int32_t *pos;
    const int32_t *seq;
    const int8_t *logits;
    /* Optional, per token: the ZL_MODE_* (ops.h) of the batch llama.cpp would compute it in: ZL_MODE_MULTI for a
     * batch of 2+ tokens (tinyBLAS float dots, including attention), ZL_MODE_MULTI8 for 8+ (also the tiled
     * K-quant matmul), ZL_MODE_ONE for a single token. NULL: llama.cpp's rule for this batch as a whole. The
     * engine gives prompt tokens the mode of their own prompt's length and generated tokens ZL_MODE_ONE, so a
     * sequence's results do not depend on what it is batched with. ZL_MODE_TAIL4 or'ed onto MULTI / MULTI8 marks
     * one of that batch's last n % 4 tokens (repacked Q4_K weights take those in another order). */
    const int8_t *gemm;
    /* Optional, per token that asks for logits: the ZL_MODE_* (TAIL4 included) of the output matmul llama.cpp
     * would compute its row in (over the rows that want logits in its batch). NULL: from the rows of its sequence
     * that want logits in this batch. */
    const int8_t *out_gemm;
} zl_batch;

/* Scratch buffers for forward passes of up to max_tokens tokens per batch (1 .. 2^20). The attention scratch
 * grows once, on the first pass with a larger KV cache or thread count; nothing is allocated per token. */
typedef struct zl_fwd zl_fwd;
int zl_fwd_create(const zl_model *m, int32_t max_tokens, zl_fwd **out, zl_err *err);
/* A batch size for prompts when the caller names none: the largest of 512, 256 and 128 tokens whose
 * activation scratch (zl_fwd's buffers plus the matmul's converted activations) stays within 1/32 of the weight
 * bytes (1/16 when prompts take the AMX tiles, which unpack each weight panel once per batch), and 64 below that. Small models then keep their peak memory near file + KV cache, large ones keep
 * the weight reuse of long batches; prompt speed measured the same at 128 and 512 on quantized weights. */
int32_t zl_model_auto_batch(const zl_model *m);
void zl_fwd_destroy(zl_fwd *f);

/* Runs the batch. out receives one row of n_vocab logits per token with logits[i] != 0, in batch order
 * (caller provides room for n_out * n_vocab floats; out may be NULL when no token asks for logits).
 * Checks first: token ids in range, sequence ids in the cache, each sequence's positions consecutive from its
 * stored length (ZL_ERANGE), the cache shaped for this model (ZL_EINVAL); then reserves the new positions of
 * every sequence (ZL_EFULL if the pool runs out). On any failure every sequence is back at its length before
 * the call (nothing stored). kv's sequences not in the batch are untouched. */
int zl_model_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *fwd, const zl_batch *b, float *out,
                     zl_err *err);

/* Embeddings of n_seq whole inputs: b holds every token of each input, input k as sequence k (0 <= k < n_seq)
 * at positions 0, 1, ... in order; b->logits and b->gemm are ignored (each token computes in the mode of its own
 * input's length, so an input's vector does not depend on what it is batched with). out: (n_seq, n_embd), each
 * row the pooled final hidden states (pooling; 0: the file's hp.pooling), L2-normalised when normalize. Encoders (bert) run the batch at once, which
 * must fit fwd (n <= max_tokens) and each input the model's context; decoders run it through the causal forward
 * pass, with kv's sequences 0 .. n_seq-1 empty before and freed after. */
int zl_model_embed(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *fwd, const zl_batch *b, int32_t n_seq,
                   zl_pooling pooling, bool normalize, float *out, zl_err *err);

#endif
