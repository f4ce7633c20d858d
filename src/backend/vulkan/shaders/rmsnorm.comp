#version 450
// rmsnorm.comp - Y[row] = X[row] / sqrt(mean(X[row]^2) + eps) * G: one workgroup per row (Y may be X).
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer BX { float X[]; };
layout(std430, binding = 1) readonly buffer BG { float G[]; };
layout(std430, binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform PC {
    uint n_rows, dim, x_off, g_off, y_off, has_g;
    float eps;
} pc;
shared float red[128];

void main()
{
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint tid = gl_LocalInvocationID.x;
    if (row >= pc.n_rows)
        return;
    uint xb = pc.x_off + row * pc.dim, yb = pc.y_off + row * pc.dim;
    float s = 0.0;
    for (uint c = tid; c < pc.dim; c += 128u)
        s += X[xb + c] * X[xb + c];
    red[tid] = s;
    barrier();
    for (uint w = 64u; w > 0u; w >>= 1) {
        if (tid < w)
            red[tid] += red[tid + w];
        barrier();
    }
    float scale = 1.0 / sqrt(red[0] / float(pc.dim) + pc.eps);
    // every thread has read red[0] before any writes Y (Y may alias X, but red is not touched again)
    for (uint c = tid; c < pc.dim; c += 128u) {
        float y = X[xb + c] * scale;
        Y[yb + c] = pc.has_g != 0u ? y * G[pc.g_off + c] : y;
    }
}
