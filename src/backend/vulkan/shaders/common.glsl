// common.glsl - byte access to a weight buffer seen as 32-bit words, and the dequantization of 32 consecutive
// values of a row ("a group") for every weight type the Vulkan backend runs. Weights stay in the GGUF file's block
// layout (blocks are 18, 20, 22, 34, 144, 176, 210 bytes: not word aligned), so every read goes through rd8/rd16,
// which need no 8- or 16-bit storage feature: the portable path for any Vulkan 1.1 device.
//
// WTYPE is the GGUF type id (set by the build for each variant): 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 6 Q5_0, 8 Q8_0,
// 12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16.

uint rd8(uint b)
{
    return (W[b >> 2] >> ((b & 3u) * 8u)) & 0xffu;
}
uint rd16(uint b)
{
    if ((b & 3u) != 3u)
        return (W[b >> 2] >> ((b & 3u) * 8u)) & 0xffffu;
    return rd8(b) | (rd8(b + 1u) << 8);
}
uint rd32(uint b)
{
    if ((b & 3u) == 0u)
        return W[b >> 2];
    return rd16(b) | (rd16(b + 2u) << 16);
}
float f16(uint h)
{
    return unpackHalf2x16(h).x;
}
int s8(uint v)
{
    return int(v << 24) >> 24;
}

#if WTYPE == 0
#define BLK_ELEMS 1u
#define BLK_BYTES 4u
#elif WTYPE == 1 || WTYPE == 30
#define BLK_ELEMS 1u
#define BLK_BYTES 2u
#elif WTYPE == 2
#define BLK_ELEMS 32u
#define BLK_BYTES 18u
#elif WTYPE == 3
#define BLK_ELEMS 32u
#define BLK_BYTES 20u
#elif WTYPE == 6
#define BLK_ELEMS 32u
#define BLK_BYTES 22u
#elif WTYPE == 8
#define BLK_ELEMS 32u
#define BLK_BYTES 34u
#elif WTYPE == 12
#define BLK_ELEMS 256u
#define BLK_BYTES 144u
#elif WTYPE == 13
#define BLK_ELEMS 256u
#define BLK_BYTES 176u
#elif WTYPE == 14
#define BLK_ELEMS 256u
#define BLK_BYTES 210u
#else
#error unsupported WTYPE
#endif

// Values i .. i+3 of the row starting at byte rb (i a multiple of 4; for the quantized types ne0 is a multiple of
// their block, so the 4 values never straddle a block). Values past ne0 (plain types only) read as 0.
vec4 deq4(uint rb, uint i, uint ne0)
{
#if WTYPE == 0 || WTYPE == 1 || WTYPE == 30
    if (i + 4u > ne0) {
        vec4 r = vec4(0.0);
        for (uint l = 0u; l < 4u && i + l < ne0; l++) {
#if WTYPE == 0
            r[l] = uintBitsToFloat(rd32(rb + 4u * (i + l)));
#elif WTYPE == 1
            r[l] = f16(rd16(rb + 2u * (i + l)));
#else
            r[l] = uintBitsToFloat(rd16(rb + 2u * (i + l)) << 16);
#endif
        }
        return r;
    }
#if WTYPE == 0
    uint b = rb + 4u * i;
    return vec4(uintBitsToFloat(rd32(b)), uintBitsToFloat(rd32(b + 4u)), uintBitsToFloat(rd32(b + 8u)),
                uintBitsToFloat(rd32(b + 12u)));
#elif WTYPE == 1
    uint b = rb + 2u * i;
    return vec4(unpackHalf2x16(rd32(b)), unpackHalf2x16(rd32(b + 4u)));
#else
    uint b = rb + 2u * i, u0 = rd32(b), u1 = rd32(b + 4u);
    return vec4(uintBitsToFloat(u0 << 16), uintBitsToFloat(u0 & 0xffff0000u), uintBitsToFloat(u1 << 16),
                uintBitsToFloat(u1 & 0xffff0000u));
#endif
#elif WTYPE == 2 || WTYPE == 3 || WTYPE == 6 || WTYPE == 8
    uint b = rb + (i >> 5) * BLK_BYTES, j = i & 31u;
    float d = f16(rd16(b));
#if WTYPE == 8
    uint q = rd32(b + 2u + j);
    return vec4(float(s8(q)), float(s8(q >> 8)), float(s8(q >> 16)), float(s8(q >> 24))) * d;
#else
    uint sh = j < 16u ? 0u : 4u, jj = j & 15u;
#if WTYPE == 3
    uint q = rd32(b + 4u + jj) >> sh;
#elif WTYPE == 6
    uint q = rd32(b + 6u + jj) >> sh;
#else
    uint q = rd32(b + 2u + jj) >> sh;
#endif
    uvec4 n = uvec4(q & 15u, (q >> 8) & 15u, (q >> 16) & 15u, (q >> 24) & 15u);
#if WTYPE == 2
    return (vec4(n) - 8.0) * d;
#elif WTYPE == 3
    return vec4(n) * d + f16(rd16(b + 2u));
#else
    uint qh = rd32(b + 2u) >> j;
    n |= uvec4((qh & 1u) << 4, ((qh >> 1) & 1u) << 4, ((qh >> 2) & 1u) << 4, ((qh >> 3) & 1u) << 4);
    return (vec4(n) - 16.0) * d;
#endif
#endif
#elif WTYPE == 12 || WTYPE == 13
    uint b = rb + (i >> 8) * BLK_BYTES;
    uint sb = (i >> 5) & 7u, l = i & 31u;
    float d = f16(rd16(b)), dmin = f16(rd16(b + 2u));
    uint sc, mn;
    if (sb < 4u) {
        sc = rd8(b + 4u + sb) & 63u;
        mn = rd8(b + 8u + sb) & 63u;
    } else {
        sc = (rd8(b + 8u + sb) & 15u) | ((rd8(b + sb) >> 6) << 4);
        mn = (rd8(b + 8u + sb) >> 4) | ((rd8(b + 4u + sb) >> 6) << 4);
    }
    float d1 = d * float(sc), m1 = dmin * float(mn);
    uint sh = (sb & 1u) * 4u;
#if WTYPE == 12
    uint q = rd32(b + 16u + (sb >> 1) * 32u + l) >> sh;
    uvec4 n = uvec4(q & 15u, (q >> 8) & 15u, (q >> 16) & 15u, (q >> 24) & 15u);
#else
    uint q = rd32(b + 48u + (sb >> 1) * 32u + l) >> sh;
    uint h = rd32(b + 16u + l) >> sb;
    uvec4 n = uvec4((q & 15u) | ((h & 1u) << 4), ((q >> 8) & 15u) | (((h >> 8) & 1u) << 4),
                    ((q >> 16) & 15u) | (((h >> 16) & 1u) << 4), ((q >> 24) & 15u) | (((h >> 24) & 1u) << 4));
#endif
    return vec4(n) * d1 - m1;
#else // Q6_K
    uint b = rb + (i >> 8) * BLK_BYTES;
    uint sb = (i >> 5) & 7u, l = i & 31u, half_ = sb >> 2, k = sb & 3u;
    float d = f16(rd16(b + 208u)) * float(s8(rd8(b + 192u + half_ * 8u + 2u * k + (l >> 4))));
    uint q = rd32(b + half_ * 64u + (k & 1u) * 32u + l) >> ((k >> 1) * 4u);
    uint h = rd32(b + 128u + half_ * 32u + l) >> (2u * k);
    uvec4 n = uvec4((q & 15u) | ((h & 3u) << 4), ((q >> 8) & 15u) | (((h >> 8) & 3u) << 4),
                    ((q >> 16) & 15u) | (((h >> 16) & 3u) << 4), ((q >> 24) & 15u) | (((h >> 24) & 3u) << 4));
    return (vec4(n) - 32.0) * d;
#endif
}

// Bytes of a row of ne0 values.
uint row_bytes(uint ne0)
{
    return (ne0 / BLK_ELEMS) * BLK_BYTES;
}
