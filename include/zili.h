/*
 * zili.h - the public C API of zili, an LLM inference engine.
 *
 * Conventions: opaque handles; every function that can fail returns an int status (ZILI_OK = 0, negative codes
 * below) and, where it takes (err, err_len), writes a one-line message there. Results are written through pointer
 * arguments. Option structs come from *_default_params(). Every create/load has a matching free; "caller frees"
 * is said where the caller owns returned memory (free it with free()).
 *
 * Threads: a zili_model is immutable after load and may be shared by threads; a zili_session and a zili_sampler
 * are used by one thread at a time.
 */
#ifndef ZILI_H
#define ZILI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZILI_VERSION "0.1.0"

enum {
    ZILI_OK = 0,
    ZILI_EINVAL = -1,
    ZILI_EIO = -2,
    ZILI_ENOMEM = -3,
    ZILI_EFORMAT = -4,
    ZILI_EUNSUPPORTED = -5,
    ZILI_ERANGE = -6,
    ZILI_EFULL = -7,
};

typedef int32_t zili_token;
typedef struct zili_model zili_model;
typedef struct zili_session zili_session;
typedef struct zili_sampler zili_sampler;
typedef struct zili_detok zili_detok;

/* ---- model ---------------------------------------------------------------------------------------------- */

typedef struct zili_model_params {
    bool use_mmap;  /* map the file (default) instead of reading it into memory */
    bool use_mlock; /* lock the weights in RAM (a failure is a warning) */
    bool no_repack; /* keep Q4_0 / Q4_K matrices in the file's layout and vec_dot's arithmetic (llama.cpp's
                     * --no-repack) where this CPU would repack them for its faster kernels (also ZILI_NO_REPACK=1) */
    bool exact;     /* llama.cpp's arithmetic everywhere: prompts never take the AMX tiles, whose sums are ordered
                     * differently (also ZILI_EXACT=1; without AMX the same as false) */
    const char *device; /* NULL / "cpu": the CPU; "vulkan" or "vulkan:N": the weights go to that device (see
                         * `zili devices`) and every forward pass runs there */
    int32_t gpu_layers; /* with a device: how many of the last layers run on it, the rest on the CPU (llama.cpp's
                         * -ngl); negative (the default): all that fit its memory */
} zili_model_params;

zili_model_params zili_model_default_params(void);
/* The AMX tile units' measured peak on n_threads threads (about `seconds` in all): int8 and bf16 multiply-adds per
 * second. Returns false (zeros) where prompts cannot take the tiles (no AMX, or ZILI_CPU names another set). */
bool zili_cpu_tile_peak(int n_threads, double seconds, double *int8_macs, double *bf16_macs);
int zili_model_load(const char *path, const zili_model_params *params, zili_model **out, char *err, size_t err_len);
void zili_model_free(zili_model *m);
/* A warning from load (e.g. mlock failed), or NULL. Borrowed. */
const char *zili_model_warning(const zili_model *m);
/* One line on the device the weights were placed on ("vulkan:0 (llvmpipe ...): 30 of 30 layers, ..."), or NULL
 * when the model runs on the CPU path. Borrowed. */
const char *zili_model_device(const zili_model *m);

typedef struct zili_model_info {
    const char *arch;            /* "llama" */
    const char *name;            /* general.name or "" */
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    float rope_theta, norm_eps;
    const char *rope_scaling;    /* "none", "linear", "yarn", "llama3" */
    float rope_scale;            /* scaling factor (1 when none; llama3's factors are per pair, in the file) */
    int32_t rope_orig_ctx;       /* original context of a scaled model */
    int32_t n_swa;               /* sliding window in positions, 0 when none */
    int32_t n_swa_layers;        /* layers that use it (the others attend to the whole context) */
    int32_t n_expert;            /* mixture of experts: experts per layer, 0 for a dense model */
    int32_t n_expert_used;       /* experts each token is routed to */
    int32_t n_ff_exp;            /* an expert's feed-forward width */
    int32_t n_ff_shexp;          /* the shared expert's width (qwen2moe), 0 when none */
    bool expert_weights_norm;    /* the routed experts' weights are normalized to sum 1 */
    int32_t n_expert_shared;     /* deepseek2: shared experts (together n_ff_shexp wide, ungated), else 0 */
    int32_t n_layer_dense_lead;  /* deepseek2: leading layers with a dense feed-forward */
    const char *expert_gating;   /* "softmax" or "sigmoid" (deepseek2 V3) */
    float expert_weights_scale;  /* routed scaling factor, 0 or 1 when none */
    int32_t n_expert_groups, n_group_used; /* group-limited routing, 0 when none */
    /* Multi-head latent attention (deepseek2), else 0: query rank (0: uncompressed), latent rank, the decompressed
     * key (nope + rope) and value widths per head; the cache holds kv_lora_rank + n_rot values per token and layer. */
    int32_t q_lora_rank, kv_lora_rank, head_dim_k_mla, head_dim_v_mla;
    bool tied_embeddings;
    uint64_t n_params;
    uint64_t file_size;
    uint64_t active_weight_bytes; /* the weight bytes one token reads: every tensor, an untied token embedding as one
                                   * row, the expert tensors (`*_exps`) as n_expert_used of n_expert experts */
    uint32_t gguf_version;
    const char *tokenizer_model; /* "gpt2", "llama" */
    const char *tokenizer_pre;
    zili_token bos, eos;         /* -1 if none */
    bool add_bos;
    const char *chat_template;   /* recognised template name, or NULL if none / unrecognised */
    const char *kernels;         /* CPU kernel set in use ("avx2", "scalar"; "avx512vnni+amx" where prompts take
                                  * the AMX tiles) */
} zili_model_info;

/* All strings borrowed from the model. */
void zili_model_get_info(const zili_model *m, zili_model_info *info);
/* Tensor counts by type: calls fn(type_name, n_tensors, n_bytes, ud) once per type present. */
void zili_model_foreach_type(const zili_model *m, void (*fn)(const char *type, uint32_t n, uint64_t bytes, void *ud),
                             void *ud);

/* ---- tokens --------------------------------------------------------------------------------------------- */

/* Text -> ids. add_special: BOS/EOS as the vocabulary says; parse_special: "<|im_start|>"-like text becomes
 * the special token. *out: caller frees. */
int zili_tokenize(const zili_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                  zili_token **out, size_t *n_out, char *err, size_t err_len);
/* Ids -> text, NUL-terminated, caller frees. Ids out of range: ZILI_ERANGE. */
int zili_detokenize(const zili_model *m, const zili_token *ids, size_t n, bool special, char **out, char *err,
                    size_t err_len);
bool zili_token_is_eog(const zili_model *m, zili_token t);
int32_t zili_n_vocab(const zili_model *m);

/* Streaming detokenizer: push ids one by one, get back only complete UTF-8. */
zili_detok *zili_detok_create(const zili_model *m, bool special);
void zili_detok_free(zili_detok *d);
/* Writes the new text into buf (cap >= 256) and returns its length, or a negative status. */
int zili_detok_push(zili_detok *d, zili_token t, char *buf, size_t cap);
int zili_detok_flush(zili_detok *d, char *buf, size_t cap);

/* ---- chat templates ------------------------------------------------------------------------------------- */

typedef struct zili_chat_msg {
    const char *role;
    const char *content;
} zili_chat_msg;

/* Renders msgs with the model's template (tmpl_name NULL) or a named one (zili --help lists them). *out: caller
 * frees. The text is meant for zili_tokenize with add_special and parse_special: when the model's tokenizer adds
 * BOS itself, the template's own BOS text is left out of *out, so the tokens hold exactly one. */
int zili_chat_apply(const zili_model *m, const char *tmpl_name, const zili_chat_msg *msgs, size_t n,
                    bool add_assistant, char **out, char *err, size_t err_len);

/* ---- session: one sequence's KV cache and a forward pass ------------------------------------------------ */

typedef struct zili_session_params {
    int32_t n_ctx;     /* tokens of context (0: min(model's, 4096)) */
    int32_t n_batch;   /* max tokens per forward pass (0, the default: 64-512 chosen from the model's size) */
    int32_t n_threads; /* 0: all online CPUs */
    bool kv_f16;       /* KV cache in F16 (default) or F32 */
} zili_session_params;

zili_session_params zili_session_default_params(void);
int zili_session_create(const zili_model *m, const zili_session_params *p, zili_session **out, char *err,
                        size_t err_len);
void zili_session_free(zili_session *s);
int32_t zili_session_n_ctx(const zili_session *s);
/* The batch size in use (the one asked for, or the one chosen from the model, at most n_ctx). */
int32_t zili_session_n_batch(const zili_session *s);
/* Positions already in the cache. */
int32_t zili_session_n_past(const zili_session *s);
/* Drops cached positions >= n_past (0 clears the session). */
void zili_session_truncate(zili_session *s, int32_t n_past);

/* Appends n tokens at positions n_past.. and runs them through the model (in chunks of n_batch).
 * all_logits: keep the logits of every token of this call (else only the last). ZILI_ERANGE if the context
 * would overflow (nothing evaluated), or for a token id out of range. */
int zili_session_eval(zili_session *s, const zili_token *tokens, size_t n, bool all_logits, char *err,
                      size_t err_len);
/* Logits row i of the last eval (i = -1: the last token), n_vocab floats, borrowed until the next eval.
 * NULL if that row was not kept. */
const float *zili_session_logits(const zili_session *s, int32_t i);

/* ---- embeddings: pooled final hidden states of whole inputs ------------------------------------------------ */

/* How an input's vector is made of its tokens' final hidden states (llama.cpp's pooling_type values). */
enum { ZILI_POOL_FILE = 0, ZILI_POOL_MEAN = 1, ZILI_POOL_CLS = 2, ZILI_POOL_LAST = 3 };

typedef struct zili_embedder_params {
    int32_t n_ctx;     /* the longest input in tokens (0: the model's context, at most 8192) */
    int32_t n_batch;   /* tokens per pass over several inputs (0: max(n_ctx, 1024)); at least n_ctx */
    int32_t n_threads; /* 0: all online CPUs */
    int pooling;       /* ZILI_POOL_*: FILE (the default) takes the file's pooling_type */
    bool normalize;    /* L2-normalise each vector (default true) */
} zili_embedder_params;

/* Whether m makes embeddings only (an encoder such as bert: no output head, zili_session_eval refuses it). */
bool zili_model_is_encoder(const zili_model *m);
/* The file's pooling (ZILI_POOL_MEAN, _CLS or _LAST; for a generative model without pooling_type, _LAST for
 * qwen2 / qwen3 and _MEAN for others), and whether the architecture can embed at all (bert, llama, qwen2, qwen3). */
int zili_model_pooling(const zili_model *m);
bool zili_model_can_embed(const zili_model *m);

typedef struct zili_embedder zili_embedder;
zili_embedder_params zili_embedder_default_params(void);
/* An embedder owns a thread pool and the scratch (and for decoders a KV cache) for n_batch tokens; one thread at
 * a time uses it. ZILI_EUNSUPPORTED for an architecture that cannot embed. */
int zili_embedder_create(const zili_model *m, const zili_embedder_params *p, zili_embedder **out, char *err,
                         size_t err_len);
void zili_embedder_free(zili_embedder *e);
int32_t zili_embedder_dim(const zili_embedder *e);   /* floats per vector (n_embd) */
int32_t zili_embedder_n_ctx(const zili_embedder *e); /* the longest input */
int zili_embedder_pooling(const zili_embedder *e);   /* the pooling in use (never ZILI_POOL_FILE) */
/* The vectors of n inputs: input i is lens[i] tokens at inputs[i] (1 .. n_ctx of them, ids in the vocabulary);
 * out receives n * dim floats, input i's vector at out + i * dim. Inputs are run together, n_batch tokens per
 * pass; an input's vector does not depend on the others. ZILI_EINVAL for an empty input (nothing computed),
 * ZILI_ERANGE for one longer than n_ctx or an id out of range. */
int zili_embed(zili_embedder *e, const zili_token *const *inputs, const size_t *lens, size_t n, float *out,
               char *err, size_t err_len);

/* ---- sampling ------------------------------------------------------------------------------------------- */

typedef struct zili_sampler_params {
    float temp;              /* 0 = greedy; default 0.8 */
    int32_t top_k;           /* default 40; <= 0 off */
    float top_p;             /* default 0.95; 1 off */
    float min_p;             /* default 0.05; 0 off */
    float repeat_penalty;    /* default 1 (off) */
    int32_t repeat_last_n;   /* default 64; -1 = whole history */
    float presence_penalty;  /* default 0 */
    float frequency_penalty; /* default 0 */
    uint64_t seed;           /* default: from the clock */
} zili_sampler_params;

zili_sampler_params zili_sampler_default_params(void);
int zili_sampler_create(const zili_model *m, const zili_sampler_params *p, zili_sampler **out, char *err,
                        size_t err_len);
void zili_sampler_free(zili_sampler *s);
zili_token zili_sampler_sample(zili_sampler *s, const float *logits);
void zili_sampler_accept(zili_sampler *s, zili_token t);

const char *zili_status_str(int status);

/* ---- devices -------------------------------------------------------------------------------------------- */

/* Feature bits of zili_device_info.features. */
enum {
    ZILI_DEV_F16 = 1u << 0,       /* fp16 arithmetic in kernels */
    ZILI_DEV_INT8_DOT = 1u << 1,  /* int8 dot products */
    ZILI_DEV_SUBGROUPS = 1u << 2, /* subgroup arithmetic in compute */
    ZILI_DEV_COOPMAT = 1u << 3,   /* cooperative matrices / tensor cores */
    ZILI_DEV_UNIFIED = 1u << 4,   /* device memory is host memory (the CPU, integrated GPUs, lavapipe) */
};

typedef struct zili_device_info {
    char spec[32];          /* what zili_model_params.device takes: "cpu:0", "vulkan:1" */
    char kind[16];          /* "cpu", "vulkan" */
    int index;              /* within its kind */
    char name[128];         /* "AMD EPYC ...", "llvmpipe (LLVM 15.0.6, 256 bits)" */
    char driver[64];        /* driver / API version, "" when none */
    uint64_t memory;        /* bytes of device memory (the largest device-local heap; RAM for the CPU) */
    uint64_t max_alloc;     /* largest single allocation, bytes */
    uint64_t max_binding;   /* largest range one kernel may see, bytes */
    uint64_t alignment;     /* offset alignment of a binding, bytes */
    uint32_t subgroup_size; /* 0 when unknown / none */
    uint32_t features;      /* ZILI_DEV_* */
    bool is_cpu;
} zili_device_info;

/* The number of device kinds this build has (the CPU first, then "vulkan" where it was built in). */
int zili_device_kinds(void);
/* Kind k (0 .. zili_device_kinds() - 1): its name in *kind (borrowed, static) and its devices, up to max of them
 * written to out (out may be NULL with max 0). Returns how many devices the kind has; when that is 0, *why (if
 * non-NULL) receives the reason ("libvulkan.so.1 not found"; borrowed until the next call), else "". Returns
 * ZILI_EINVAL for k out of range. */
int zili_device_list(int k, const char **kind, zili_device_info *out, int max, const char **why);

#ifdef __cplusplus
}
#endif

#endif
