#version 450
#extension GL_GOOGLE_include_directive : require
// mul_mm_lanes.comp - the tiled matmul for the GPU shape of the mat-vec: y[t, row0 + r] = sum_c W[r, c] * x[t, c]
// for batches of many tokens, summed in exactly the order of the 16-lanes-a-row mat-vec (mul_mv.comp without
// ROW_THREAD), so a token's outputs are the same bits whichever kernel its batch takes:
//
//     lane l = 0 .. 15:  p[l] = 0; for c = 4 l, 4 l + 64, ... < ne0: p[l] += dot(w[c .. c+3], x[c .. c+3])
//     then in halves:    p[l] += p[l + 8] (l < 8), p[l] += p[l + 4] (l < 4), p[l] += p[l + 2], p[0] += p[1]
//
// with the same deq4() quads and zero-padded tails as mul_mv, and no quad past ne0 added.
//
// A workgroup of 128 threads (16 lanes x 8 slots) owns a tile of BM = 16 rows by BN = 16 tokens and walks the rows
// 64 values (one quad a lane) at a time: the threads decode the 16 x 16 weight quads once into shared memory (2
// each) and copy the 16 x 16 quads of X beside them (2 each); thread (lane l, slot s) then adds quad l's dots to
// its lane partial of 2 rows x 16 tokens. At the end the partials go to shared memory and are added in the
// mat-vec's halving order (16 KiB of shared memory in all). Each weight quad is decoded once per 16 tokens (the mat-vec: per 8) and X is read once
// per 16 rows (the mat-vec: per 4). Plain barriers and shared memory only. Rows past n_rows and tokens past n_tok
// read as 0 and are not written.
#define LANES 16u
#define BM 16u
#define BN 16u
#define RS 2u // rows a slot owns: BM / 8 slots
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer BW { uint W[]; };
layout(std430, binding = 1) readonly buffer BX { float X[]; };
layout(std430, binding = 2) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC {
    uint ne0, n_rows, n_tok, w_off; // w_off: byte offset of the first row in binding 0
    uint nb1, x_off, y_off, y_stride; // x_off, y_off in floats; y_stride: floats between tokens' rows of Y
    uint row0;
} pc;
#include "common.glsl"

shared vec4 ws[LANES][BM]; // ws[l][r]: quad l of the 64-value slice, row r
shared vec4 xs[LANES][BN];
shared float red[8u * BN][LANES]; // the lane partials of one row of each slot x every token

void main()
{
    const uint tid = gl_LocalInvocationID.x, lane = tid % LANES, slot = tid / LANES;
    const uint r_base = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * BM;
    const uint t_base = gl_WorkGroupID.z * BN;
    float acc[RS][BN]; // this thread's lane partials: rows slot * RS + i, every token of the tile
    for (uint i = 0u; i < RS; i++)
        for (uint j = 0u; j < BN; j++)
            acc[i][j] = 0.0;

    for (uint k0 = 0u; k0 < pc.ne0; k0 += LANES * 4u) {
        // weights and activations: 16 rows (tokens) x 16 quads each, thread takes quad q of row (token) e / 16
        for (uint p = 0u; p < 2u; p++) {
            const uint e = tid + p * 128u, lr = e / LANES, q = e % LANES, c = k0 + q * 4u;
            const uint r = r_base + lr, t = t_base + lr;
            ws[q][lr] = r < pc.n_rows && c < pc.ne0 ? deq4(pc.w_off + r * pc.nb1, c, pc.ne0) : vec4(0.0);
            vec4 x = vec4(0.0);
            if (t < pc.n_tok && c < pc.ne0) {
                const uint xb = pc.x_off + t * pc.ne0 + c;
                x = c + 4u <= pc.ne0 ? vec4(X[xb], X[xb + 1u], X[xb + 2u], X[xb + 3u])
                                     : vec4(X[xb], c + 1u < pc.ne0 ? X[xb + 1u] : 0.0,
                                            c + 2u < pc.ne0 ? X[xb + 2u] : 0.0, 0.0);
            }
            xs[q][lr] = x;
        }
        barrier();
        if (k0 + lane * 4u < pc.ne0)
            for (uint i = 0u; i < RS; i++) {
                const vec4 w = ws[lane][slot * RS + i];
                for (uint j = 0u; j < BN; j++)
                    acc[i][j] += dot(w, xs[lane][j]);
            }
        barrier();
    }
    // the partials of row slot * RS + i of every slot, in RS rounds (so the shared memory stays within 16 KiB,
    // Vulkan's least maxComputeSharedMemorySize): 128 outputs a round, one a thread to write
    for (uint i = 0u; i < RS; i++) {
        for (uint j = 0u; j < BN; j++)
            red[slot * BN + j][lane] = acc[i][j];
        barrier();
        for (uint w = LANES / 2u; w > 0u; w >>= 1) {
            if (lane < w)
                for (uint j = 0u; j < BN; j++)
                    red[slot * BN + j][lane] += red[slot * BN + j][lane + w];
            barrier();
        }
        const uint r = r_base + (tid / BN) * RS + i, t = t_base + tid % BN;
        if (r < pc.n_rows && t < pc.n_tok)
            Y[pc.y_off + t * pc.y_stride + pc.row0 + r] = red[tid][0];
        barrier();
    }
}
