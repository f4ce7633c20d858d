/*
 * utf8.c - strict UTF-8 validation and coding for the tokenizer.
 *
 * "Well-formed" is the Unicode definition (the same one PCRE2 checks in UTF mode): no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, every continuation byte present. Because text validated
 * here is exactly what PCRE2 would accept, the pre-tokenizer may pass PCRE2_NO_UTF_CHECK for it.
 * Pure functions; no state.
 */
#include "tokenizer/tok_internal.h"

size_t zl_utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t l;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        l = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1, F5..FF */
    }
    if (n < l)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < l; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return l;
}

uint32_t zl_utf8_decode(const unsigned char *s, size_t l)
{
    switch (l) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
}

size_t zl_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Whether s[0..n) (n < the lead byte's length) could still become a well-formed sequence. */
static bool valid_prefix(const unsigned char *s, size_t n, size_t need)
{
    unsigned char c = s[0];
    if (n >= need)
        return false;
    if (n >= 2) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        else if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        if (s[1] < lo || s[1] > hi)
            return false;
        for (size_t i = 2; i < n; i++)
            if ((s[i] & 0xC0) != 0x80)
                return false;
    }
    return true;
}

size_t zl_utf8_incomplete_tail(const unsigned char *s, size_t n)
{
    /* A lead byte at most 3 bytes from the end, followed only by continuation bytes. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const unsigned char *p = s + n - back;
        unsigned char c = *p;
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (need && valid_prefix(p, back, need))
            return back;
        return 0;
    }
    return 0;
}
