/* test_kvcache.c - the paged KV cache: block accounting, the full pool, isolation of sequences, layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/dtype.h"
#include "engine/kvcache.h"

static zl_kv *make(int32_t n_layer, int32_t kv_dim, int32_t block_size, int32_t n_blocks, int32_t max_seqs,
                   uint32_t type)
{
    zl_kv_params p = {.n_layer = n_layer, .kv_dim = kv_dim, .block_size = block_size, .n_blocks = n_blocks,
                      .max_seqs = max_seqs, .type = type};
    zl_kv *kv = NULL;
    zl_err e;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_OK);
    assert_non_null(kv);
    return kv;
}

static void test_bad_params(void **st)
{
    (void)st;
    const zl_kv_params good = {.n_layer = 2, .kv_dim = 8, .block_size = 4, .n_blocks = 4, .max_seqs = 2,
                               .type = ZL_F32};
    zl_kv *kv = (zl_kv *)&kv; /* must be reset to NULL on failure */
    zl_err e;
    zl_kv_params p = good;
    p.n_layer = 0;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EINVAL);
    assert_null(kv);
    p = good;
    p.block_size = -1;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EINVAL);
    p = good;
    p.n_blocks = 0;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EINVAL);
    p = good;
    p.max_seqs = 0;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EINVAL);
    p = good;
    p.type = ZL_Q4_0;
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EUNSUPPORTED);
    p = good;
    p.n_blocks = 1 << 20;
    p.block_size = 1 << 12; /* 2^32 positions: more than int32 */
    assert_int_equal(zl_kv_create(&p, &kv, &e), ZL_EINVAL);
    assert_non_null(strstr(e.msg, "positions"));
}

static void test_reserve_grow_truncate(void **st)
{
    (void)st;
    zl_kv *kv = make(2, 8, 16, 10, 3, ZL_F32);
    zl_err e;
    int32_t n = -1;
    assert_int_equal(zl_kv_n_free_blocks(kv), 10);
    assert_int_equal(zl_kv_seq_len(kv, 0), 0);
    assert_int_equal(zl_kv_max_seq_len(kv), 160);

    assert_int_equal(zl_kv_seq_reserve(kv, 0, 1, &e), ZL_OK);
    assert_int_equal(zl_kv_seq_len(kv, 0), 1);
    assert_int_equal(zl_kv_n_used_blocks(kv), 1);
    zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 1);

    /* 16 positions still fit the first block; 17 needs a second. */
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 16, &e), ZL_OK);
    assert_int_equal(zl_kv_n_used_blocks(kv), 1);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 17, &e), ZL_OK);
    assert_int_equal(zl_kv_n_used_blocks(kv), 2);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 48, &e), ZL_OK); /* exactly 3 blocks */
    assert_int_equal(zl_kv_n_used_blocks(kv), 3);
    const int32_t *tab = zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 3);
    assert_true(tab[0] != tab[1] && tab[1] != tab[2] && tab[0] != tab[2]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(zl_kv_block_refcount(kv, tab[i]), 1);

    /* Reserving less than stored changes nothing. */
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 5, &e), ZL_OK);
    assert_int_equal(zl_kv_seq_len(kv, 0), 48);

    /* Truncate inside the second block: the third is released, the second kept. */
    const int32_t third = tab[2];
    zl_kv_seq_truncate(kv, 0, 17);
    assert_int_equal(zl_kv_seq_len(kv, 0), 17);
    assert_int_equal(zl_kv_n_used_blocks(kv), 2);
    assert_int_equal(zl_kv_block_refcount(kv, third), 0);
    zl_kv_seq_truncate(kv, 0, 16); /* on a block boundary: exactly one block */
    assert_int_equal(zl_kv_n_used_blocks(kv), 1);
    zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 1);
    zl_kv_seq_truncate(kv, 0, 100); /* longer than stored: no-op */
    assert_int_equal(zl_kv_seq_len(kv, 0), 16);

    /* Another sequence takes the released blocks back. */
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 16 * 9, &e), ZL_OK);
    assert_int_equal(zl_kv_n_free_blocks(kv), 0);
    zl_kv_seq_free(kv, 0);
    assert_int_equal(zl_kv_seq_len(kv, 0), 0);
    zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 0);
    assert_int_equal(zl_kv_n_free_blocks(kv), 1);
    zl_kv_seq_free(kv, 1);
    assert_int_equal(zl_kv_n_free_blocks(kv), 10);

    /* Out-of-range sequences. */
    assert_int_equal(zl_kv_seq_reserve(kv, 3, 1, &e), ZL_ERANGE);
    assert_int_equal(zl_kv_seq_reserve(kv, -1, 1, &e), ZL_ERANGE);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, -1, &e), ZL_ERANGE);
    assert_int_equal(zl_kv_seq_len(kv, 7), 0);
    zl_kv_destroy(kv);
}

static void test_full_pool_changes_nothing(void **st)
{
    (void)st;
    zl_kv *kv = make(1, 4, 4, 4, 2, ZL_F16);
    zl_err e;
    int32_t n;
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 10, &e), ZL_OK); /* 3 blocks */
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 3, &e), ZL_OK);  /* 1 block: pool now empty */
    assert_int_equal(zl_kv_n_free_blocks(kv), 0);

    /* Growing within the last block needs no block. */
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 12, &e), ZL_OK);
    /* One more position needs a block: full, and nothing changes. */
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 13, &e), ZL_EFULL);
    assert_non_null(strstr(e.msg, "full"));
    assert_int_equal(zl_kv_seq_len(kv, 0), 12);
    zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 9, &e), ZL_EFULL); /* needs 2 more, has 0 */
    assert_int_equal(zl_kv_seq_len(kv, 1), 3);
    assert_int_equal(zl_kv_n_free_blocks(kv), 0);

    /* After freeing seq 1, seq 0 can grow by exactly one block, not two. */
    zl_kv_seq_free(kv, 1);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 17, &e), ZL_EFULL);
    assert_int_equal(zl_kv_seq_len(kv, 0), 12);
    assert_int_equal(zl_kv_n_free_blocks(kv), 1);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 16, &e), ZL_OK);
    assert_int_equal(zl_kv_n_free_blocks(kv), 0);
    zl_kv_destroy(kv);
}

static void test_layout_and_isolation(void **st)
{
    (void)st;
    enum { L = 3, D = 5, BS = 4, NB = 8 };
    zl_kv *kv = make(L, D, BS, NB, 2, ZL_F32);
    zl_err e;
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 9, &e), ZL_OK);
    /* Seq 0's rows: value = 1000*layer + 10*pos + column (+0.5 for V). */
    for (int il = 0; il < L; il++)
        for (int pos = 0; pos < 9; pos++) {
            float *k = zl_kv_k(kv, il, 0, pos), *v = zl_kv_v(kv, il, 0, pos);
            for (int c = 0; c < D; c++) {
                k[c] = 1000.0f * il + 10.0f * pos + c;
                v[c] = k[c] + 0.5f;
            }
        }
    /* Seq 1 interleaves its growth with seq 0's blocks and writes everything it has. */
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 13, &e), ZL_OK);
    for (int il = 0; il < L; il++)
        for (int pos = 0; pos < 13; pos++) {
            float *k = zl_kv_k(kv, il, 1, pos), *v = zl_kv_v(kv, il, 1, pos);
            for (int c = 0; c < D; c++)
                k[c] = v[c] = -1.0f;
        }
    for (int il = 0; il < L; il++)
        for (int pos = 0; pos < 9; pos++) {
            const float *k = zl_kv_k(kv, il, 0, pos), *v = zl_kv_v(kv, il, 0, pos);
            for (int c = 0; c < D; c++) {
                assert_float_equal(k[c], 1000.0f * il + 10.0f * pos + c, 0);
                assert_float_equal(v[c], 1000.0f * il + 10.0f * pos + c + 0.5f, 0);
            }
        }

    /* The layout kvcache.h promises: in block b of layer il, K slot j at base + j*D, V slot j at base + (BS+j)*D. */
    int32_t n;
    const int32_t *tab = zl_kv_seq_blocks(kv, 0, &n);
    assert_int_equal(n, 3);
    for (int il = 0; il < L; il++)
        for (int pos = 0; pos < 9; pos++) {
            float *base = zl_kv_block(kv, il, tab[pos / BS]);
            assert_ptr_equal(zl_kv_k(kv, il, 0, pos), base + (pos % BS) * D);
            assert_ptr_equal(zl_kv_v(kv, il, 0, pos), base + (BS + pos % BS) * D);
            assert_float_equal(base[(pos % BS) * D + 2], 1000.0f * il + 10.0f * pos + 2, 0);
        }
    zl_kv_destroy(kv);

    /* F16 rows are kv_dim halves apart. */
    kv = make(1, 6, 2, 2, 1, ZL_F16);
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 2, &e), ZL_OK);
    assert_int_equal((char *)zl_kv_k(kv, 0, 0, 1) - (char *)zl_kv_k(kv, 0, 0, 0), 12);
    assert_int_equal((char *)zl_kv_v(kv, 0, 0, 0) - (char *)zl_kv_k(kv, 0, 0, 0), 24);
    zl_kv_destroy(kv);
}

static void test_external_holds(void **st)
{
    (void)st;
    zl_kv *kv = make(1, 2, 2, 3, 2, ZL_F32);
    zl_err e;
    int32_t n;
    assert_int_equal(zl_kv_seq_reserve(kv, 0, 4, &e), ZL_OK);
    const int32_t b0 = zl_kv_seq_blocks(kv, 0, &n)[0];
    zl_kv_block_hold(kv, b0);
    assert_int_equal(zl_kv_block_refcount(kv, b0), 2);
    zl_kv_seq_free(kv, 0);
    /* The held block stays out of the pool until released. */
    assert_int_equal(zl_kv_block_refcount(kv, b0), 1);
    assert_int_equal(zl_kv_n_free_blocks(kv), 2);
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 6, &e), ZL_EFULL);
    zl_kv_block_release(kv, b0);
    assert_int_equal(zl_kv_n_free_blocks(kv), 3);
    assert_int_equal(zl_kv_seq_reserve(kv, 1, 6, &e), ZL_OK);
    zl_kv_destroy(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_reserve_grow_truncate),
        cmocka_unit_test(test_full_pool_changes_nothing),
        cmocka_unit_test(test_layout_and_isolation),
        cmocka_unit_test(test_external_holds),
    };
    return cmocka_run_group_tests_name("kvcache", tests, NULL, NULL);
}
