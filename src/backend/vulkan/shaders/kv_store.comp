#version 450
// kv_store.comp - K and V rows of n tokens into one layer of the paged pool at their slots (block * bs + offset).
// A layer's pool: block b holds K (bs, kv_dim) then V (bs, kv_dim). KV_F16: values packed two per word (kv_dim is
// even), else float words. One thread per pair of values of one token's K and V.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer BK { float K[]; };
layout(std430, binding = 1) readonly buffer BV { float V[]; };
layout(std430, binding = 2) buffer BP { uint P[]; };
layout(std430, binding = 3) readonly buffer BS { int S[]; };
layout(push_constant) uniform PC {
    uint n, kv_dim, bs, k_off;
    uint v_off, s_off, p_off; // p_off in words
} pc;

void main()
{
    uint pairs = pc.kv_dim / 2u;
    uint idx = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    if (idx >= pc.n * pairs)
        return;
    uint t = idx / pairs, j = idx % pairs;
    uint slot = uint(S[pc.s_off + t]);
    uint blk = slot / pc.bs, off = slot % pc.bs;
    uint krow = (blk * 2u * pc.bs + off) * pc.kv_dim, vrow = krow + pc.bs * pc.kv_dim; // in values
    uint src = t * pc.kv_dim + 2u * j;
#ifdef KV_F16
    P[pc.p_off + krow / 2u + j] = packHalf2x16(vec2(K[pc.k_off + src], K[pc.k_off + src + 1u]));
    P[pc.p_off + vrow / 2u + j] = packHalf2x16(vec2(V[pc.v_off + src], V[pc.v_off + src + 1u]));
#else
    P[pc.p_off + krow + 2u * j] = floatBitsToUint(K[pc.k_off + src]);
    P[pc.p_off + krow + 2u * j + 1u] = floatBitsToUint(K[pc.k_off + src + 1u]);
    P[pc.p_off + vrow + 2u * j] = floatBitsToUint(V[pc.v_off + src]);
    P[pc.p_off + vrow + 2u * j + 1u] = floatBitsToUint(V[pc.v_off + src + 1u]);
#endif
}
