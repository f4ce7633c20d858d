/*
 * sampler.h - choosing the next token from a row of logits.
 *
 * The chain follows llama.cpp's default order so that the same parameters mean the same thing:
 *   penalties (repetition, presence, frequency over the last repeat_last_n accepted tokens)
 *   -> top-k -> top-p -> min-p -> temperature -> draw from the softmax with the sampler's own RNG.
 * temp <= 0 is greedy: the arg-max after penalties (ties go to the lowest id). Every stage is neutral at its
 * neutral value (top_k <= 0, top_p >= 1, min_p <= 0, penalties 1 / 0 / 0).
 *
 * The RNG state belongs to the sampler: the same seed and the same logits give the same tokens.
 * A sampler is used by one thread at a time.
 */
#ifndef ZL_SAMPLER_H
#define ZL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct zl_sampler_params {
    float temp;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;   /* 1 = off; divides positive logits, multiplies negative ones */
    int32_t repeat_last_n;  /* window of accepted tokens the penalties look at; 0 = off, -1 = all */
    float presence_penalty; /* subtracted once from tokens present in the window */
    float frequency_penalty;/* subtracted count times */
    uint64_t seed;
} zl_sampler_params;

/* A candidate's weight e^((logit - max) / temp) (logit <= max, temp > 0) as every draw computes it, in float:
 * x = k ln2 + r (k the nearest integer to x log2 e, r by a two-part ln2), e^r by its degree-6 Taylor polynomial
 * (|r| <= ln2 / 2: relative error about 2e-7), times 2^k from the exponent bits; 0 below e^-87 and for -inf.
 * sampler_avx2.c does the same operations 8 at a time (no FMA), so both give the same bits. */
static inline float zl_sample_weight(float logit, float max, float temp)
{
    const float x = (logit - max) / temp;
    const float xc = x > -87.0f ? x : -87.0f; /* -inf and NaN alike */
    const float k = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* nearest integer (1.5 * 2^23) */
    const float r = (xc - k * 0.693145751953125f) - k * 1.428606765330187e-6f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_k = {.i = ((int32_t)k + 127) * (1 << 23)};
    return x > -87.0f ? p * two_k.f : 0.0f;
}

typedef struct zl_sampler zl_sampler;
/* Scratch for one sampling call over n_vocab logits (candidates and weights, 16 bytes per token). A sampler made
 * by zl_sampler_create has its own; a server keeps one per sampling thread and makes its samplers with
 * zl_sampler_create_shared, so that a queued request holds no vocabulary-sized memory. */
typedef struct zl_sample_ws zl_sample_ws;

int zl_sample_ws_create(int32_t n_vocab, zl_sample_ws **out, zl_err *err);
void zl_sample_ws_free(zl_sample_ws *ws);

/* Validates p (finite values, temp >= 0, top_p in [0,1], min_p in [0,1], repeat_penalty > 0, window bounded).
 * n_vocab > 0. Caller frees with zl_sampler_free. */
int zl_sampler_create(const zl_sampler_params *p, int32_t n_vocab, zl_sampler **out, zl_err *err);
/* The same without its own scratch: sample only with zl_sampler_sample_ws. */
int zl_sampler_create_shared(const zl_sampler_params *p, int32_t n_vocab, zl_sampler **out, zl_err *err);
void zl_sampler_free(zl_sampler *s);

/* Picks a token from logits[0 .. n_vocab). logits is not modified. Non-finite logits are treated as -inf;
 * if every logit is -inf the lowest id is returned. Greedy and plain-temperature draws without penalties read
 * the logits directly; the others work on a candidate array. */
int32_t zl_sampler_sample(zl_sampler *s, const float *logits);
/* The same with the caller's scratch (made for the same n_vocab), used by one thread at a time. */
int32_t zl_sampler_sample_ws(zl_sampler *s, const float *logits, zl_sample_ws *ws);

/* Whether token may come (a grammar's verdict, say); must not depend on earlier calls. */
typedef bool (*zl_token_ok)(void *ctx, int32_t token);
#define ZL_SAMPLER_MAX_TRIES 64

/* A draw as zl_sampler_sample_ws would make it from logits in which every token ok refuses were -inf, asking ok
 * about a few tokens instead of the whole vocabulary: greedy, top-k and min-p take the best candidates in order
 * until the admitted ones their stage keeps are known, then draw as the masked row would (the same token for the
 * same RNG state); a plain-temperature draw (no top-k / top-p / min-p) draws from the same weights again, each
 * refused token taken out, until ok admits one (rejection sampling: the masked row's distribution, though not its
 * draw). -1 when `tries` (1 .. ZL_SAMPLER_MAX_TRIES) refusals do not settle it, and for top-p without top-k
 * once the first draw is refused (its cut needs the mass of every admitted token): the caller then masks the row
 * and calls zl_sampler_sample_ws. The returned token has been admitted by ok. */
int32_t zl_sampler_sample_where(zl_sampler *s, const float *logits, zl_sample_ws *ws, zl_token_ok ok, void *ctx,
                                int32_t tries);

/* The draw zl_sampler_sample_ws would make from logits with every token but ids[0..n_ids) (ascending) at -inf,
 * reading only those: the same token for the same RNG state. */
int32_t zl_sampler_sample_among(zl_sampler *s, const float *logits, const int32_t *ids, int32_t n_ids,
                                zl_sample_ws *ws);

/* Records a token as part of the context (prompt or generated) for the penalties. */
void zl_sampler_accept(zl_sampler *s, int32_t token);
/* Forgets accepted tokens (keeps the RNG state). */
void zl_sampler_reset(zl_sampler *s);

#endif
