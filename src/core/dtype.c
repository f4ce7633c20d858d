/*
 * dtype.c - the type traits tables: names, block geometry and kernels of every ggml/GGUF type id.
 *
 * One constant table, the scalar reference; the kernel set in use is that table with an ISA's faster kernels
 * swapped in (AVX2 / AVX-512 on x86, NEON on AArch64), chosen once per process (pthread_once) from cpuid or
 * getauxval(AT_HWCAP) and the ZILI_CPU environment variable (scalar, avx2, avx512, avx512vnni, neon); the choice is
 * the only state here and is never changed after it is made.
 *
 * Block sizes and byte sizes are ggml's (gguf-py's GGML_QUANT_SIZES agrees, except that gguf-py still lists
 * Q8_1 at 40 bytes from when its d and s were floats; ggml's Q8_1 block is 36 bytes and Q8_1 never occurs in
 * model files).
 */
#include "core/dtype.h"

#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"

#define PLAIN(id, nm, bytes) [id] = { .name = nm, .block_size = 1, .type_size = bytes }
#define BLOCKED(id, nm, bs, bytes) [id] = { .name = nm, .block_size = bs, .type_size = bytes }

/* Kernels set for a computable type; the _act converter defaults to from_float. */
#define KERNELS(tf, ff, vd, vdt, ffa) \
    .supported = true, .to_float = tf, .from_float = ff, .vec_dot = vd, .vec_dot_type = vdt, .from_float_act = ffa

static const zl_type_traits k_traits_ref[ZL_DTYPE_COUNT] = {
    [ZL_F32] = { .name = "f32", .block_size = 1, .type_size = 4,
                 KERNELS(zl_f32_to_float_ref, zl_f32_from_float_ref, zl_f32_vec_dot_ref, ZL_F32,
                         zl_f32_from_float_ref) },
    [ZL_F16] = { .name = "f16", .block_size = 1, .type_size = 2,
                 KERNELS(zl_f16_to_float_ref, zl_f16_from_float_ref, zl_f16_vec_dot_ref, ZL_F16,
                         zl_f16_from_float_ref) },
    [ZL_BF16] = { .name = "bf16", .block_size = 1, .type_size = 2,
                  KERNELS(zl_bf16_to_float_ref, zl_bf16_from_float_ref, zl_bf16_vec_dot_ref, ZL_BF16,
                          zl_bf16_from_float_ref) },
    [ZL_Q4_0] = { .name = "q4_0", .block_size = 32, .type_size = 18,
                  KERNELS(zl_q4_0_to_float_ref, zl_q4_0_from_float_ref, zl_q4_0_vec_dot_ref, ZL_Q8_0,
                          zl_q4_0_from_float_ref) },
    [ZL_Q4_1] = { .name = "q4_1", .block_size = 32, .type_size = 20,
                  KERNELS(zl_q4_1_to_float_ref, zl_q4_1_from_float_ref, zl_q4_1_vec_dot_ref, ZL_Q8_1,
                          zl_q4_1_from_float_ref) },
    [ZL_Q8_0] = { .name = "q8_0", .block_size = 32, .type_size = 34,
                  KERNELS(zl_q8_0_to_float_ref, zl_q8_0_from_float_ref, zl_q8_0_vec_dot_ref, ZL_Q8_0,
                          zl_q8_0_from_float_act_ref) },
    /* Q8_1 is an activation type only: no vec_dot of its own. */
    [ZL_Q8_1] = { .name = "q8_1", .block_size = 32, .type_size = 36, .supported = false,
                  .to_float = zl_q8_1_to_float_ref, .from_float = zl_q8_1_from_float_ref,
                  .vec_dot_type = ZL_Q8_1, .from_float_act = zl_q8_1_from_float_act_ref },
    [ZL_Q5_0] = { .name = "q5_0", .block_size = 32, .type_size = 22,
                  KERNELS(zl_q5_0_to_float_ref, zl_q5_0_from_float_ref, zl_q5_0_vec_dot_ref, ZL_Q8_0,
                          zl_q5_0_from_float_ref) },
    [ZL_Q5_1] = { .name = "q5_1", .block_size = 32, .type_size = 24,
                  KERNELS(zl_q5_1_to_float_ref, zl_q5_1_from_float_ref, zl_q5_1_vec_dot_ref, ZL_Q8_1,
                          zl_q5_1_from_float_ref) },
    /* K-quants: 256-value super-blocks, dotted against Q8_K activations */
    [ZL_Q2_K] = { .name = "q2_K", .block_size = 256, .type_size = 84,
                  KERNELS(zl_q2_K_to_float_ref, zl_q2_K_from_float_ref, zl_q2_K_vec_dot_ref, ZL_Q8_K,
                          zl_q2_K_from_float_ref) },
    [ZL_Q3_K] = { .name = "q3_K", .block_size = 256, .type_size = 110,
                  KERNELS(zl_q3_K_to_float_ref, zl_q3_K_from_float_ref, zl_q3_K_vec_dot_ref, ZL_Q8_K,
                          zl_q3_K_from_float_ref) },
    [ZL_Q4_K] = { .name = "q4_K", .block_size = 256, .type_size = 144,
                  KERNELS(zl_q4_K_to_float_ref, zl_q4_K_from_float_ref, zl_q4_K_vec_dot_ref, ZL_Q8_K,
                          zl_q4_K_from_float_ref) },
    [ZL_Q5_K] = { .name = "q5_K", .block_size = 256, .type_size = 176,
                  KERNELS(zl_q5_K_to_float_ref, zl_q5_K_from_float_ref, zl_q5_K_vec_dot_ref, ZL_Q8_K,
                          zl_q5_K_from_float_ref) },
    [ZL_Q6_K] = { .name = "q6_K", .block_size = 256, .type_size = 210,
                  KERNELS(zl_q6_K_to_float_ref, zl_q6_K_from_float_ref, zl_q6_K_vec_dot_ref, ZL_Q8_K,
                          zl_q6_K_from_float_ref) },
    /* Q8_K is an activation type only; ggml quantizes activations with its reference quantizer on x86 too. */
    [ZL_Q8_K] = { .name = "q8_K", .block_size = 256, .type_size = 292, .supported = false,
                  .to_float = zl_q8_K_to_float_ref, .from_float = zl_q8_K_from_float_ref,
                  .vec_dot_type = ZL_Q8_K, .from_float_act = zl_q8_K_from_float_ref },
    BLOCKED(ZL_IQ2_XXS, "iq2_xxs", 256, 66),
    BLOCKED(ZL_IQ2_XS, "iq2_xs", 256, 74),
    BLOCKED(ZL_IQ3_XXS, "iq3_xxs", 256, 98),
    BLOCKED(ZL_IQ1_S, "iq1_s", 256, 50),
    BLOCKED(ZL_IQ4_NL, "iq4_nl", 32, 18),
    BLOCKED(ZL_IQ3_S, "iq3_s", 256, 110),
    BLOCKED(ZL_IQ2_S, "iq2_s", 256, 82),
    BLOCKED(ZL_IQ4_XS, "iq4_xs", 256, 136),
    PLAIN(ZL_I8, "i8", 1),
    PLAIN(ZL_I16, "i16", 2),
    PLAIN(ZL_I32, "i32", 4),
    PLAIN(ZL_I64, "i64", 8),
    PLAIN(ZL_F64, "f64", 8),
    BLOCKED(ZL_IQ1_M, "iq1_m", 256, 56),
    BLOCKED(ZL_TQ1_0, "tq1_0", 256, 54),
    BLOCKED(ZL_TQ2_0, "tq2_0", 256, 66),
    BLOCKED(ZL_MXFP4, "mxfp4", 32, 17),
    BLOCKED(ZL_NVFP4, "nvfp4", 64, 36),
    BLOCKED(ZL_Q1_0, "q1_0", 128, 18),
};

#ifdef ZL_HAVE_AVX2_KERNELS
/* The reference table with the AVX2 kernels swapped in; filled once from k_traits_ref (see choose_table). */
typedef struct kernel_swap {
    zl_dtype type;
    zl_vec_dot_fn vec_dot;          /* NULL: keep the reference one */
    zl_from_float_fn from_float_act; /* NULL: keep the reference one */
    zl_vec_dot4_fn vec_dot4;         /* NULL: none */
} kernel_swap;

static const kernel_swap k_avx2_swaps[] = {
    { ZL_F32, zl_f32_vec_dot_avx2, NULL, NULL },
    { ZL_F16, zl_f16_vec_dot_avx2, zl_f16_from_float_avx2, NULL },
    { ZL_BF16, zl_bf16_vec_dot_avx2, NULL, NULL },
    { ZL_Q4_0, zl_q4_0_vec_dot_avx2, NULL, zl_q4_0_vec_dot4_avx2 },
    { ZL_Q4_1, zl_q4_1_vec_dot_avx2, NULL, zl_q4_1_vec_dot4_avx2 },
    { ZL_Q8_0, zl_q8_0_vec_dot_avx2, zl_q8_0_from_float_act_avx2, zl_q8_0_vec_dot4_avx2 },
    { ZL_Q8_1, NULL, zl_q8_1_from_float_act_avx2, NULL },
    { ZL_Q8_K, NULL, zl_q8_K_from_float_act_avx2, NULL },
    { ZL_Q5_0, zl_q5_0_vec_dot_avx2, NULL, zl_q5_0_vec_dot4_avx2 },
    { ZL_Q5_1, zl_q5_1_vec_dot_avx2, NULL, NULL },
    { ZL_Q2_K, zl_q2_K_vec_dot_avx2, NULL, NULL },
    { ZL_Q3_K, zl_q3_K_vec_dot_avx2, NULL, NULL },
    { ZL_Q4_K, zl_q4_K_vec_dot_avx2, NULL, NULL },
    { ZL_Q5_K, zl_q5_K_vec_dot_avx2, NULL, NULL },
    { ZL_Q6_K, zl_q6_K_vec_dot_avx2, NULL, NULL },
};
#endif

/* Process-wide choice, written once inside pthread_once and read-only afterwards. */
typedef struct kernel_choice {
    zl_type_traits table[ZL_DTYPE_COUNT];
    const char *name;
    int width;
} kernel_choice;

static kernel_choice g_choice;
static pthread_once_t g_choice_once = PTHREAD_ONCE_INIT;

#ifdef ZL_HAVE_AVX2_KERNELS
/* AVX2, FMA and F16C present, and the OS saves YMM state (cpuid directly: clang's __builtin_cpu_supports does
 * not know "f16c"). */
static bool cpu_has_avx2_fma_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6u) != 6u) return false; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return b & (1u << 5); /* AVX2 */
}

/* Whether the OS saves opmask and ZMM state, and if so cpuid leaf 7's ebx / ecx (call after
 * cpu_has_avx2_fma_f16c, which checks that leaf 7 exists). */
static bool cpu_avx512_leaf7(unsigned *ebx, unsigned *ecx)
{
    unsigned a, d;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
    __cpuid_count(7, 0, a, *ebx, *ecx, d);
    return true;
}

/* AVX-512 F and DQ, and the OS saves opmask and ZMM state. */
static bool cpu_has_avx512f_dq(void)
{
    unsigned b, c;
    return cpu_avx512_leaf7(&b, &c) && (b & (1u << 16)) && (b & (1u << 17));
}
#endif

#ifdef ZL_HAVE_VNNI_KERNELS
/* AVX-512 BW, VL and VNNI, and the OS saves opmask and ZMM state (call after cpu_has_avx512f_dq). */
static bool cpu_has_avx512_vnni(void)
{
    unsigned b, c;
    return cpu_avx512_leaf7(&b, &c) && (b & (1u << 30)) && (b & (1u << 31)) && (c & (1u << 11)); /* BW, VL; VNNI */
}

/* The "avx512vnni" set: the AVX-512 one with these dots swapped in (same bits, see quant_vnni.c). */
static const kernel_swap k_vnni_swaps[] = {
    { ZL_Q4_0, zl_q4_0_vec_dot_vnni, NULL, zl_q4_0_vec_dot4_vnni },
    { ZL_Q4_1, zl_q4_1_vec_dot_vnni, NULL, zl_q4_1_vec_dot4_vnni },
    { ZL_Q5_0, zl_q5_0_vec_dot_vnni, NULL, zl_q5_0_vec_dot4_vnni },
    { ZL_Q5_1, zl_q5_1_vec_dot_vnni, NULL, zl_q5_1_vec_dot4_vnni },
    { ZL_Q8_0, zl_q8_0_vec_dot_vnni, NULL, zl_q8_0_vec_dot4_vnni },
};
#endif

#ifdef ZL_HAVE_BF16_KERNELS
/* AVX512-BF16 (cpuid leaf 7 subleaf 1, eax bit 5) with AVX-512 VL, and the OS saves opmask and ZMM state (call after
 * cpu_has_avx512f_dq). */
static bool cpu_has_avx512_bf16(void)
{
    unsigned a, b, c, d;
    if (!cpu_avx512_leaf7(&b, &c) || !(b & (1u << 31))) return false; /* VL */
    __cpuid_count(7, 0, a, b, c, d); /* eax: the highest subleaf of leaf 7 */
    if (a < 1) return false;
    __cpuid_count(7, 1, a, b, c, d);
    return a & (1u << 5);
}
#endif

#ifdef ZL_HAVE_NEON_KERNELS
/* The NEON kernels, with (dp) and without SDOT: the same ggml NEON arithmetic with each variant's lane grouping. */
typedef struct neon_swap {
    zl_dtype type;
    zl_vec_dot_fn vec_dot, vec_dot_dp; /* NULL: keep the reference one */
    zl_from_float_fn from_float_act;   /* NULL: keep the reference one */
} neon_swap;

static const neon_swap k_neon_swaps[] = {
    { ZL_F32, zl_f32_vec_dot_neon, zl_f32_vec_dot_neon, NULL },
    { ZL_F16, zl_f16_vec_dot_neon, zl_f16_vec_dot_neon, NULL },
    { ZL_Q4_0, zl_q4_0_vec_dot_neon, zl_q4_0_vec_dot_neon_dp, NULL },
    { ZL_Q4_1, zl_q4_1_vec_dot_neon, zl_q4_1_vec_dot_neon_dp, NULL },
    { ZL_Q8_0, zl_q8_0_vec_dot_neon, zl_q8_0_vec_dot_neon_dp, zl_q8_0_from_float_act_neon },
    { ZL_Q8_1, NULL, NULL, zl_q8_1_from_float_act_neon },
    { ZL_Q5_0, zl_q5_0_vec_dot_neon, zl_q5_0_vec_dot_neon_dp, NULL },
    { ZL_Q5_1, zl_q5_1_vec_dot_neon, zl_q5_1_vec_dot_neon_dp, NULL },
    { ZL_Q2_K, zl_q2_K_vec_dot_neon, zl_q2_K_vec_dot_neon_dp, NULL },
    { ZL_Q3_K, zl_q3_K_vec_dot_neon, zl_q3_K_vec_dot_neon_dp, NULL },
    { ZL_Q4_K, zl_q4_K_vec_dot_neon, zl_q4_K_vec_dot_neon_dp, NULL },
    { ZL_Q5_K, zl_q5_K_vec_dot_neon, zl_q5_K_vec_dot_neon_dp, NULL },
    { ZL_Q6_K, zl_q6_K_vec_dot_neon, zl_q6_K_vec_dot_neon_dp, NULL },
};

/* The dot-product instructions (SDOT/UDOT), as the kernel reports them. */
static bool cpu_has_asimddp(void)
{
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}

/* Every AArch64 CPU has Advanced SIMD; the dot-product kernels only where the CPU has SDOT. */
static void choose_neon(const char *env)
{
    if (env && strcmp(env, "scalar") == 0) return;
    const bool dp = cpu_has_asimddp();
    for (size_t i = 0; i < sizeof k_neon_swaps / sizeof k_neon_swaps[0]; i++) {
        zl_type_traits *t = &g_choice.table[k_neon_swaps[i].type];
        const zl_vec_dot_fn vd = dp ? k_neon_swaps[i].vec_dot_dp : k_neon_swaps[i].vec_dot;
        if (vd) t->vec_dot = vd;
        if (k_neon_swaps[i].from_float_act) t->from_float_act = k_neon_swaps[i].from_float_act;
    }
    g_choice.table[ZL_F32].vec_dot_gemm = zl_f32_vec_dot_gemm_neon;
    g_choice.table[ZL_F32].gemm_k = 4;
    g_choice.name = dp ? "neon" : "neon-nodot";
    g_choice.width = 4;
}
#endif

static void choose_table(void)
{
    memcpy(g_choice.table, k_traits_ref, sizeof k_traits_ref);
    g_choice.name = "scalar";
    g_choice.width = 1;
#ifdef ZL_HAVE_NEON_KERNELS
    choose_neon(getenv("ZILI_CPU"));
#endif
#ifdef ZL_HAVE_AVX2_KERNELS
    const char *env = getenv("ZILI_CPU");
    if (env && strcmp(env, "scalar") == 0) return;
    if (!cpu_has_avx2_fma_f16c()) return;
    for (size_t i = 0; i < sizeof k_avx2_swaps / sizeof k_avx2_swaps[0]; i++) {
        zl_type_traits *t = &g_choice.table[k_avx2_swaps[i].type];
        if (k_avx2_swaps[i].vec_dot) t->vec_dot = k_avx2_swaps[i].vec_dot;
        if (k_avx2_swaps[i].from_float_act) t->from_float_act = k_avx2_swaps[i].from_float_act;
        t->vec_dot4 = k_avx2_swaps[i].vec_dot4;
    }
    g_choice.name = "avx2";
    g_choice.width = 8;
    zl_type_traits *f32 = &g_choice.table[ZL_F32], *f16 = &g_choice.table[ZL_F16];
    f32->vec_dot_gemm = zl_f32_vec_dot_gemm_avx2;
    f16->vec_dot_gemm = zl_f16_vec_dot_gemm_avx2;
    f32->gemm_k = f16->gemm_k = 8;
    if ((env && strcmp(env, "avx2") == 0) || !cpu_has_avx512f_dq()) return;
    f32->vec_dot = zl_f32_vec_dot_avx512;
    f16->vec_dot = zl_f16_vec_dot_avx512;
    f32->vec_dot_gemm = zl_f32_vec_dot_gemm_avx512;
    f16->vec_dot_gemm = zl_f16_vec_dot_gemm_avx512;
    f32->gemm_k = f16->gemm_k = 16;
    g_choice.name = "avx512";
    g_choice.width = 16;
#ifdef ZL_HAVE_VNNI_KERNELS
    /* ZILI_CPU=avx512 keeps the set above (its kernels stay testable); avx512vnni or no variable goes on */
    if ((env && strcmp(env, "avx512") == 0) || !cpu_has_avx512_vnni()) return;
    for (size_t i = 0; i < sizeof k_vnni_swaps / sizeof k_vnni_swaps[0]; i++) {
        zl_type_traits *t = &g_choice.table[k_vnni_swaps[i].type];
        t->vec_dot = k_vnni_swaps[i].vec_dot;
        t->vec_dot4 = k_vnni_swaps[i].vec_dot4;
    }
    g_choice.name = "avx512vnni";
#ifdef ZL_HAVE_BF16_KERNELS
    /* BF16 weights with VDPBF16PS, as ggml built for an AVX512-BF16 CPU computes them (one token and tinyBLAS's
     * 2+-token order, whose steps are 32 elements). A capability of this set rather than a set of its own: the
     * other kernels (and the name other code keys on) are avx512vnni's; ZILI_CPU=avx512 leaves it off. */
    if (cpu_has_avx512_bf16()) {
        zl_type_traits *bf16 = &g_choice.table[ZL_BF16];
        bf16->vec_dot = zl_bf16_vec_dot_avx512bf16;
        bf16->vec_dot_gemm = zl_bf16_vec_dot_gemm_avx512bf16;
        bf16->gemm_k = 32;
    }
#endif
#endif
#endif
}

const zl_type_traits *zl_type_traits_ref(uint32_t t)
{
    if (t >= ZL_DTYPE_COUNT || k_traits_ref[t].name == NULL) return NULL;
    return &k_traits_ref[t];
}

const zl_type_traits *zl_type_traits_get(uint32_t t)
{
    if (t >= ZL_DTYPE_COUNT || k_traits_ref[t].name == NULL) return NULL;
    pthread_once(&g_choice_once, choose_table);
    return &g_choice.table[t];
}

bool zl_row_size(uint32_t t, int64_t n, size_t *out)
{
    const zl_type_traits *tr = zl_type_traits_ref(t);
    if (!tr || n < 0 || n % tr->block_size != 0) return false;
    const uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > SIZE_MAX / tr->type_size) return false;
    *out = (size_t)blocks * tr->type_size;
    return true;
}

const char *zl_type_name(uint32_t t)
{
    const zl_type_traits *tr = zl_type_traits_ref(t);
    return tr ? tr->name : "unknown";
}

const char *zl_cpu_kernels_name(void)
{
    pthread_once(&g_choice_once, choose_table);
    return g_choice.name;
}

int zl_cpu_simd_width(void)
{
    pthread_once(&g_choice_once, choose_table);
    return g_choice.width;
}
