#version 450
#extension GL_GOOGLE_include_directive : require
// mul_mm.comp - the tiled matmul for prefill: y[t, row0 + r] = sum_c W[r, c] * x[t, c] for batches of many tokens,
// summed in exactly the order of the one-thread-a-row mat-vec (mul_mv.comp with ROW_THREAD), so a token's outputs
// are the same bits whichever kernel its batch takes (the server's batching invariance):
//
//     acc = 0; for c = 0, 4, 8, ... < ne0: acc += dot(w[c .. c+3], x[c .. c+3])
//
// with the same deq4() quads, the last quad of a row of the plain types zero-padded as mul_mv pads it, and no quad
// past ne0 added (adding 0 would turn an exact -0 sum into +0).
//
// A workgroup of 128 threads owns a tile of BM = 64 rows by BN = 32 tokens. It walks the row BK = 32 values (8
// quads) at a time: the threads decode the 64 x 8 weight quads once into shared memory (4 each) and copy the 32 x 8
// quads of X beside them (2 each), then each thread adds the 8 quads' dots to its 4 rows x 4 tokens in order. Each
// weight value is decoded once per 32 tokens instead of once per 8, and X is read once per 64 rows. Plain barriers
// and shared memory only (no subgroups, no cooperative matrices), so it runs on any Vulkan 1.1 device. Rows past
// n_rows and tokens past n_tok read as 0 and are not written.
#define BM 64u
#define BN 32u
#define BK 32u
#define BQ (BK / 4u)
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

shared vec4 ws[BQ][BM]; // ws[q][r]: values 4q .. 4q+3 of the slice, row r
shared vec4 xs[BQ][BN];

void main()
{
    const uint tid = gl_LocalInvocationID.x;
    const uint r_base = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * BM;
    const uint t_base = gl_WorkGroupID.z * BN;
    // this thread's outputs: rows tr + 16 i, tokens tt + 8 j (i, j < 4)
    const uint tr = tid % 16u, tt = tid / 16u;
    float acc[4][4];
    for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < 4u; j++)
            acc[i][j] = 0.0;

    for (uint k0 = 0u; k0 < pc.ne0; k0 += BK) {
        // weights: 64 rows x 8 quads; thread takes quad q of row lr, 16 rows apart per pass
        for (uint p = 0u; p < 4u; p++) {
            const uint lr = tid / BQ + p * 16u, q = tid % BQ;
            const uint r = r_base + lr, c = k0 + q * 4u;
            ws[q][lr] = r < pc.n_rows && c < pc.ne0 ? deq4(pc.w_off + r * pc.nb1, c, pc.ne0) : vec4(0.0);
        }
        // activations: 32 tokens x 8 quads, zero past ne0 as mul_mv reads them
        for (uint p = 0u; p < 2u; p++) {
            const uint e = tid + p * 128u, lt = e / BQ, q = e % BQ;
            const uint t = t_base + lt, c = k0 + q * 4u;
            vec4 x = vec4(0.0);
            if (t < pc.n_tok && c < pc.ne0) {
                const uint xb = pc.x_off + t * pc.ne0 + c;
                x = c + 4u <= pc.ne0 ? vec4(X[xb], X[xb + 1u], X[xb + 2u], X[xb + 3u])
                                     : vec4(X[xb], c + 1u < pc.ne0 ? X[xb + 1u] : 0.0,
                                            c + 2u < pc.ne0 ? X[xb + 2u] : 0.0, 0.0);
            }
            xs[q][lt] = x;
        }
        barrier();
        const uint nq = min(BQ, (pc.ne0 - k0 + 3u) / 4u);
        for (uint q = 0u; q < nq; q++) {
            vec4 wv[4], xv[4];
            for (uint i = 0u; i < 4u; i++)
                wv[i] = ws[q][tr + 16u * i];
            for (uint j = 0u; j < 4u; j++)
                xv[j] = xs[q][tt + 8u * j];
            for (uint i = 0u; i < 4u; i++)
                for (uint j = 0u; j < 4u; j++)
                    acc[i][j] += dot(wv[i], xv[j]);
        }
        barrier();
    }
    for (uint i = 0u; i < 4u; i++) {
        const uint r = r_base + tr + 16u * i;
        if (r >= pc.n_rows)
            continue;
        for (uint j = 0u; j < 4u; j++) {
            const uint t = t_base + tt + 8u * j;
            if (t < pc.n_tok)
                Y[pc.y_off + t * pc.y_stride + pc.row0 + r] = acc[i][j];
        }
    }
}
