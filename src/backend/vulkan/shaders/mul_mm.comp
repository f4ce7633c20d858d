#version 450
#extension GL_GOOGLE_include_directive : require
// mul_mm.comp - the tiled matmul for prefill: y[t, row0 + r] = sum_c W[r, c] * x[t, c], as mul_mv.comp computes it,
// for batches of many tokens. A workgroup of 128 threads owns a tile of BM = 64 rows by BN = 32 tokens. It walks the
// row length BK = 32 values at a time: the threads decode the 64 x 32 weight slice once into shared memory (4
// values each, 4 times) and copy the 32 x 32 slice of X beside it, then each thread multiplies its 4 rows by its 4
// tokens out of shared memory. Each weight value is decoded once per 32 tokens instead of once per 8, and X is read
// once per 64 rows. Plain barriers and shared memory only (no subgroups, no cooperative matrices), so it runs on any
// Vulkan 1.1 device. Tails: rows past n_rows and tokens past n_tok read as 0 and are not written; values past ne0
// read as 0 (only the plain types have row lengths that are not a multiple of 32).
#define BM 64u
#define BN 32u
#define BK 32u
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

shared float ws[BK][BM + 1u]; // ws[c][r]: +1 keeps the column writes off one bank
shared float xs[BK][BN + 1u];

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
        // weights: 64 rows x 8 quads; thread takes quad q of row lr, 4 rows apart per pass
        for (uint p = 0u; p < 4u; p++) {
            const uint lr = tid / 8u + p * 16u, q = tid % 8u;
            const uint r = r_base + lr, c = k0 + q * 4u;
            vec4 w = vec4(0.0);
            if (r < pc.n_rows && c < pc.ne0)
                w = deq4(pc.w_off + r * pc.nb1, c, pc.ne0);
            ws[q * 4u][lr] = w.x;
            ws[q * 4u + 1u][lr] = w.y;
            ws[q * 4u + 2u][lr] = w.z;
            ws[q * 4u + 3u][lr] = w.w;
        }
        // activations: 32 tokens x 32 values, 8 per thread
        for (uint p = 0u; p < 8u; p++) {
            const uint e = tid + p * 128u, lt = e / BK, lc = e % BK;
            const uint t = t_base + lt, c = k0 + lc;
            xs[lc][lt] = t < pc.n_tok && c < pc.ne0 ? X[pc.x_off + t * pc.ne0 + c] : 0.0;
        }
        barrier();
        for (uint c = 0u; c < BK; c++) {
            float wv[4], xv[4];
            for (uint i = 0u; i < 4u; i++)
                wv[i] = ws[c][tr + 16u * i];
            for (uint j = 0u; j < 4u; j++)
                xv[j] = xs[c][tt + 8u * j];
            for (uint i = 0u; i < 4u; i++)
                for (uint j = 0u; j < 4u; j++)
                    acc[i][j] = fma(wv[i], xv[j], acc[i][j]);
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
