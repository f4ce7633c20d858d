/*
 * prefix.h - the prefix cache: full KV blocks of prompts, found again by the hash of everything before them.
 *
 * A block of block_size prompt tokens [j*bs, (j+1)*bs) is keyed by a 64-bit chain hash of all tokens [0, (j+1)*bs)
 * and stores its own tokens and its parent's key, which a lookup compares too, so a hit means the same prefix.
 * The cache holds one reference on each block it knows (zl_kv_block_hold), so the block outlives the sequence
 * that computed it; sequences that attach it add their own references. A block whose only reference is the
 * cache's is evictable, least recently used first.
 *
 * Threads: owned by the scheduler thread, like the KV cache it points into.
 */
#ifndef ZL_PREFIX_H
#define ZL_PREFIX_H

#include <stdint.h>

#include "core/err.h"
#include "engine/kvcache.h"

typedef struct zl_prefix zl_prefix;

/* kv is borrowed and must outlive the cache. */
int zl_prefix_create(zl_kv *kv, zl_prefix **out, zl_err *err);
/* Drops the cache's holds (blocks no table names become free) and frees it. */
void zl_prefix_destroy(zl_prefix *pc);

/* The longest run of cached blocks that starts tokens[0..n): writes up to cap block ids to blocks and returns how
 * many. Marks them recently used. */
int32_t zl_prefix_lookup(zl_prefix *pc, const int32_t *tokens, int32_t n, int32_t *blocks, int32_t cap);

/* Registers full blocks of a sequence: table[j] holds tokens [j*bs, (j+1)*bs) for j < n_blocks (written by the
 * forward pass). Blocks already cached, or whose prefix another block already caches, are left alone. */
void zl_prefix_insert(zl_prefix *pc, const int32_t *tokens, const int32_t *table, int32_t n_blocks);

/* Evicts least recently used blocks that only the cache holds until the KV pool has `want` free blocks or no
 * such block is left. Returns the number evicted. */
int32_t zl_prefix_evict(zl_prefix *pc, int32_t want);

/* Blocks the cache holds, and how many of them it alone holds (evictable). */
int32_t zl_prefix_n_blocks(const zl_prefix *pc);
int32_t zl_prefix_n_evictable(const zl_prefix *pc);

#endif
