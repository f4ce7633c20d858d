#version 450
// rope.comp - rotates the first n_rot dims of each head of each token in place by the token's cos/sin table
// CS[t * n_rot + 2i] = cos, [.. + 2i + 1] = sin of pair i. neox: pairs (i, i + n_rot/2), else (2i, 2i + 1).
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer BX { float X[]; };
layout(std430, binding = 1) readonly buffer BC { float CS[]; };
layout(push_constant) uniform PC {
    uint n_tok, n_head, head_dim, n_rot;
    uint neox, x_off, cs_off;
} pc;

void main()
{
    uint half_ = pc.n_rot / 2u;
    uint idx = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    uint total = pc.n_tok * pc.n_head * half_;
    if (idx >= total)
        return;
    uint i = idx % half_, th = idx / half_, t = th / pc.n_head;
    uint base = pc.x_off + th * pc.head_dim;
    uint a = pc.neox != 0u ? i : 2u * i, b = pc.neox != 0u ? i + half_ : 2u * i + 1u;
    float c = CS[pc.cs_off + t * pc.n_rot + 2u * i], s = CS[pc.cs_off + t * pc.n_rot + 2u * i + 1u];
    float x0 = X[base + a], x1 = X[base + b];
    X[base + a] = x0 * c - x1 * s;
    X[base + b] = x0 * s + x1 * c;
}
