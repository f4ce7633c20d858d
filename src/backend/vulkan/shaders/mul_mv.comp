#version 450
#extension GL_GOOGLE_include_directive : require
// mul_mv.comp - y[t, row0 + r] = sum_c W[r, c] * x[t, c] for the rows of one dispatch (a slice of the matrix
// small enough for one binding) and up to TOK tokens per workgroup. A workgroup takes ROWS rows, LANES threads
// each; a thread walks its row 4 values at a time (LANES * 4 apart), decodes them once and multiplies them with
// every token of the workgroup; the LANES partial sums of each (row, token) are then added in shared memory.
// With ROW_THREAD (mul_mv_rt_*: for CPU-type devices such as lavapipe, where a workgroup's barriers and shared
// memory cost more than the arithmetic of a short row) one thread takes a whole row instead: 64 rows a workgroup,
// no shared memory, no barrier.
#ifdef ROW_THREAD
#define LANES 1u
#define ROWS 64u
#else
#define LANES 16u
#define ROWS 4u
#endif
#define TOK 8u
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

#ifndef ROW_THREAD
shared float red[TOK][64];
#endif

void main()
{
    uint tid = gl_LocalInvocationID.x, lane = tid % LANES, rl = tid / LANES;
    uint r = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * ROWS + rl;
    uint t0 = gl_WorkGroupID.z * TOK;
    uint nt = min(TOK, pc.n_tok - t0);
    float acc[TOK];
    for (uint k = 0u; k < TOK; k++)
        acc[k] = 0.0;
    if (r < pc.n_rows) {
        uint rb = pc.w_off + r * pc.nb1;
        for (uint c = lane * 4u; c < pc.ne0; c += LANES * 4u) {
            vec4 w = deq4(rb, c, pc.ne0);
            for (uint k = 0u; k < TOK; k++) {
                if (k < nt) {
                    uint xb = pc.x_off + (t0 + k) * pc.ne0 + c;
                    vec4 x = c + 4u <= pc.ne0 ? vec4(X[xb], X[xb + 1u], X[xb + 2u], X[xb + 3u])
                                              : vec4(X[xb], c + 1u < pc.ne0 ? X[xb + 1u] : 0.0,
                                                     c + 2u < pc.ne0 ? X[xb + 2u] : 0.0, 0.0);
                    acc[k] += dot(w, x);
                }
            }
        }
    }
#ifdef ROW_THREAD
    if (r < pc.n_rows)
        for (uint k = 0u; k < nt; k++)
            Y[pc.y_off + (t0 + k) * pc.y_stride + pc.row0 + r] = acc[k];
#else
    for (uint k = 0u; k < TOK; k++)
        red[k][tid] = acc[k];
    barrier();
    for (uint w = LANES / 2u; w > 0u; w >>= 1) {
        if (lane < w)
            for (uint k = 0u; k < TOK; k++)
                red[k][tid] += red[k][tid + w];
        barrier();
    }
    if (lane < nt && r < pc.n_rows)
        Y[pc.y_off + (t0 + lane) * pc.y_stride + pc.row0 + r] = red[lane][rl * LANES];
#endif
}
