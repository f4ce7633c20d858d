#version 450
#extension GL_GOOGLE_include_directive : require
// mul_mv.comp - y[t, row0 + r] = sum_c W[r, c] * x[t, c] for the rows of one dispatch (a slice of the matrix
// small enough for one binding) and up to 8 tokens per workgroup: each workgroup takes one row; its 64 threads
// take the row's 32-value groups in turn, decode each group once and multiply it with all of the workgroup's
// tokens, then the 64 partial sums of each token are added in shared memory.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer BW { uint W[]; };
layout(std430, binding = 1) readonly buffer BX { float X[]; };
layout(std430, binding = 2) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC {
    uint ne0, n_rows, n_tok, w_off; // w_off: byte offset of the first row in binding 0
    uint nb1, x_off, y_off, y_stride; // x_off, y_off in floats; y_stride: floats between tokens' rows of Y
    uint row0;
} pc;
#include "common.glsl"

#define TOK 8u
shared float red[TOK][64];

void main()
{
    uint r = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint t0 = gl_WorkGroupID.z * TOK;
    uint tid = gl_LocalInvocationID.x;
    if (r >= pc.n_rows) // uniform over the workgroup
        return;
    uint nt = min(TOK, pc.n_tok - t0);
    float acc[TOK];
    for (uint k = 0u; k < TOK; k++)
        acc[k] = 0.0;
    uint rb = pc.w_off + r * pc.nb1;
    uint ng = (pc.ne0 + 31u) / 32u;
    float v[32];
    for (uint g = tid; g < ng; g += 64u) {
        deq32(rb, g, pc.ne0, v);
        uint c0 = g * 32u, nc = min(32u, pc.ne0 - c0);
        for (uint k = 0u; k < nt; k++) {
            uint xb = pc.x_off + (t0 + k) * pc.ne0 + c0;
            float s = 0.0;
            for (uint l = 0u; l < nc; l++)
                s += v[l] * X[xb + l];
            acc[k] += s;
        }
    }
    for (uint k = 0u; k < TOK; k++)
        red[k][tid] = acc[k];
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1) {
        if (tid < w)
            for (uint k = 0u; k < TOK; k++)
                red[k][tid] += red[k][tid + w];
        barrier();
    }
    if (tid < nt)
        Y[pc.y_off + (t0 + tid) * pc.y_stride + pc.row0 + r] = red[tid][0];
}
