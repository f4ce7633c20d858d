/*
 * backend.h - the device interface: what a CPU, a Vulkan GPU (and later CUDA, AscendCL) offers the model code.
 *
 * Objects:
 *   - a registry of device kinds (zl_backend_list): each kind enumerates its devices (zl_dev_info: name, memory,
 *     limits, features) and opens one (zl_dev_open("vulkan:0")); a kind whose driver library is absent enumerates
 *     no device and says why (zl_backend.why_none), so one binary runs CPU-only where no driver is installed;
 *   - buffers: opaque allocations of device memory (zl_dmem); model code holds handles plus byte offsets (zl_buf),
 *     never a device pointer. A device states its alignment, largest allocation and largest binding; a backend
 *     whose binding is smaller than a tensor spans it (the Vulkan backend binds each dispatch's slice);
 *   - weights (zl_dweight): a matrix uploaded through the device's repack hook (weight_upload may change the
 *     layout; the CPU backend keeps the host view, zero-copy), from staging memory the backend owns;
 *   - one stream per device (zl_dev_ops.sync waits for everything queued); ops are queued in order and each sees
 *     the results of the ones before it. Small host arrays an op takes (token ids, slots, block tables, RoPE
 *     tables) are copied by the backend into its per-stream scratch arena, reset at each sync, so the caller may
 *     reuse them as soon as the op returns. A step queued between two syncs is the unit a backend could capture
 *     and replay (CUDA graphs, aclmdlRI); nothing here depends on the host between them except these copies;
 *   - the KV pool (zl_dkv): the device owns the pool's bytes and their layout; the engine keeps block tables,
 *     refcounts and the prefix cache on the host (engine/kvcache.h) and passes slot indices (block * block_size +
 *     offset) and each token's block table to every step.
 *
 * All activations are row-major float32 (a batch of n tokens of width d is n * d floats), as on the CPU.
 * Ask before running: zl_dev_ops.supports(dev, op, type, shape) is asked for every op a model needs when its
 * weights are placed (zl_dmodel_create), so a model a device cannot run is refused at start in one line.
 *
 * Threads: a zl_dev may be used by one thread at a time (the one that runs forward passes on it).
 */
#ifndef ZL_BACKEND_H
#define ZL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/tensor.h"

typedef enum zl_op {
    ZL_OP_GET_ROWS = 0, /* y[i] = float(W row ids[i]): embedding lookup (type = W's) */
    ZL_OP_MATMUL,       /* y[t, r] = sum_c W[r, c] x[t, c] (type = W's; shape {ne0, ne1, n_tok}) */
    ZL_OP_RMSNORM,      /* y = x / sqrt(mean(x^2) + eps) * g, per row */
    ZL_OP_ROPE,         /* rotate pairs by a per-token cos/sin table (normal or neox pairs) */
    ZL_OP_GLU,          /* y = act(g) * u, act silu or gelu (tanh) */
    ZL_OP_ADD,          /* y += x */
    ZL_OP_ADD_ROWS,     /* y[t] += bias */
    ZL_OP_SCALE,        /* y *= f */
    ZL_OP_SOFTCAP,      /* y = cap * tanh(y / cap) */
    ZL_OP_GATHER,       /* y[i] = x[rows[i]] */
    ZL_OP_KV_STORE,     /* K/V rows into the pool at slots (type = the pool's) */
    ZL_OP_ATTENTION,    /* paged causal attention, sliding windows and score softcap (type = the pool's) */
    ZL_OP_COUNT
} zl_op;

const char *zl_op_name(zl_op op);

enum { ZL_GLU_SILU = 0, ZL_GLU_GELU = 1 };

/* Feature bits of zl_dev_info.features. */
enum {
    ZL_DEV_F16 = 1u << 0,        /* fp16 arithmetic in kernels */
    ZL_DEV_INT8_DOT = 1u << 1,   /* int8 dot products */
    ZL_DEV_SUBGROUPS = 1u << 2,  /* subgroup arithmetic (reductions) in compute */
    ZL_DEV_COOPMAT = 1u << 3,    /* cooperative matrices / tensor cores */
    ZL_DEV_UNIFIED = 1u << 4,    /* device memory is host memory (CPU, integrated GPU, lavapipe) */
};

typedef struct zl_dev_info {
    char name[128];          /* "llvmpipe (LLVM 15.0.6, 256 bits)", "AMD EPYC ..." */
    char kind[16];           /* the backend's name: "cpu", "vulkan" */
    char driver[64];         /* driver / API version, "" when none */
    int index;               /* within its kind */
    uint64_t memory;         /* bytes of device memory (the largest device-local heap) */
    uint64_t max_alloc;      /* largest single allocation */
    uint64_t max_binding;    /* largest range one kernel binding may see */
    uint64_t alignment;      /* offset alignment of a binding */
    uint32_t subgroup_size;  /* 0 when unknown / none */
    uint32_t features;       /* ZL_DEV_* */
    bool is_cpu;             /* the host CPU backend */
} zl_dev_info;

typedef struct zl_dev zl_dev;
typedef struct zl_dmem zl_dmem; /* a device allocation (backend-defined) */

/* A handle plus a byte offset into it. mem NULL: no buffer (an optional vector). */
typedef struct zl_buf {
    zl_dmem *mem;
    uint64_t off;
} zl_buf;

/* A matrix on a device: (ne0, ne1) as zl_tensor, in the device's layout for its type. */
typedef struct zl_dweight {
    zl_buf buf;
    uint32_t type;
    int64_t ne0, ne1;
    size_t nb1;            /* bytes per row in the file's layout */
    const zl_tensor *host; /* the host view it came from (the CPU backend computes from it) */
} zl_dweight;

/* A device KV pool: n_layer layers of n_blocks blocks of block_size positions of K then V, kv_dim values each, of
 * type (ZL_F16 or ZL_F32); the layout inside is the device's. */
typedef struct zl_dkv zl_dkv;
typedef struct zl_dkv_params {
    int32_t n_layer, kv_dim, block_size, n_blocks;
    uint32_t type;
} zl_dkv_params;

/* One attention call: n_tok queries of n_head heads (head_dim each) over the pool's layer. Token i is at position
 * pos[i] of a sequence whose block table is tables[tbl_off[i] .. tbl_off[i] + ceil((pos[i]+1)/block_size)); it
 * attends to positions [max(0, pos[i] - window + 1), pos[i]] (window 0: all). Host arrays, copied at the call. */
typedef struct zl_attn_args {
    int32_t n_tok, n_head, n_head_kv, head_dim;
    float scale;      /* scores = (q . k) * scale */
    float softcap;    /* scores = softcap * tanh(scores / softcap) when > 0 */
    int32_t window;   /* sliding window, 0: none */
    const int32_t *pos;     /* n_tok */
    const int32_t *tbl_off; /* n_tok */
    const int32_t *tables;  /* n_tables entries */
    int32_t n_tables;
} zl_attn_args;

/* The ops table a backend implements. Every op returns ZL_OK or a status (ZL_ENOMEM, ZL_EUNSUPPORTED, ZL_EIO for a
 * lost device) and never aborts; after a failure the stream's queued work is undefined until the next sync. */
typedef struct zl_dev_ops {
    void (*close)(zl_dev *d);
    /* Whether op runs for this type and shape (shape: op-specific, see zl_op; unused entries 0). */
    bool (*supports)(zl_dev *d, zl_op op, uint32_t type, const int64_t shape[4]);

    int (*alloc)(zl_dev *d, uint64_t bytes, zl_dmem **out, zl_err *err);
    void (*free)(zl_dev *d, zl_dmem *m);
    /* Host <-> device copies (write is queued in order with the ops; read waits for them). */
    int (*write)(zl_dev *d, zl_buf dst, const void *src, uint64_t bytes);
    int (*read)(zl_dev *d, void *dst, zl_buf src, uint64_t bytes);
    /* The repack hook: places t on the device in the device's layout (w->host = t). */
    int (*weight_upload)(zl_dev *d, const zl_tensor *t, zl_dweight *w, zl_err *err);
    void (*weight_free)(zl_dev *d, zl_dweight *w);
    int (*sync)(zl_dev *d);

    int (*kv_create)(zl_dev *d, const zl_dkv_params *p, zl_dkv **out, zl_err *err);
    void (*kv_destroy)(zl_dev *d, zl_dkv *kv);

    int (*get_rows)(zl_dev *d, const zl_dweight *w, const int32_t *ids, int32_t n, zl_buf y);
    /* modes: per token ZL_MODE_* (backend/cpu/ops.h), the CPU's arithmetic choice; others ignore it (may be NULL) */
    int (*matmul)(zl_dev *d, const zl_dweight *w, zl_buf x, int32_t n_tok, zl_buf y, const int8_t *modes);
    int (*rmsnorm)(zl_dev *d, zl_buf y, zl_buf x, zl_buf g, int64_t n_rows, int64_t dim, float eps);
    int (*rope)(zl_dev *d, zl_buf x, int32_t n_tok, int32_t n_head, int32_t head_dim, int32_t n_rot,
                const float *cs, bool neox); /* cs: (n_tok, n_rot) host: cos, sin of each pair */
    int (*glu)(zl_dev *d, int kind, zl_buf y, zl_buf g, zl_buf u, int64_t n);
    int (*add)(zl_dev *d, zl_buf y, zl_buf x, int64_t n);
    int (*add_rows)(zl_dev *d, zl_buf y, zl_buf bias, int64_t n_rows, int64_t dim);
    int (*scale)(zl_dev *d, zl_buf y, float f, int64_t n);
    int (*softcap)(zl_dev *d, zl_buf y, float cap, int64_t n);
    int (*gather)(zl_dev *d, zl_buf y, zl_buf x, const int32_t *rows, int32_t n, int64_t dim);
    int (*kv_store)(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf k, zl_buf v, const int32_t *slots, int32_t n);
    int (*attention)(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf q, zl_buf out, const zl_attn_args *a);
} zl_dev_ops;

/* The head of every backend's device object. */
struct zl_dev {
    const zl_dev_ops *ops;
    zl_dev_info info;
};

/* A device kind. */
typedef struct zl_backend {
    const char *name; /* "cpu", "vulkan" */
    /* Fills up to max entries of out, returns the number of devices (0 with why_none set when there are none). */
    int (*enumerate)(zl_dev_info *out, int max);
    int (*open)(int index, zl_dev **out, zl_err *err);
    /* Why enumerate found no device ("libvulkan.so.1 not found", "built without Vulkan"), or "". */
    const char *(*why_none)(void);
} zl_backend;

/* The checks every backend's attention makes of its arguments before reading anything: shapes against the pool's
 * parameters p (layer in range, GQA head counts, head_dim at most max_head_dim), and every token's position and
 * block table entries inside the tables and the pool. ZL_OK or ZL_EINVAL; *span (may be NULL) receives the keys
 * the tokens read in all, for cost estimates. */
int zl_attn_args_check(const zl_attn_args *a, const zl_dkv_params *p, int layer, int max_head_dim, int64_t *span);

/* The kinds this build has, in order (cpu first); *n receives their count. */
const zl_backend *const *zl_backend_list(int *n);
/* Opens "cpu", "vulkan" (its first device) or "vulkan:N". ZL_EUNSUPPORTED with a one-line message when there is no
 * such device. */
int zl_dev_open(const char *spec, zl_dev **out, zl_err *err);
void zl_dev_close(zl_dev *d);

static inline zl_buf zl_buf_at(zl_buf b, uint64_t off)
{
    return (zl_buf){b.mem, b.off + off};
}

/* The CPU backend (backend/cpu/backend_cpu.c): ops over host memory through today's kernels. */
const zl_backend *zl_backend_cpu(void);
/* The host pointer of a CPU backend buffer (tests, and the CPU backend itself). */
void *zl_cpu_buf_ptr(zl_buf b);
/* The Vulkan backend (backend/vulkan/), or NULL when this build has none. */
const zl_backend *zl_backend_vulkan(void);

#endif
