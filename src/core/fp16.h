/*
 * fp16.h - IEEE half and bfloat16 <-> float conversion, portable C (bit-exact, round-to-nearest-even, as
 * numpy and F16C's cvtps_ph with round-to-nearest; tested on all 65536 halves in tests/unit/test_dtype.c).
 * bf16 rounding and NaN handling follow ggml (NaN -> quiet NaN, others round to nearest even).
 */
#ifndef ZL_FP16_H
#define ZL_FP16_H

#include <stdint.h>
#include <string.h>

static inline float zl_fp32_from_bits(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static inline uint32_t zl_fp32_to_bits(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }

/* half -> float, exact for every half value including subnormals, inf and NaN (NaN payload kept). No loops:
 * a subnormal is its 10-bit significand times 2^-24, which a float multiply gives exactly. */
static inline float zl_fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        const float mag = (float)mant * 0x1p-24f;
        return zl_fp32_from_bits(zl_fp32_to_bits(mag) | sign);
    }
    if (exp == 31) return zl_fp32_from_bits(sign | 0x7f800000u | (mant << 13));
    return zl_fp32_from_bits(sign | (((uint32_t)(h & 0x7fff) << 13) + ((127u - 15u) << 23)));
}

/* float -> half, round to nearest even, overflow to inf, NaN kept NaN. */
static inline uint16_t zl_fp32_to_fp16(float f)
{
    const uint32_t x = zl_fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < half of smallest subnormal */
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias exponent 127 -> 15, still with 23-bit mantissa */
    const uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float zl_bf16_to_fp32(uint16_t h) { return zl_fp32_from_bits((uint32_t)h << 16); }

static inline uint16_t zl_fp32_to_bf16(float f)
{
    uint32_t x = zl_fp32_to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

#endif
