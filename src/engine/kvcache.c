/*
 * kvcache.c - the paged KV cache (see kvcache.h for the contract and layout).
 *
 * Storage: one allocation of n_layer * n_blocks * 2 * block_size * kv_dim elements of the cache type, ordered
 * [layer][block][K | V][slot][kv_dim], so that one block of one layer is a contiguous (2, block_size, kv_dim)
 * piece and the attention loop walks a sequence block by block.
 *
 * Bookkeeping:
 *   refcount[b]     table entries naming b, plus external holds (zl_kv_block_hold)
 *   free_ids[0..n_free)  a stack of the blocks whose refcount is 0 (popped from the top; block 0 first)
 *   seqs[s].blocks  the block table of s: exactly ceil(len / block_size) entries; capacity grows by doubling
 *
 * State of one sequence:
 *
 *   unused (len 0) --zl_kv_seq_reserve--> len n --zl_kv_seq_reserve--> len m > n  (takes free blocks)
 *        ^                                   |
 *        +------zl_kv_seq_truncate(0) / zl_kv_seq_free----+    zl_kv_seq_truncate(k < len) gives back whole blocks
 *
 * A reserve either takes every block it needs or changes nothing (the table is grown before any block is taken).
 *
 * Threads: owned by one thread (the one running the forward pass); no locks.
 */
#include "engine/kvcache.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"

typedef struct kv_seq {
    int32_t len;     /* positions stored (or reserved) */
    int32_t n_tab;   /* entries in blocks: ceil(len / block_size) */
    int32_t cap;     /* allocated entries */
    int32_t *blocks; /* physical block ids */
} kv_seq;

struct zl_kv {
    zl_kv_params p;
    size_t elt;          /* bytes per element of the cache type */
    size_t block_bytes;  /* bytes of one block in one layer: 2 * block_size * kv_dim * elt */
    size_t layer_bytes;  /* n_blocks * block_bytes */
    unsigned char *data;
    int32_t *refcount;   /* n_blocks */
    int32_t *free_ids;   /* stack of free block ids */
    int32_t n_free;
    kv_seq *seqs;        /* max_seqs */
};

/* Limits that keep every index in int32 and the total size sane. */
enum { KV_MAX_BLOCKS = 1 << 24, KV_MAX_SEQS = 1 << 20, KV_MAX_BLOCK_SIZE = 1 << 16, KV_MAX_DIM = 1 << 20 };

int zl_kv_create(const zl_kv_params *p, zl_kv **out, zl_err *err)
{
    *out = NULL;
    if (p->n_layer <= 0 || p->n_layer > 4096)
        return zl_err_set(err, ZL_EINVAL, "kv cache: n_layer %d out of range (1 .. 4096)", p->n_layer);
    if (p->kv_dim <= 0 || p->kv_dim > KV_MAX_DIM)
        return zl_err_set(err, ZL_EINVAL, "kv cache: kv_dim %d out of range (1 .. %d)", p->kv_dim, KV_MAX_DIM);
    if (p->block_size <= 0 || p->block_size > KV_MAX_BLOCK_SIZE)
        return zl_err_set(err, ZL_EINVAL, "kv cache: block_size %d out of range (1 .. %d)", p->block_size,
                          KV_MAX_BLOCK_SIZE);
    if (p->n_blocks <= 0 || p->n_blocks > KV_MAX_BLOCKS)
        return zl_err_set(err, ZL_EINVAL, "kv cache: n_blocks %d out of range (1 .. %d)", p->n_blocks,
                          KV_MAX_BLOCKS);
    if ((int64_t)p->n_blocks * p->block_size > INT32_MAX)
        return zl_err_set(err, ZL_EINVAL, "kv cache: %d blocks of %d positions exceed %d positions", p->n_blocks,
                          p->block_size, INT32_MAX);
    if (p->max_seqs <= 0 || p->max_seqs > KV_MAX_SEQS)
        return zl_err_set(err, ZL_EINVAL, "kv cache: max_seqs %d out of range (1 .. %d)", p->max_seqs,
                          KV_MAX_SEQS);
    if (p->type != ZL_F32 && p->type != ZL_F16)
        return zl_err_set(err, ZL_EUNSUPPORTED, "kv cache: type %s not supported (f32 or f16)",
                          zl_type_name(p->type));

    const size_t elt = p->type == ZL_F32 ? 4 : 2;
    /* block_bytes <= 2 * 2^16 * 2^20 * 4 = 2^39: fits size_t on 64-bit; check the products that can overflow. */
    const size_t block_bytes = (p->k_only ? 1 : 2) * (size_t)p->block_size * (size_t)p->kv_dim * elt;
    size_t layer_bytes, total;
    if (__builtin_mul_overflow(block_bytes, (size_t)p->n_blocks, &layer_bytes) ||
        __builtin_mul_overflow(layer_bytes, (size_t)p->n_layer, &total))
        return zl_err_set(err, ZL_ENOMEM, "kv cache: size overflows (%d layers x %d blocks x %zu bytes)",
                          p->n_layer, p->n_blocks, block_bytes);

    zl_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return zl_err_set(err, ZL_ENOMEM, "kv cache: out of memory");
    kv->p = *p;
    kv->elt = elt;
    kv->block_bytes = block_bytes;
    kv->layer_bytes = layer_bytes;
    /* calloc: unwritten slots read as zeros, never as garbage (they are never read by a correct caller). */
    kv->data = calloc(1, total);
    kv->refcount = calloc((size_t)p->n_blocks, sizeof *kv->refcount);
    kv->free_ids = malloc((size_t)p->n_blocks * sizeof *kv->free_ids);
    kv->seqs = calloc((size_t)p->max_seqs, sizeof *kv->seqs);
    if (!kv->data || !kv->refcount || !kv->free_ids || !kv->seqs) {
        zl_kv_destroy(kv);
        return zl_err_set(err, ZL_ENOMEM, "kv cache: out of memory for %zu bytes (%d layers, %d blocks of %d)",
                          total, p->n_layer, p->n_blocks, p->block_size);
    }
    /* calloc's pages are mapped lazily: without this, resident memory creeps up as blocks are first used (a
     * server's looked like a leak until the whole pool had been touched). */
    if (p->prefault) {
        const long pg = sysconf(_SC_PAGESIZE);
        const size_t step = pg > 0 ? (size_t)pg : 4096;
        volatile unsigned char *d = kv->data;
        for (size_t i = 0; i < total; i += step)
            d[i] = 0;
    }
    for (int32_t i = 0; i < p->n_blocks; i++)
        kv->free_ids[i] = p->n_blocks - 1 - i;
    kv->n_free = p->n_blocks;
    *out = kv;
    return ZL_OK;
}

void zl_kv_destroy(zl_kv *kv)
{
    if (!kv)
        return;
    if (kv->seqs)
        for (int32_t s = 0; s < kv->p.max_seqs; s++)
            free(kv->seqs[s].blocks);
    free(kv->seqs);
    free(kv->free_ids);
    free(kv->refcount);
    free(kv->data);
    free(kv);
}

const zl_kv_params *zl_kv_get_params(const zl_kv *kv) { return &kv->p; }

int32_t zl_kv_seq_len(const zl_kv *kv, int32_t seq)
{
    if (seq < 0 || seq >= kv->p.max_seqs)
        return 0;
    return kv->seqs[seq].len;
}

int32_t zl_kv_max_seq_len(const zl_kv *kv) { return kv->p.n_blocks * kv->p.block_size; }

static int32_t blocks_for(const zl_kv *kv, int32_t n_pos)
{
    return (int32_t)(((int64_t)n_pos + kv->p.block_size - 1) / kv->p.block_size);
}

/* Drops one reference to b; a block whose count reaches 0 goes back on the free stack. */
static void block_unref(zl_kv *kv, int32_t b)
{
    assert(b >= 0 && b < kv->p.n_blocks && kv->refcount[b] > 0);
    if (--kv->refcount[b] == 0)
        kv->free_ids[kv->n_free++] = b;
}

int zl_kv_seq_reserve(zl_kv *kv, int32_t seq, int32_t n_pos, zl_err *err)
{
    if (seq < 0 || seq >= kv->p.max_seqs)
        return zl_err_set(err, ZL_ERANGE, "kv cache: sequence %d out of range (0 .. %d)", seq, kv->p.max_seqs - 1);
    if (n_pos < 0)
        return zl_err_set(err, ZL_ERANGE, "kv cache: negative length %d for sequence %d", n_pos, seq);
    kv_seq *s = &kv->seqs[seq];
    if (n_pos <= s->len)
        return ZL_OK;
    const int32_t need = blocks_for(kv, n_pos);
    const int32_t add = need - s->n_tab;
    if (add > kv->n_free)
        return zl_err_set(err, ZL_EFULL,
                          "kv cache full: sequence %d needs %d more blocks for %d positions, %d of %d free", seq,
                          add, n_pos, kv->n_free, kv->p.n_blocks);
    if (need > s->cap) {
        int32_t cap = s->cap ? s->cap : 8;
        while (cap < need)
            cap = cap > INT32_MAX / 2 ? need : cap * 2;
        int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return zl_err_set(err, ZL_ENOMEM, "kv cache: out of memory for the block table of sequence %d", seq);
        s->blocks = nb;
        s->cap = cap;
    }
    for (int32_t i = 0; i < add; i++) {
        const int32_t b = kv->free_ids[--kv->n_free];
        assert(kv->refcount[b] == 0);
        kv->refcount[b] = 1;
        s->blocks[s->n_tab++] = b;
    }
    s->len = n_pos;
    return ZL_OK;
}

void zl_kv_seq_truncate(zl_kv *kv, int32_t seq, int32_t n_pos)
{
    if (seq < 0 || seq >= kv->p.max_seqs)
        return;
    if (n_pos < 0)
        n_pos = 0;
    kv_seq *s = &kv->seqs[seq];
    if (n_pos >= s->len)
        return;
    const int32_t keep = blocks_for(kv, n_pos);
    while (s->n_tab > keep)
        block_unref(kv, s->blocks[--s->n_tab]);
    s->len = n_pos;
}

void zl_kv_seq_free(zl_kv *kv, int32_t seq) { zl_kv_seq_truncate(kv, seq, 0); }

int32_t zl_kv_n_free_blocks(const zl_kv *kv) { return kv->n_free; }
int32_t zl_kv_n_used_blocks(const zl_kv *kv) { return kv->p.n_blocks - kv->n_free; }

void zl_kv_block_hold(zl_kv *kv, int32_t b)
{
    assert(b >= 0 && b < kv->p.n_blocks && kv->refcount[b] > 0);
    kv->refcount[b]++;
}

void zl_kv_block_release(zl_kv *kv, int32_t b) { block_unref(kv, b); }

int32_t zl_kv_block_refcount(const zl_kv *kv, int32_t b)
{
    if (b < 0 || b >= kv->p.n_blocks)
        return 0;
    return kv->refcount[b];
}

void *zl_kv_block(zl_kv *kv, int32_t il, int32_t b)
{
    assert(il >= 0 && il < kv->p.n_layer && b >= 0 && b < kv->p.n_blocks);
    return kv->data + (size_t)il * kv->layer_bytes + (size_t)b * kv->block_bytes;
}

/* Byte address of slot (pos % block_size) of the block holding pos, in the K half (v = 0) or the V half. */
static void *row_at(zl_kv *kv, int32_t il, int32_t seq, int32_t pos, int v)
{
    assert(seq >= 0 && seq < kv->p.max_seqs);
    const kv_seq *s = &kv->seqs[seq];
    assert(pos >= 0 && pos < s->len);
    const int32_t bs = kv->p.block_size;
    unsigned char *blk = zl_kv_block(kv, il, s->blocks[pos / bs]);
    const size_t slot = (size_t)v * (size_t)bs + (size_t)(pos % bs);
    return blk + slot * (size_t)kv->p.kv_dim * kv->elt;
}

void *zl_kv_k(zl_kv *kv, int32_t il, int32_t seq, int32_t pos) { return row_at(kv, il, seq, pos, 0); }
void *zl_kv_v(zl_kv *kv, int32_t il, int32_t seq, int32_t pos) { return row_at(kv, il, seq, pos, !kv->p.k_only); }

const int32_t *zl_kv_seq_blocks(const zl_kv *kv, int32_t seq, int32_t *n)
{
    if (seq < 0 || seq >= kv->p.max_seqs) {
        *n = 0;
        return NULL;
    }
    *n = kv->seqs[seq].n_tab;
    return kv->seqs[seq].blocks;
}

int zl_kv_seq_attach(zl_kv *kv, int32_t seq, const int32_t *blocks, int32_t n, zl_err *err)
{
    if (seq < 0 || seq >= kv->p.max_seqs)
        return zl_err_set(err, ZL_ERANGE, "kv cache: sequence %d out of range (0 .. %d)", seq, kv->p.max_seqs - 1);
    kv_seq *s = &kv->seqs[seq];
    if (s->len != 0)
        return zl_err_set(err, ZL_EINVAL, "kv cache: attach to sequence %d which holds %d positions", seq, s->len);
    if (n < 0 || n > kv->p.n_blocks)
        return zl_err_set(err, ZL_EINVAL, "kv cache: attach of %d blocks (pool %d)", n, kv->p.n_blocks);
    for (int32_t i = 0; i < n; i++)
        if (blocks[i] < 0 || blocks[i] >= kv->p.n_blocks || kv->refcount[blocks[i]] <= 0)
            return zl_err_set(err, ZL_EINVAL, "kv cache: attach of block %d which is not in use", blocks[i]);
    if (n == 0)
        return ZL_OK;
    if (n > s->cap) {
        int32_t *nb = realloc(s->blocks, (size_t)n * sizeof *nb);
        if (!nb)
            return zl_err_set(err, ZL_ENOMEM, "kv cache: out of memory for the block table of sequence %d", seq);
        s->blocks = nb;
        s->cap = n;
    }
    for (int32_t i = 0; i < n; i++) {
        kv->refcount[blocks[i]]++;
        s->blocks[i] = blocks[i];
    }
    s->n_tab = n;
    s->len = n * kv->p.block_size;
    return ZL_OK;
}
