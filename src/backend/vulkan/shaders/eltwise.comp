#version 450
// eltwise.comp - the elementwise ops over n values (one thread each), chosen by op:
//   0 add:      Y[i] += A[i]
//   1 add_rows: Y[i] += A[i % dim]
//   2 scale:    Y[i] *= f
//   3 softcap:  Y[i] = f * tanh(Y[i] / f)
//   4 silu_mul: Y[i] = silu(A[i]) * B[i]
//   5 gelu_mul: Y[i] = gelu_tanh(A[i]) * B[i], gelu on A rounded to fp16 and its result rounded to fp16 (as the
//               CPU's table lookup does)
//   6 gather:   Y[i] = A[R[i / dim] * dim + i % dim]
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer BY { float Y[]; };
layout(std430, binding = 1) readonly buffer BA { float A[]; };
layout(std430, binding = 2) readonly buffer BB { float B[]; };
layout(std430, binding = 3) readonly buffer BR { int R[]; };
layout(push_constant) uniform PC {
    uint op, n, dim, y_off;
    uint a_off, b_off, r_off;
    float f;
} pc;

float r16(float x)
{
    return unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x;
}

void main()
{
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    if (i >= pc.n)
        return;
    uint y = pc.y_off + i;
    if (pc.op == 0u) {
        Y[y] += A[pc.a_off + i];
    } else if (pc.op == 1u) {
        Y[y] += A[pc.a_off + i % pc.dim];
    } else if (pc.op == 2u) {
        Y[y] *= pc.f;
    } else if (pc.op == 3u) {
        Y[y] = pc.f * tanh(clamp(Y[y] / pc.f, -15.0, 15.0));
    } else if (pc.op == 4u) {
        float g = A[pc.a_off + i];
        Y[y] = g / (1.0 + exp(-g)) * B[pc.b_off + i];
    } else if (pc.op == 5u) {
        float g = r16(A[pc.a_off + i]), gl;
        if (g <= -10.0)
            gl = 0.0;
        else if (g >= 10.0)
            gl = g;
        else
            gl = r16(0.5 * g * (1.0 + tanh(clamp(0.7978845608028654 * g * (1.0 + 0.044715 * g * g), -15.0, 15.0))));
        Y[y] = gl * B[pc.b_off + i];
    } else {
        uint row = i / pc.dim;
        Y[y] = A[pc.a_off + uint(R[pc.r_off + row]) * pc.dim + i % pc.dim];
    }
}
