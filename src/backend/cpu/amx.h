/*
 * amx.h - prompt matmuls on Intel AMX tiles (Sapphire Rapids and later Xeons).
 *
 * AMX multiplies 16 x 64-byte int8 tiles (TDPBSSD: 16 x 16 int32 += 16 x 64 int8 . 64 x 16 int8) and bf16 tiles
 * (TDPBF16PS: 16 x 16 fp32 += 16 x 32 bf16 pairs . 32 x 16) in one instruction each, several times the
 * multiply-adds per cycle of AVX-512 VNNI. zili uses them for the tokens of multi-token prompts (ZL_MODE_MULTI and
 * above) on weights marked at load (zl_tensor.tiles; see model.c): decode (one-token mode) keeps the
 * bandwidth-bound kernels of ops.c. The tiles add in another order than llama.cpp does, so their results are not
 * bit-identical to it: close within a tolerance (tests/unit/test_amx.c per (row, token), tests/ref/test_amx.py on
 * whole models); `--exact` (ZILI_EXACT=1) or ZILI_CPU naming a set below "amx" turns them off.
 *
 * Each token's result depends on its own activations only (no sum crosses tokens), so which tokens share a tile
 * never changes a result: the serving engine's batching invariance holds.
 *
 * int8 path (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K weights), activations quantized as the exact path quantizes
 * them (the type's vec_dot_type: Q8_0, Q8_1, Q8_K). A weight type is cut into sub-blocks of S = 32 values (16 for
 * Q6_K) whose dequantized value is sw * c + mw for an integer code c that fits int8 (Q4_0: q - 8; Q4_1: q; Q5_0:
 * q - 16; Q8_0: q; Q4_K / Q5_K: q with sw = d * scale, mw = -dmin * min; Q6_K: q - 32, sw = d * scale). Per (row r,
 * token t) the result is, in order of sub-blocks j from 0, with float fmas:
 *     acc = fma((float)isum_j, sw_j[r] * da_j[t], acc);   acc = fma(mw_j[r], sa_j[t], acc)   (the second for types
 *     with minimums), where isum_j = sum of the int8 products over the sub-block (exact, from the tile), da_j the
 *     activation's scale for that sub-block and sa_j = da_j * sum of the activation's codes over it.
 * zl_amx_int8_ref is that arithmetic in plain C (the kernels' bits exactly).
 *
 * bf16 path (F16 and BF16 weights, and by default the quantized ones, dequantized): weights and activations rounded
 * to bf16 (round to nearest even), products summed in fp32 by the tiles over 32 values at a time, in the tiles' own
 * order (no scalar mirror: compared within a tolerance).
 *
 * Layouts (per "panel" of 16 weight rows, made by the driver once per chunk and reused for all its tokens):
 *   int8 panel: codes, for each sub-block j in order, S/4 rows of 64 bytes: row q holds for each weight row r (0..15)
 *     the codes of values 4q .. 4q + 3 of the sub-block (TDPBSSD's B layout); sw and mw: float [nsub][16].
 *     Rows past the matrix's end have zero codes and scales.
 *   bf16 panel: for each pair p = 0 .. k/2 - 1, 16 x 2 bf16: row r's values 2p and 2p + 1 (TDPBF16PS's B layout).
 * Activations, int8: the converted rows themselves (vec_dot_type blocks), n_pad tokens at xq + t * xq_stride
 * (n_pad: n rounded up to 16, the extra rows zero), the codes of sub-block j at byte offset off[j] of a row; da and
 * sa: float [n_pad][nsub]. bf16: [n_pad][k] bf16 rows.
 *
 * Kernel index (multi-token-mode tokens of a marked weight; one-token tokens always take ops.c's exact kernels):
 *   F16, BF16                     -> zl_amx_bf16_panel + zl_amx_bf16_tiles           (matmul_bf16_amx.c)
 *   Q4_0, Q4_1, Q5_0, Q8_0,       -> zl_amx_int8_panel + zl_amx_int8_to_bf16          (matmul_int8_amx.c)
 *   Q4_K, Q5_K, Q6_K (default)       + zl_amx_bf16_tiles                              (matmul_bf16_amx.c)
 *   the same with ZILI_AMX=int8   -> zl_amx_int8_panel + zl_amx_int8_tiles            (matmul_int8_amx.c)
 *   other types                   -> not marked: the exact kernels
 *
 * Everything here but zl_amx_available and zl_amx_int8_ref runs only where zl_amx_available() is true (AMX
 * instructions fault elsewhere); the kernels are pure and callable from any thread (each call configures the
 * tiles of its own thread).
 */
#ifndef ZL_CPU_AMX_H
#define ZL_CPU_AMX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "core/threadpool.h"

enum { ZL_AMX_ROWS = 16, ZL_AMX_TOKS = 16 };

/* The tile kernels exist in x86-64 builds only (files *_amx.c, built with the AMX flags); elsewhere
 * zl_amx_available() is false and nothing below but the portable functions may be called. */
#if defined(__x86_64__)
#define ZL_HAVE_AMX_KERNELS 1
#endif

/* Whether this process can run the tile kernels: an x86-64 CPU with AMX-TILE, AMX-INT8 and AMX-BF16 and AVX-512
 * F/DQ/BW/VL/VNNI/BF16, a kernel that grants the tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM, asked once;
 * a refusal means no tiles, silently), the zili kernel set avx512vnni, and ZILI_CPU unset or "amx" (any other value
 * forces that set's kernels). Decided once per process. */
bool zl_amx_available(void);
/* zl_amx_available() and no ZILI_EXACT=1 in the environment: what the model loader asks before marking weights. */
bool zl_amx_default_on(void);
/* "<kernel set>+amx", for messages. */
const char *zl_cpu_kernels_amx_name(void);
/* Whether quantized weights take the bf16 tiles (dequantized into bf16 panels, activations in bf16) rather than the
 * int8 ones: ZILI_AMX=int8 or =bf16 picks, unset means bf16 (the faster here: see ARCHITECTURE.md). */
bool zl_amx_quant_bf16(void);
/* Whether matrices of `type` have tile kernels. */
bool zl_amx_supports(uint32_t type);
/* The sub-block size S of `type` for the int8 path (32, or 16 for Q6_K); 0 for the bf16 types. */
int zl_amx_sub(uint32_t type);

/* ---- int8 path ---- */

/* Unpacks weight rows r0 .. r0 + 15 (those below ne1; the rest zero) of a matrix of `type` with rows of ne0 values
 * into the int8 panel (codes: ne0 * 16 bytes, 64-byte aligned; sw, mw: ne0 / S * 16 floats each, mw NULL for types
 * without minimums). w points at row r0 (in the X16 layout when x16: its 16-row group starting at r0). */
void zl_amx_int8_panel(uint32_t type, bool x16, const void *w, size_t nb1, int nrows, int64_t ne0, int8_t *codes,
                       float *sw, float *mw);
/* The same in plain C (any CPU; what the AVX-512 unpacking is tested against). */
void zl_amx_int8_panel_ref(uint32_t type, bool x16, const void *w, size_t nb1, int nrows, int64_t ne0, int8_t *codes,
                           float *sw, float *mw);
/* The per-token floats of one converted activation row xq (the type's vec_dot_type) of ne0 values: da[j], and for
 * types with minimums sa[j], for each sub-block j; off[j] (the same for every row) the byte offset of sub-block j's
 * codes in a row. */
void zl_amx_int8_act(uint32_t type, const void *xq, int64_t ne0, float *da, float *sa);
void zl_amx_int8_offsets(uint32_t type, int64_t ne0, uint32_t *off);
/* y[t * ldy + r] = row r . token t for t < nt, r < nrows (<= 16), through the tiles. xq: nt rounded up to 16 rows
 * (stride xq_stride); da, sa: float [nt rounded up][nsub] (sa NULL without minimums); panel as above. */
void zl_amx_int8_tiles(int S, int64_t nsub, const uint32_t *off, const void *xq, size_t xq_stride, const float *da,
                       const float *sa, int nt, const int8_t *codes, const float *sw, const float *mw, int nrows,
                       float *y, size_t ldy);
/* The same arithmetic in plain C (any CPU): the kernels' results bit for bit. */
void zl_amx_int8_ref(int S, int64_t nsub, const uint32_t *off, const void *xq, size_t xq_stride, const float *da,
                     const float *sa, int nt, const int8_t *codes, const float *sw, const float *mw, int nrows,
                     float *y, size_t ldy);

/* An int8 panel (sub-blocks of S) dequantized, w = sw * c + mw rounded to bf16, into a bf16 panel: quantized weights
 * on the bf16 tiles (zl_amx_bf16_tiles). */
void zl_amx_int8_to_bf16(int S, int64_t ne0, const int8_t *codes, const float *sw, const float *mw, uint16_t *panel);

/* ---- bf16 path ---- */

/* n rows of ne0 floats -> bf16 (round to nearest even), ne0 a multiple of 32. */
void zl_amx_bf16_act(const float *x, int64_t ne0, uint16_t *xb);
/* F16 weights keep their precision on the bf16 tiles by splitting both operands: w = wh + wl exactly, x ~ xh + xl
 * (16 significant bits, more than the F16 activations of the exact path), and the row becomes 3 * ne0 long,
 * activations [xh | xh | xl] against weights [wh | wl | wh] (the wl * xl term, ~2^-16 relative, is left out).
 * zl_amx_bf16_len: the tile row length for a weight of `type` (3 ne0 for F16, else ne0); zl_amx_bf16_act3 writes
 * one such activation row (3 ne0 bf16). */
int64_t zl_amx_bf16_len(uint32_t type, int64_t ne0);
void zl_amx_bf16_act3(const float *x, int64_t ne0, uint16_t *xb);
/* Weight rows r0 .. r0 + 15 (F16 or BF16, those below nrows; the rest zero) -> bf16 panel of
 * zl_amx_bf16_len(type, ne0) * 16 values, 64-byte aligned. */
void zl_amx_bf16_panel(uint32_t type, const void *w, size_t nb1, int nrows, int64_t ne0, uint16_t *panel);
/* y[t * ldy + r] for t < nt, r < nrows (<= 32: one or two panels, the second at panel + ne0 * 16) from activations
 * xb (nt rounded up to 16 rows of ne0 bf16, the extra rows zero). */
void zl_amx_bf16_tiles(int64_t ne0, const uint16_t *xb, int nt, const uint16_t *panel, int nrows, float *y,
                       size_t ldy);

/* ---- the driver (amx.c) ---- */

/* A zl_cpu's buffers for the tile path (activations, per-thread panels), grown as needed; NULL until first used. */
typedef struct zl_amx_ws zl_amx_ws;
void zl_amx_ws_free(zl_amx_ws *ws);
/* y[i * w->ne[1] + r] (for idx NULL) or y[idx[i] * w->ne[1] + r] = row r of w . token i, for the n tokens whose
 * activations are rows idx[i] (or i) of x (w->ne[0] floats each), on pool's threads (pool NULL: this one).
 * *ws is created on first use and reused. ZL_EUNSUPPORTED where the tiles are not available or w's type has none,
 * ZL_EINVAL for a row length the type cannot have, ZL_ENOMEM. */
int zl_amx_matmul(zl_pool *pool, zl_amx_ws **ws, const zl_tensor *w, const float *x, const int64_t *idx, int64_t n,
                  float *y);

/* ---- measurement ---- */

/* The tile units' peak on n_threads threads (each pinned nowhere, running for about `seconds`): int8 multiply-adds
 * per second (TDPBSSD on register tiles, no memory traffic) and bf16 ones (TDPBF16PS). Returns false where
 * zl_amx_available() is false. */
bool zl_amx_peak(int n_threads, double seconds, double *int8_macs, double *bf16_macs);

#endif
