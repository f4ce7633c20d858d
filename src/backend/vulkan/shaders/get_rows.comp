#version 450
#extension GL_GOOGLE_include_directive : require
// get_rows.comp - Y[i] = float(W row ids[i]) (embedding lookup): one workgroup per output row, 4 values a thread.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer BW { uint W[]; };
layout(std430, binding = 1) readonly buffer BI { int IDS[]; };
layout(std430, binding = 2) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC {
    uint ne0, n, w_off, nb1;
    uint ids_off, y_off;
} pc;
#include "common.glsl"

void main()
{
    uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (i >= pc.n)
        return;
    uint rb = pc.w_off + uint(IDS[pc.ids_off + i]) * pc.nb1;
    for (uint c = gl_LocalInvocationID.x * 4u; c < pc.ne0; c += 256u) {
        vec4 v = deq4(rb, c, pc.ne0);
        uint y = pc.y_off + i * pc.ne0 + c;
        for (uint l = 0u; l < 4u && c + l < pc.ne0; l++)
            Y[y + l] = v[l];
    }
}
