/*
 * prefix.c - the prefix cache (see prefix.h for the contract).
 *
 * Storage, all indexed by physical block id b (a block is cached at most once):
 *   ent[b]          valid flag, key (chain hash up to the end of b), parent key, last-use tick
 *   toks[b*bs ..]   the block's tokens, compared on lookup so that a hash collision can never share wrong KV
 *   head[h & mask]  hash buckets: first block id of the chain, next via ent[b].next (-1 ends)
 *
 * Invariants: ent[b].valid <=> the cache holds one reference on b (zl_kv_block_hold) and b is in bucket
 * (key & mask); n_cached = number of valid entries.
 *
 * Threads: scheduler thread only.
 */
#include "engine/prefix.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct pc_entry {
    bool valid;
    uint64_t key, parent;
    uint64_t tick;
    int32_t depth; /* block index in its prompt: on equal ticks the deepest goes first, so no orphan is left */
    int32_t next;
} pc_entry;

struct zl_prefix {
    zl_kv *kv;
    int32_t bs, n_blocks;
    pc_entry *ent;
    int32_t *toks;
    int32_t *head;
    uint64_t mask;
    uint64_t tick;
    int32_t n_cached;
};

/* Key of the empty prefix; the chain starts here. */
static const uint64_t ROOT_KEY = 0x9e3779b97f4a7c15ull;

/* splitmix64 finaliser: a cheap, well-mixed step for the chain hash. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t chain_key(uint64_t parent, const int32_t *t, int32_t bs)
{
    uint64_t h = mix64(parent);
    for (int32_t i = 0; i < bs; i++)
        h = mix64(h ^ (uint64_t)(uint32_t)t[i]);
    return h ? h : 1;
}

int zl_prefix_create(zl_kv *kv, zl_prefix **out, zl_err *err)
{
    *out = NULL;
    const zl_kv_params *p = zl_kv_get_params(kv);
    zl_prefix *pc = calloc(1, sizeof *pc);
    if (!pc)
        return zl_err_set(err, ZL_ENOMEM, "prefix cache: out of memory");
    pc->kv = kv;
    pc->bs = p->block_size;
    pc->n_blocks = p->n_blocks;
    uint64_t nb = 16;
    while (nb < (uint64_t)p->n_blocks * 2)
        nb *= 2;
    pc->mask = nb - 1;
    size_t n_tok;
    if (__builtin_mul_overflow((size_t)p->n_blocks, (size_t)p->block_size, &n_tok)) {
        free(pc);
        return zl_err_set(err, ZL_ENOMEM, "prefix cache: %d blocks of %d tokens overflow", p->n_blocks,
                          p->block_size);
    }
    pc->ent = calloc((size_t)p->n_blocks, sizeof *pc->ent);
    pc->toks = malloc(n_tok * sizeof *pc->toks);
    pc->head = malloc((size_t)nb * sizeof *pc->head);
    if (!pc->ent || !pc->toks || !pc->head) {
        zl_prefix_destroy(pc);
        return zl_err_set(err, ZL_ENOMEM, "prefix cache: out of memory for %d blocks", p->n_blocks);
    }
    for (uint64_t i = 0; i < nb; i++)
        pc->head[i] = -1;
    *out = pc;
    return ZL_OK;
}

void zl_prefix_destroy(zl_prefix *pc)
{
    if (!pc)
        return;
    if (pc->ent)
        for (int32_t b = 0; b < pc->n_blocks; b++)
            if (pc->ent[b].valid)
                zl_kv_block_release(pc->kv, b);
    free(pc->ent);
    free(pc->toks);
    free(pc->head);
    free(pc);
}

/* The cached block with this key, parent and tokens, or -1. */
static int32_t find(const zl_prefix *pc, uint64_t key, uint64_t parent, const int32_t *t)
{
    for (int32_t b = pc->head[key & pc->mask]; b >= 0; b = pc->ent[b].next) {
        const pc_entry *en = &pc->ent[b];
        if (en->key == key && en->parent == parent &&
            !memcmp(pc->toks + (size_t)b * (size_t)pc->bs, t, (size_t)pc->bs * sizeof *t))
            return b;
    }
    return -1;
}

int32_t zl_prefix_lookup(zl_prefix *pc, const int32_t *tokens, int32_t n, int32_t *blocks, int32_t cap)
{
    uint64_t parent = ROOT_KEY;
    int32_t got = 0;
    pc->tick++;
    for (int32_t j = 0; got < cap && (int64_t)(j + 1) * pc->bs <= n; j++) {
        const int32_t *t = tokens + (size_t)j * (size_t)pc->bs;
        const uint64_t key = chain_key(parent, t, pc->bs);
        const int32_t b = find(pc, key, parent, t);
        if (b < 0)
            break;
        pc->ent[b].tick = pc->tick;
        blocks[got++] = b;
        parent = key;
    }
    return got;
}

void zl_prefix_insert(zl_prefix *pc, const int32_t *tokens, const int32_t *table, int32_t n_blocks)
{
    uint64_t parent = ROOT_KEY;
    pc->tick++;
    for (int32_t j = 0; j < n_blocks; j++) {
        const int32_t *t = tokens + (size_t)j * (size_t)pc->bs;
        const uint64_t key = chain_key(parent, t, pc->bs);
        const int32_t have = find(pc, key, parent, t);
        const int32_t b = table[j];
        if (have >= 0) {
            pc->ent[have].tick = pc->tick;
        } else if (!pc->ent[b].valid) {
            pc_entry *en = &pc->ent[b];
            en->valid = true;
            en->key = key;
            en->parent = parent;
            en->tick = pc->tick;
            en->depth = j;
            en->next = pc->head[key & pc->mask];
            pc->head[key & pc->mask] = b;
            memcpy(pc->toks + (size_t)b * (size_t)pc->bs, t, (size_t)pc->bs * sizeof *t);
            zl_kv_block_hold(pc->kv, b);
            pc->n_cached++;
        }
        parent = key;
    }
}

static void unlink_entry(zl_prefix *pc, int32_t b)
{
    int32_t *link = &pc->head[pc->ent[b].key & pc->mask];
    while (*link != b)
        link = &pc->ent[*link].next;
    *link = pc->ent[b].next;
    pc->ent[b].valid = false;
    pc->n_cached--;
    zl_kv_block_release(pc->kv, b);
}

int32_t zl_prefix_evict(zl_prefix *pc, int32_t want)
{
    int32_t n = 0;
    while (zl_kv_n_free_blocks(pc->kv) < want) {
        int32_t victim = -1;
        for (int32_t b = 0; b < pc->n_blocks; b++)
            if (pc->ent[b].valid && zl_kv_block_refcount(pc->kv, b) == 1 &&
                (victim < 0 || pc->ent[b].tick < pc->ent[victim].tick ||
                 (pc->ent[b].tick == pc->ent[victim].tick && pc->ent[b].depth > pc->ent[victim].depth)))
                victim = b;
        if (victim < 0)
            break;
        unlink_entry(pc, victim);
        n++;
    }
    return n;
}

int32_t zl_prefix_n_blocks(const zl_prefix *pc) { return pc->n_cached; }

int32_t zl_prefix_n_evictable(const zl_prefix *pc)
{
    int32_t n = 0;
    for (int32_t b = 0; b < pc->n_blocks; b++)
        n += pc->ent[b].valid && zl_kv_block_refcount(pc->kv, b) == 1;
    return n;
}
