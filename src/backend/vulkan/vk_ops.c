/*
 * vk_ops.c - the Vulkan backend's ops: each checks its arguments on the host (ids, slots and block tables in
 * range, so a shader never reads outside a buffer), binds the slices it needs (tensors larger than the device's
 * largest binding are cut into row ranges, one dispatch each) and records its shader (the .comp files in shaders/).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk.h"
#include "core/dtype.h"

int zl_vk_wtype_index(uint32_t type)
{
    switch (type) {
    case ZL_F32: return 0;
    case ZL_F16: return 1;
    case ZL_BF16: return 2;
    case ZL_Q4_0: return 3;
    case ZL_Q4_1: return 4;
    case ZL_Q5_0: return 5;
    case ZL_Q8_0: return 6;
    case ZL_Q4_K: return 7;
    case ZL_Q5_K: return 8;
    case ZL_Q6_K: return 9;
    default: return -1;
    }
}

struct zl_dkv {
    zl_dkv_params p;
    zl_dmem **layer;
};

#define V(d) ((zl_vk *)(d))

static bool buf_ok(zl_buf b, uint64_t bytes)
{
    return b.mem && b.off <= b.mem->size && bytes <= b.mem->size - b.off && b.off % 4 == 0;
}

static int upload(zl_dev *d, const zl_tensor *t, zl_dweight *w, zl_err *err)
{
    memset(w, 0, sizeof *w);
    if (zl_vk_wtype_index(t->type) < 0)
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: %s: weight type %s is not supported on this device",
                          t->name ? t->name : "tensor", zl_type_traits_get(t->type)->name);
    if (t->layout != ZL_LAYOUT_ROWS)
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: %s: repacked CPU layout cannot be uploaded",
                          t->name ? t->name : "tensor");
    const uint64_t bytes = (uint64_t)t->nb1 * (uint64_t)t->ne[1];
    int rc;
    zl_dmem *m;
    if ((rc = d->ops->alloc(d, bytes, &m, err)) != ZL_OK)
        return rc;
    if ((rc = d->ops->write(d, (zl_buf){m, 0}, t->data, bytes)) != ZL_OK) {
        d->ops->free(d, m);
        return zl_err_set(err, rc, "vulkan: upload of %s failed", t->name ? t->name : "tensor");
    }
    *w = (zl_dweight){.buf = {m, 0}, .type = t->type, .ne0 = t->ne[0], .ne1 = t->ne[1], .nb1 = t->nb1, .host = t};
    return ZL_OK;
}

static void weight_free(zl_dev *d, zl_dweight *w)
{
    if (w->buf.mem)
        d->ops->free(d, w->buf.mem);
    memset(w, 0, sizeof *w);
}

static int matmul(zl_dev *d, const zl_dweight *w, zl_buf x, int32_t n_tok, zl_buf y, const int8_t *modes)
{
    (void)modes;
    zl_vk *v = V(d);
    const int wi = zl_vk_wtype_index(w->type);
    if (wi < 0 || !w->buf.mem || n_tok < 0 || w->ne0 <= 0 || w->ne1 <= 0)
        return wi < 0 ? ZL_EUNSUPPORTED : ZL_EINVAL;
    const uint64_t in = (uint64_t)w->ne0 * 4, out = (uint64_t)w->ne1 * 4;
    if (!buf_ok(x, in * (uint64_t)n_tok) || !buf_ok(y, out * (uint64_t)n_tok))
        return ZL_EINVAL;
    const uint64_t room = v->max_range - v->align;
    /* token chunks whose X and Y slices fit one binding; row chunks whose W slice does */
    int64_t tok_step = (int64_t)(room / (in > out ? in : out));
    int64_t row_step = (int64_t)(room / w->nb1);
    if (tok_step < 1 || row_step < 1)
        return ZL_EUNSUPPORTED;
    if (tok_step > 8 * 65535)
        tok_step = 8 * 65535;
    for (int64_t t0 = 0; t0 < n_tok; t0 += tok_step) {
        const int64_t nt = n_tok - t0 < tok_step ? n_tok - t0 : tok_step;
        for (int64_t r0 = 0; r0 < w->ne1; r0 += row_step) {
            const int64_t nr = w->ne1 - r0 < row_step ? w->ne1 - r0 : row_step;
            zl_vk_bind b[3] = {{w->buf.mem, w->buf.off + (uint64_t)r0 * w->nb1, (uint64_t)nr * w->nb1},
                               {x.mem, x.off + (uint64_t)t0 * in, (uint64_t)nt * in},
                               {y.mem, y.off + (uint64_t)t0 * out, (uint64_t)nt * out}};
            uint64_t sh[3];
            int rc;
            if ((rc = zl_vk_binds(v, b, 3, sh)) != ZL_OK)
                return rc;
            const uint32_t pc[9] = {(uint32_t)w->ne0, (uint32_t)nr, (uint32_t)nt, (uint32_t)sh[0],
                                    (uint32_t)w->nb1, (uint32_t)(sh[1] / 4), (uint32_t)(sh[2] / 4),
                                    (uint32_t)w->ne1, (uint32_t)r0};
            uint32_t gx, gy;
            /* Rows and tokens per workgroup: the mat-vec (mul_mv.comp) 64 or 4 x 8; the tiled matmul of the
             * mat-vec's shape (same sums, bit for bit): mul_mm.comp 64 x 32 for one thread a row, mul_mm_lanes.comp
             * 16 x 16 for 16 lanes a row. */
            const bool tiled = nt >= v->mm_min;
            const uint64_t rows_wg = !v->mv_rows ? (tiled ? 16 : 4) : 64;
            const uint64_t tok_wg = !tiled ? 8 : v->mv_rows ? 32 : 16;
            zl_vk_groups(v, ((uint64_t)nr + rows_wg - 1) / rows_wg, &gx, &gy);
            const int first = tiled ? (v->mv_rows ? ZL_VKS_MUL_MM_F32 : ZL_VKS_MUL_MM_LANES_F32)
                                    : (v->mv_rows ? ZL_VKS_MUL_MV_RT_F32 : ZL_VKS_MUL_MV_F32);
            if ((rc = zl_vk_dispatch(v, (zl_vk_shader)(first + wi), b, 3, pc, sizeof pc, gx, gy,
                                     (uint32_t)(((uint64_t)nt + tok_wg - 1) / tok_wg))) != ZL_OK)
                return rc;
        }
    }
    return ZL_OK;
}

static int get_rows(zl_dev *d, const zl_dweight *w, const int32_t *ids, int32_t n, zl_buf y)
{
    zl_vk *v = V(d);
    const int wi = zl_vk_wtype_index(w->type);
    if (wi < 0 || !w->buf.mem || n < 0 || (n > 0 && !ids))
        return wi < 0 ? ZL_EUNSUPPORTED : ZL_EINVAL;
    const uint64_t row = (uint64_t)w->ne0 * 4;
    if (!buf_ok(y, row * (uint64_t)n))
        return ZL_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->ne1)
            return ZL_EINVAL;
    const uint64_t total = (uint64_t)w->nb1 * (uint64_t)w->ne1;
    const bool whole = total + v->align <= v->max_range;
    /* A table that fits one binding: one dispatch for all rows; else one per row, binding just that row. */
    for (int32_t i0 = 0; i0 < n; i0 += whole ? n : 1) {
        const int32_t cnt = whole ? n : 1;
        const int32_t zero = 0;
        zl_vk_bind ib;
        int rc;
        if ((rc = zl_vk_scratch(v, whole ? ids : &zero, (uint64_t)cnt * 4, &ib)) != ZL_OK)
            return rc;
        zl_vk_bind b[3] = {{w->buf.mem, w->buf.off + (whole ? 0 : (uint64_t)ids[i0] * w->nb1),
                            whole ? total : w->nb1},
                           ib,
                           {y.mem, y.off + (uint64_t)i0 * row, (uint64_t)cnt * row}};
        uint64_t sh[3];
        if ((rc = zl_vk_binds(v, b, 3, sh)) != ZL_OK)
            return rc;
        const uint32_t pc[6] = {(uint32_t)w->ne0, (uint32_t)cnt, (uint32_t)sh[0], (uint32_t)w->nb1,
                                (uint32_t)(sh[1] / 4), (uint32_t)(sh[2] / 4)};
        uint32_t gx, gy;
        zl_vk_groups(v, (uint64_t)cnt, &gx, &gy);
        if ((rc = zl_vk_dispatch(v, (zl_vk_shader)(ZL_VKS_GET_ROWS_F32 + wi), b, 3, pc, sizeof pc, gx, gy, 1)) !=
            ZL_OK)
            return rc;
    }
    return ZL_OK;
}

static int rmsnorm(zl_dev *d, zl_buf y, zl_buf x, zl_buf g, int64_t n_rows, int64_t dim, float eps)
{
    zl_vk *v = V(d);
    const uint64_t bytes = (uint64_t)n_rows * (uint64_t)dim * 4;
    if (n_rows < 0 || dim <= 0 || !buf_ok(x, bytes) || !buf_ok(y, bytes) || (g.mem && !buf_ok(g, (uint64_t)dim * 4)))
        return ZL_EINVAL;
    if (bytes + v->align > v->max_range)
        return ZL_EUNSUPPORTED;
    zl_vk_bind b[3] = {{x.mem, x.off, bytes}, {g.mem, g.off, (uint64_t)dim * 4}, {y.mem, y.off, bytes}};
    uint64_t sh[3];
    int rc;
    if ((rc = zl_vk_binds(v, b, 3, sh)) != ZL_OK)
        return rc;
    struct {
        uint32_t n_rows, dim, x_off, g_off, y_off, has_g;
        float eps;
    } pc = {(uint32_t)n_rows, (uint32_t)dim, (uint32_t)(sh[0] / 4), (uint32_t)(sh[1] / 4), (uint32_t)(sh[2] / 4),
            g.mem != NULL, eps};
    uint32_t gx, gy;
    zl_vk_groups(v, (uint64_t)n_rows, &gx, &gy);
    return zl_vk_dispatch(v, ZL_VKS_RMSNORM, b, 3, &pc, sizeof pc, gx, gy, 1);
}

static int rope(zl_dev *d, zl_buf x, int32_t n_tok, int32_t n_head, int32_t head_dim, int32_t n_rot,
                const float *cs, bool neox)
{
    zl_vk *v = V(d);
    const uint64_t bytes = (uint64_t)n_tok * (uint64_t)n_head * (uint64_t)head_dim * 4;
    if (n_tok < 0 || n_head <= 0 || head_dim <= 0 || n_rot < 0 || n_rot > head_dim || n_rot % 2 || !cs ||
        !buf_ok(x, bytes))
        return ZL_EINVAL;
    if (n_tok == 0 || n_rot == 0)
        return ZL_OK;
    zl_vk_bind b[2] = {{x.mem, x.off, bytes}, {0}};
    int rc;
    if ((rc = zl_vk_scratch(v, cs, (uint64_t)n_tok * (uint64_t)n_rot * 4, &b[1])) != ZL_OK)
        return rc;
    uint64_t sh[2];
    if ((rc = zl_vk_binds(v, b, 2, sh)) != ZL_OK)
        return rc;
    const uint32_t pc[7] = {(uint32_t)n_tok, (uint32_t)n_head, (uint32_t)head_dim, (uint32_t)n_rot, neox,
                            (uint32_t)(sh[0] / 4), (uint32_t)(sh[1] / 4)};
    uint32_t gx, gy;
    zl_vk_groups(v, ((uint64_t)n_tok * (uint64_t)n_head * (uint64_t)(n_rot / 2) + 63) / 64, &gx, &gy);
    return zl_vk_dispatch(v, ZL_VKS_ROPE, b, 2, pc, sizeof pc, gx, gy, 1);
}

/* eltwise.comp's ops */
enum { EW_ADD, EW_ADD_ROWS, EW_SCALE, EW_SOFTCAP, EW_SILU, EW_GELU, EW_GATHER };

static int eltwise(zl_vk *v, uint32_t op, zl_buf y, zl_buf a, uint64_t a_bytes, zl_buf b, const int32_t *rows,
                   int32_t n_rows, uint64_t n, uint64_t dim, float f)
{
    if (n == 0)
        return ZL_OK;
    if (n * 4 + v->align > v->max_range || n > UINT32_MAX)
        return ZL_EUNSUPPORTED;
    zl_vk_bind bd[4] = {{y.mem, y.off, n * 4}, {a.mem, a.off, a_bytes}, {b.mem, b.off, n * 4}, {0}};
    int rc;
    if (rows && (rc = zl_vk_scratch(v, rows, (uint64_t)n_rows * 4, &bd[3])) != ZL_OK)
        return rc;
    uint64_t sh[4];
    if ((rc = zl_vk_binds(v, bd, 4, sh)) != ZL_OK)
        return rc;
    struct {
        uint32_t op, n, dim, y_off, a_off, b_off, r_off;
        float f;
    } pc = {op, (uint32_t)n, (uint32_t)dim, (uint32_t)(sh[0] / 4), (uint32_t)(sh[1] / 4), (uint32_t)(sh[2] / 4),
            (uint32_t)(sh[3] / 4), f};
    uint32_t gx, gy;
    zl_vk_groups(v, (n + 255) / 256, &gx, &gy);
    return zl_vk_dispatch(v, ZL_VKS_ELTWISE, bd, 4, &pc, sizeof pc, gx, gy, 1);
}

static int glu(zl_dev *d, int kind, zl_buf y, zl_buf g, zl_buf u, int64_t n)
{
    if (n < 0 || (kind != ZL_GLU_SILU && kind != ZL_GLU_GELU) || !buf_ok(y, (uint64_t)n * 4) ||
        !buf_ok(g, (uint64_t)n * 4) || !buf_ok(u, (uint64_t)n * 4))
        return ZL_EINVAL;
    return eltwise(V(d), kind == ZL_GLU_SILU ? EW_SILU : EW_GELU, y, g, (uint64_t)n * 4, u, NULL, 0, (uint64_t)n, 1,
                   0.0f);
}

static int add(zl_dev *d, zl_buf y, zl_buf x, int64_t n)
{
    if (n < 0 || !buf_ok(y, (uint64_t)n * 4) || !buf_ok(x, (uint64_t)n * 4))
        return ZL_EINVAL;
    return eltwise(V(d), EW_ADD, y, x, (uint64_t)n * 4, (zl_buf){0}, NULL, 0, (uint64_t)n, 1, 0.0f);
}

static int add_rows(zl_dev *d, zl_buf y, zl_buf bias, int64_t n_rows, int64_t dim)
{
    if (n_rows < 0 || dim <= 0 || !buf_ok(y, (uint64_t)(n_rows * dim) * 4) || !buf_ok(bias, (uint64_t)dim * 4))
        return ZL_EINVAL;
    return eltwise(V(d), EW_ADD_ROWS, y, bias, (uint64_t)dim * 4, (zl_buf){0}, NULL, 0, (uint64_t)(n_rows * dim),
                   (uint64_t)dim, 0.0f);
}

static int scale(zl_dev *d, zl_buf y, float f, int64_t n)
{
    if (n < 0 || !buf_ok(y, (uint64_t)n * 4))
        return ZL_EINVAL;
    return eltwise(V(d), EW_SCALE, y, (zl_buf){0}, 0, (zl_buf){0}, NULL, 0, (uint64_t)n, 1, f);
}

static int softcap(zl_dev *d, zl_buf y, float cap, int64_t n)
{
    if (n < 0 || !(cap > 0.0f) || !buf_ok(y, (uint64_t)n * 4))
        return ZL_EINVAL;
    return eltwise(V(d), EW_SOFTCAP, y, (zl_buf){0}, 0, (zl_buf){0}, NULL, 0, (uint64_t)n, 1, cap);
}

static int gather(zl_dev *d, zl_buf y, zl_buf x, const int32_t *rows, int32_t n, int64_t dim)
{
    if (n < 0 || dim <= 0 || (n > 0 && !rows) || !buf_ok(y, (uint64_t)n * (uint64_t)dim * 4) || !x.mem)
        return ZL_EINVAL;
    int32_t max_row = -1;
    for (int32_t i = 0; i < n; i++) {
        if (rows[i] < 0)
            return ZL_EINVAL;
        if (rows[i] > max_row)
            max_row = rows[i];
    }
    const uint64_t x_bytes = (uint64_t)(max_row + 1) * (uint64_t)dim * 4;
    if (!buf_ok(x, x_bytes))
        return ZL_EINVAL;
    return eltwise(V(d), EW_GATHER, y, x, x_bytes, (zl_buf){0}, rows, n, (uint64_t)n * (uint64_t)dim,
                   (uint64_t)dim, 0.0f);
}

static int kv_create(zl_dev *d, const zl_dkv_params *p, zl_dkv **out, zl_err *err)
{
    zl_vk *v = V(d);
    if (p->n_layer <= 0 || p->kv_dim <= 0 || p->kv_dim % 2 || p->block_size <= 0 || p->n_blocks <= 0 ||
        (p->type != ZL_F16 && p->type != ZL_F32))
        return zl_err_set(err, ZL_EINVAL, "vulkan: bad KV pool parameters");
    const uint64_t per_layer = (uint64_t)p->n_blocks * 2u * (uint64_t)p->block_size * (uint64_t)p->kv_dim *
                               (p->type == ZL_F16 ? 2u : 4u);
    if (per_layer + v->align > v->max_range)
        return zl_err_set(err, ZL_EUNSUPPORTED,
                          "vulkan: a KV layer of %.1f MiB exceeds the device's largest binding (%.1f MiB): use a "
                          "smaller context",
                          (double)per_layer / 1048576.0, (double)v->max_range / 1048576.0);
    zl_dkv *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->layer = calloc((size_t)p->n_layer, sizeof *kv->layer))) {
        free(kv);
        return zl_err_set(err, ZL_ENOMEM, "vulkan: out of memory");
    }
    kv->p = *p;
    for (int32_t il = 0; il < p->n_layer; il++) {
        int rc = d->ops->alloc(d, per_layer, &kv->layer[il], err);
        if (rc != ZL_OK) {
            for (int32_t j = 0; j < il; j++)
                d->ops->free(d, kv->layer[j]);
            free(kv->layer);
            free(kv);
            return rc;
        }
    }
    *out = kv;
    return ZL_OK;
}

static void kv_destroy(zl_dev *d, zl_dkv *kv)
{
    if (!kv)
        return;
    for (int32_t il = 0; il < kv->p.n_layer; il++)
        d->ops->free(d, kv->layer[il]);
    free(kv->layer);
    free(kv);
}

static int kv_store(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf k, zl_buf vv, const int32_t *slots, int32_t n)
{
    zl_vk *v = V(d);
    if (!kv || layer < 0 || layer >= kv->p.n_layer || n < 0 || (n > 0 && !slots))
        return ZL_EINVAL;
    const uint64_t bytes = (uint64_t)n * (uint64_t)kv->p.kv_dim * 4;
    if (!buf_ok(k, bytes) || !buf_ok(vv, bytes))
        return ZL_EINVAL;
    const int64_t n_slots = (int64_t)kv->p.n_blocks * kv->p.block_size;
    for (int32_t i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= n_slots)
            return ZL_EINVAL;
    if (n == 0)
        return ZL_OK;
    zl_vk_bind b[4] = {{k.mem, k.off, bytes}, {vv.mem, vv.off, bytes}, {kv->layer[layer], 0, kv->layer[layer]->size},
                       {0}};
    int rc;
    if ((rc = zl_vk_scratch(v, slots, (uint64_t)n * 4, &b[3])) != ZL_OK)
        return rc;
    uint64_t sh[4];
    if ((rc = zl_vk_binds(v, b, 4, sh)) != ZL_OK)
        return rc;
    const uint32_t pc[7] = {(uint32_t)n, (uint32_t)kv->p.kv_dim, (uint32_t)kv->p.block_size, (uint32_t)(sh[0] / 4),
                            (uint32_t)(sh[1] / 4), (uint32_t)(sh[3] / 4), (uint32_t)(sh[2] / 4)};
    uint32_t gx, gy;
    zl_vk_groups(v, ((uint64_t)n * (uint64_t)(kv->p.kv_dim / 2) + 63) / 64, &gx, &gy);
    return zl_vk_dispatch(v, kv->p.type == ZL_F16 ? ZL_VKS_KV_STORE_F16 : ZL_VKS_KV_STORE_F32, b, 4, pc, sizeof pc,
                          gx, gy, 1);
}

static int attention(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf q, zl_buf o, const zl_attn_args *a)
{
    zl_vk *v = V(d);
    if (!kv || zl_attn_args_check(a, &kv->p, layer, 256, NULL) != ZL_OK)
        return ZL_EINVAL;
    const uint64_t bytes = (uint64_t)a->n_tok * (uint64_t)a->n_head * (uint64_t)a->head_dim * 4;
    if (!buf_ok(q, bytes) || !buf_ok(o, bytes))
        return ZL_EINVAL;
    if (a->n_tok == 0)
        return ZL_OK;
    /* pos, tbl_off and tables as one int array in the scratch ring */
    const size_t ni = 2 * (size_t)a->n_tok + (size_t)a->n_tables;
    int32_t *ints = malloc(ni * sizeof *ints);
    if (!ints)
        return ZL_ENOMEM;
    memcpy(ints, a->pos, (size_t)a->n_tok * 4);
    memcpy(ints + a->n_tok, a->tbl_off, (size_t)a->n_tok * 4);
    if (a->n_tables)
        memcpy(ints + 2 * a->n_tok, a->tables, (size_t)a->n_tables * 4);
    zl_vk_bind b[4] = {{q.mem, q.off, bytes}, {kv->layer[layer], 0, kv->layer[layer]->size}, {o.mem, o.off, bytes},
                       {0}};
    int rc = zl_vk_scratch(v, ints, ni * 4, &b[3]);
    free(ints);
    if (rc != ZL_OK)
        return rc;
    uint64_t sh[4];
    if ((rc = zl_vk_binds(v, b, 4, sh)) != ZL_OK)
        return rc;
    struct {
        uint32_t n_tok, n_head, n_head_kv, head_dim, kv_dim, bs, q_off, o_off, i_off, p_off, window;
        float scale, softcap;
    } pc = {(uint32_t)a->n_tok, (uint32_t)a->n_head, (uint32_t)a->n_head_kv, (uint32_t)a->head_dim,
            (uint32_t)kv->p.kv_dim, (uint32_t)kv->p.block_size, (uint32_t)(sh[0] / 4), (uint32_t)(sh[2] / 4),
            (uint32_t)(sh[3] / 4), (uint32_t)(sh[1] / 4), (uint32_t)a->window, a->scale, a->softcap};
    uint32_t gx, gy;
    zl_vk_groups(v, (uint64_t)a->n_tok * (uint64_t)a->n_head, &gx, &gy);
    return zl_vk_dispatch(v, kv->p.type == ZL_F16 ? ZL_VKS_ATTENTION_F16 : ZL_VKS_ATTENTION_F32, b, 4, &pc,
                          sizeof pc, gx, gy, 1);
}

void zl_vk_ops_fill(zl_dev_ops *ops)
{
    ops->weight_upload = upload;
    ops->weight_free = weight_free;
    ops->kv_create = kv_create;
    ops->kv_destroy = kv_destroy;
    ops->get_rows = get_rows;
    ops->matmul = matmul;
    ops->rmsnorm = rmsnorm;
    ops->rope = rope;
    ops->glu = glu;
    ops->add = add;
    ops->add_rows = add_rows;
    ops->scale = scale;
    ops->softcap = softcap;
    ops->gather = gather;
    ops->kv_store = kv_store;
    ops->attention = attention;
}
