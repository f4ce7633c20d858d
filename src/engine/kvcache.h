/*
 * kvcache.h - the paged KV cache.
 *
 * Storage is a pool of fixed-size blocks; each block holds block_size token positions of K and V for every layer.
 * Each sequence has a block table: logical block j (positions [j*block_size, (j+1)*block_size)) maps to a
 * physical block id. Blocks carry reference counts so that sequences sharing a prompt prefix can share blocks
 * (prefix caching builds on this); a block is free when its count drops to zero.
 *
 * Layout of one physical block in one layer: K then V, each (block_size, kv_dim) of the cache type
 * (kv_dim = n_head_kv * head_dim); with k_only (deepseek2's latent cache) K alone.
 *
 * Invariants: a sequence's table has exactly ceil(n_pos / block_size) entries; refcount[b] equals the number of
 * table entries (over all sequences) naming b plus external holds; n_free = blocks with refcount 0.
 *
 * Threads: owned by the thread that runs the forward pass (the scheduler); not locked.
 */
#ifndef ZL_KVCACHE_H
#define ZL_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct zl_kv zl_kv;

typedef struct zl_kv_params {
    int32_t n_layer;
    int32_t kv_dim;      /* n_head_kv * head_dim */
    int32_t block_size;  /* tokens per block, e.g. 16 */
    int32_t n_blocks;    /* physical blocks in the pool */
    int32_t max_seqs;    /* sequence ids are 0 .. max_seqs-1 */
    uint32_t type;       /* zl_dtype of stored K/V: ZL_F32 or ZL_F16 */
    bool prefault;       /* write every page of the pool at creation, so its memory is resident from the start */
    bool k_only;         /* no V half: V is read from the K rows (MLA: the latent is both; zl_kv_v gives the K row) */
} zl_kv_params;

int zl_kv_create(const zl_kv_params *p, zl_kv **out, zl_err *err);
void zl_kv_destroy(zl_kv *kv);
const zl_kv_params *zl_kv_get_params(const zl_kv *kv);

/* Number of positions stored for seq (0 for an unused sequence). */
int32_t zl_kv_seq_len(const zl_kv *kv, int32_t seq);
/* Makes room for positions [0, n_pos) of seq, taking free blocks as needed. ZL_EFULL (nothing changed) if the pool
 * lacks blocks, ZL_ERANGE if seq is out of range, ZL_ENOMEM (nothing changed) if the table cannot grow.
 * n_pos <= the current length changes nothing. Positions become "stored" when the forward pass writes them;
 * this only sets the sequence length to n_pos. */
int zl_kv_seq_reserve(zl_kv *kv, int32_t seq, int32_t n_pos, zl_err *err);
/* Drops positions >= n_pos of seq, releasing whole blocks past the end. n_pos 0 frees the sequence. */
void zl_kv_seq_truncate(zl_kv *kv, int32_t seq, int32_t n_pos);
void zl_kv_seq_free(zl_kv *kv, int32_t seq);

int32_t zl_kv_n_free_blocks(const zl_kv *kv);
int32_t zl_kv_n_used_blocks(const zl_kv *kv);
/* The most positions one sequence can ever hold: n_blocks * block_size. */
int32_t zl_kv_max_seq_len(const zl_kv *kv);

/* External holds on a block that some table names (refcount > 0), for a prefix cache that keeps blocks alive
 * after their sequence is freed: hold adds one reference, release drops one (freeing the block at zero). */
void zl_kv_block_hold(zl_kv *kv, int32_t b);
void zl_kv_block_release(zl_kv *kv, int32_t b);
int32_t zl_kv_block_refcount(const zl_kv *kv, int32_t b);

/* Makes the empty sequence seq start with n full blocks that other tables or the prefix cache already hold
 * (refcount > 0): its table becomes blocks[0..n) and its length n * block_size; each block gains a reference.
 * Positions in shared blocks are never written again (the forward pass only writes past a sequence's length),
 * so sharing needs no copy. ZL_EINVAL if seq is not empty or a block is not live, ZL_ERANGE if seq is out of
 * range, ZL_ENOMEM if the table cannot grow; nothing changes on failure. */
int zl_kv_seq_attach(zl_kv *kv, int32_t seq, const int32_t *blocks, int32_t n, zl_err *err);

/* Pointers to the K and V rows (kv_dim elements of the cache type) of position pos of seq in layer il.
 * pos < zl_kv_seq_len(seq) is the caller's invariant (asserted). */
void *zl_kv_k(zl_kv *kv, int32_t il, int32_t seq, int32_t pos);
void *zl_kv_v(zl_kv *kv, int32_t il, int32_t seq, int32_t pos);

/* The block table of seq: *n entries of physical block ids (borrowed, valid until the next change to seq). */
const int32_t *zl_kv_seq_blocks(const zl_kv *kv, int32_t seq, int32_t *n);
/* Base of physical block b in layer il: K at the returned pointer, V at + block_size * kv_dim elements (k_only: no
 * V half). */
void *zl_kv_block(zl_kv *kv, int32_t il, int32_t b);

#endif
