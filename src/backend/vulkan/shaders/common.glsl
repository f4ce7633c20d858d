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

// Group g (values 32g .. 32g+31) of the row starting at byte rb, of a row of ne0 values, into v (values past ne0,
// only possible for the plain types, read as 0).
void deq32(uint rb, uint g, uint ne0, out float v[32])
{
#if WTYPE == 0 || WTYPE == 1 || WTYPE == 30
    for (uint l = 0u; l < 32u; l++) {
        uint i = g * 32u + l;
        if (i >= ne0) {
            v[l] = 0.0;
            continue;
        }
#if WTYPE == 0
        v[l] = uintBitsToFloat(rd32(rb + 4u * i));
#elif WTYPE == 1
        v[l] = f16(rd16(rb + 2u * i));
#else
        v[l] = uintBitsToFloat(rd16(rb + 2u * i) << 16);
#endif
    }
#elif WTYPE == 2 || WTYPE == 3 || WTYPE == 6 || WTYPE == 8
    uint b = rb + g * BLK_BYTES;
    float d = f16(rd16(b));
#if WTYPE == 2
    for (uint l = 0u; l < 16u; l++) {
        uint q = rd8(b + 2u + l);
        v[l] = float(int(q & 15u) - 8) * d;
        v[l + 16u] = float(int(q >> 4) - 8) * d;
    }
#elif WTYPE == 3
    float m = f16(rd16(b + 2u));
    for (uint l = 0u; l < 16u; l++) {
        uint q = rd8(b + 4u + l);
        v[l] = float(q & 15u) * d + m;
        v[l + 16u] = float(q >> 4) * d + m;
    }
#elif WTYPE == 6
    uint qh = rd32(b + 2u);
    for (uint l = 0u; l < 16u; l++) {
        uint q = rd8(b + 6u + l);
        uint lo = (q & 15u) | (((qh >> l) & 1u) << 4);
        uint hi = (q >> 4) | (((qh >> (l + 16u)) & 1u) << 4);
        v[l] = float(int(lo) - 16) * d;
        v[l + 16u] = float(int(hi) - 16) * d;
    }
#else
    for (uint l = 0u; l < 32u; l++)
        v[l] = float(s8(rd8(b + 2u + l))) * d;
#endif
#elif WTYPE == 12 || WTYPE == 13
    uint b = rb + (g >> 3) * BLK_BYTES;
    uint sb = g & 7u;
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
    uint qs = b + 16u + (sb >> 1) * 32u;
    for (uint l = 0u; l < 32u; l++)
        v[l] = d1 * float((rd8(qs + l) >> sh) & 15u) - m1;
#else
    uint qh = b + 16u, qs = b + 48u + (sb >> 1) * 32u;
    for (uint l = 0u; l < 32u; l++) {
        uint q = ((rd8(qs + l) >> sh) & 15u) | (((rd8(qh + l) >> sb) & 1u) << 4);
        v[l] = d1 * float(q) - m1;
    }
#endif
#else // Q6_K
    uint b = rb + (g >> 3) * BLK_BYTES;
    uint sb = g & 7u, half_ = sb >> 2, k = sb & 3u;
    float d = f16(rd16(b + 208u));
    uint ql = b + half_ * 64u + ((k & 1u) * 32u), qh = b + 128u + half_ * 32u;
    uint nsh = (k >> 1) * 4u, hsh = 2u * k;
    uint scb = b + 192u + half_ * 8u + 2u * k;
    float d0 = d * float(s8(rd8(scb))), d1 = d * float(s8(rd8(scb + 1u)));
    for (uint l = 0u; l < 32u; l++) {
        uint q = ((rd8(ql + l) >> nsh) & 15u) | (((rd8(qh + l) >> hsh) & 3u) << 4);
        v[l] = (l < 16u ? d0 : d1) * float(int(q) - 32);
    }
#endif
}

// Bytes of a row of ne0 values.
uint row_bytes(uint ne0)
{
    return (ne0 / BLK_ELEMS) * BLK_BYTES;
}
