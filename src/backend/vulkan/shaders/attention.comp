#version 450
// attention.comp - causal attention of one (token, head) per workgroup over the paged pool, in tiles of 64
// positions with a running maximum and sum (one pass over K and V, no score buffer however long the context):
// each thread scores one position of the tile, then each thread accumulates its own output dims (d = tid, tid +
// 64, ...; head_dim <= 256) over the tile's weighted V rows.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer BQ { float Q[]; };
layout(std430, binding = 1) readonly buffer BP { uint P[]; };
layout(std430, binding = 2) writeonly buffer BO { float O[]; };
layout(std430, binding = 3) readonly buffer BI { int I[]; }; // pos[n_tok], tbl_off[n_tok], tables[]
layout(push_constant) uniform PC {
    uint n_tok, n_head, n_head_kv, head_dim;
    uint kv_dim, bs, q_off, o_off;
    uint i_off, p_off, window;
    float scale, softcap;
} pc;

shared float qs[256];
shared float sc[64];
shared float red[64];

float kv_at(uint v) // value index in the layer's pool
{
#ifdef KV_F16
    vec2 h = unpackHalf2x16(P[pc.p_off + v / 2u]);
    return (v & 1u) != 0u ? h.y : h.x;
#else
    return uintBitsToFloat(P[pc.p_off + v]);
#endif
}

// value index of row `pos` of K (is_v 0) or V (1) for kv head kh
uint row_at(uint tbl, uint pos, uint is_v, uint kh)
{
    uint blk = uint(I[pc.i_off + 2u * pc.n_tok + tbl + pos / pc.bs]);
    return (blk * 2u * pc.bs + is_v * pc.bs + pos % pc.bs) * pc.kv_dim + kh * pc.head_dim;
}

void main()
{
    uint th = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (th >= pc.n_tok * pc.n_head)
        return;
    uint t = th / pc.n_head, h = th % pc.n_head;
    uint kh = h / (pc.n_head / pc.n_head_kv);
    uint tid = gl_LocalInvocationID.x;
    uint pos = uint(I[pc.i_off + t]), tbl = uint(I[pc.i_off + pc.n_tok + t]);
    uint lo = (pc.window > 0u && pos + 1u > pc.window) ? pos + 1u - pc.window : 0u;
    uint qb = pc.q_off + th * pc.head_dim;
    for (uint d = tid; d < pc.head_dim; d += 64u)
        qs[d] = Q[qb + d];
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
    for (uint t0 = lo; t0 <= pos; t0 += 64u) {
        uint p = t0 + tid;
        float s = -1.0 / 0.0;
        if (p <= pos) {
            uint kr = row_at(tbl, p, 0u, kh);
            s = 0.0;
            for (uint d = 0u; d < pc.head_dim; d++)
                s += qs[d] * kv_at(kr + d);
            s *= pc.scale;
            if (pc.softcap > 0.0)
                s = pc.softcap * tanh(clamp(s / pc.softcap, -15.0, 15.0));
        }
        red[tid] = s;
        barrier();
        for (uint w = 32u; w > 0u; w >>= 1) {
            if (tid < w)
                red[tid] = max(red[tid], red[tid + w]);
            barrier();
        }
        float m_new = max(m, red[0]);
        float corr = exp(m - m_new);
        float e = p <= pos ? exp(s - m_new) : 0.0;
        barrier();
        sc[tid] = e;
        red[tid] = e;
        barrier();
        for (uint w = 32u; w > 0u; w >>= 1) {
            if (tid < w)
                red[tid] += red[tid + w];
            barrier();
        }
        l = l * corr + red[0];
        m = m_new;
        uint np = min(64u, pos + 1u - t0);
        for (uint k = 0u; k < 4u; k++) {
            uint d = tid + 64u * k;
            if (d >= pc.head_dim)
                break;
            float a = acc[k] * corr;
            for (uint j = 0u; j < np; j++)
                a += sc[j] * kv_at(row_at(tbl, t0 + j, 1u, kh) + d);
            acc[k] = a;
        }
        barrier();
    }
    for (uint k = 0u; k < 4u; k++) {
        uint d = tid + 64u * k;
        if (d < pc.head_dim)
            O[pc.o_off + th * pc.head_dim + d] = acc[k] / l;
    }
}
