/*
 * peak_amx.c - the AMX tile units' peak throughput (zl_amx_peak, amx.h): what the hardware can do at best, so that
 * `zili bench --peak` can print it beside the prefill speed and a reader can tell what fraction of the tiles' peak
 * the prompt matmuls reach (the rest goes to unpacking weights, converting activations, folding results and memory).
 *
 * Measurement: n_threads pthreads (created here, joined before returning; not pinned). Each configures its tiles
 * (palette 1, all 8 tiles 16 rows x 64 bytes), loads its operands once, then runs long unrolled runs of independent
 * tile products on register tiles only (no memory traffic): C tiles tmm0..3 += A tmm4..5 x B tmm6..7 in the four
 * combinations, so consecutive instructions never depend on each other and each accumulator is written every 4th
 * instruction (deeper than the product's latency). Half of `seconds` goes to the int8 product TDPBSSD
 * (16 x 16 x 64 = 16384 multiply-adds each), half to the bf16 one TDPBF16PS (16 x 16 x 32 = 8192). Each phase starts
 * on all threads together (a barrier, after a short untimed warm-up that wakes the units) and is timed with
 * CLOCK_MONOTONIC from the barrier to the last thread's finish; the result is the multiply-adds of all threads over
 * that time. At the end each thread stores one C tile of each phase and folds it into a checksum (so nothing can be
 * dropped) and releases its tiles.
 *
 * Compiled with the *_amx.c flags; runs tile instructions only where zl_amx_available().
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <immintrin.h>

#include "backend/cpu/amx.h"

enum {
    PEAK_UNROLL = 16,  /* tile products per inner iteration (4 per accumulator) */
    PEAK_CHUNK = 64,   /* inner iterations between clock reads: 1024 products, some 16K cycles */
    PEAK_WARMUP = 16,  /* untimed chunks before each phase */
    PEAK_INT8_MACS = 16 * 16 * 64,
    PEAK_BF16_MACS = 16 * 16 * 32,
};

typedef struct peak_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} peak_tilecfg;

typedef struct peak_shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate; /* 0: wait, 1: run, -1: abort (a thread could not be created) */
    pthread_barrier_t bar;
    double half; /* seconds per phase */
} peak_shared;

typedef struct peak_thread {
    peak_shared *sh;
    uint64_t n_int8, n_bf16;           /* tile products run in the timed phases */
    struct timespec t0[2], t1[2];      /* per phase: after the barrier, at the finish */
    uint32_t check;                    /* checksum of the stored result tiles */
} peak_thread;

static double ts_sec(const struct timespec *t)
{
    return (double)t->tv_sec + 1e-9 * (double)t->tv_nsec;
}

static void now(struct timespec *t)
{
    __asm__ volatile("" ::: "memory");
    clock_gettime(CLOCK_MONOTONIC, t);
    __asm__ volatile("" ::: "memory");
}

static void peak_config(void)
{
    peak_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.rows[i] = 16, c.colsb[i] = 64;
    _tile_loadconfig(&c);
}

/* Four independent products, one into each accumulator. */
#define PEAK_QUAD(op) \
    do { \
        op(0, 4, 6); \
        op(1, 4, 7); \
        op(2, 5, 6); \
        op(3, 5, 7); \
    } while (0)

/* One chunk: PEAK_CHUNK x PEAK_UNROLL (4 quads) independent products into tmm0..3. */
static void chunk_int8(void)
{
    for (int i = 0; i < PEAK_CHUNK; i++) {
        PEAK_QUAD(_tile_dpbssd);
        PEAK_QUAD(_tile_dpbssd);
        PEAK_QUAD(_tile_dpbssd);
        PEAK_QUAD(_tile_dpbssd);
    }
}

static void chunk_bf16(void)
{
    for (int i = 0; i < PEAK_CHUNK; i++) {
        PEAK_QUAD(_tile_dpbf16ps);
        PEAK_QUAD(_tile_dpbf16ps);
        PEAK_QUAD(_tile_dpbf16ps);
        PEAK_QUAD(_tile_dpbf16ps);
    }
}

static void zero_acc(void)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

/* Runs chunks from the barrier until the phase's time is spent; returns the products run. */
static uint64_t timed_phase(peak_thread *t, int phase, void (*chunk)(void))
{
    for (int i = 0; i < PEAK_WARMUP; i++) chunk();
    pthread_barrier_wait(&t->sh->bar);
    now(&t->t0[phase]);
    const double end = ts_sec(&t->t0[phase]) + t->sh->half;
    uint64_t n = 0;
    struct timespec tn;
    do {
        chunk();
        n += (uint64_t)PEAK_CHUNK * PEAK_UNROLL;
        now(&tn);
    } while (ts_sec(&tn) < end);
    t->t1[phase] = tn;
    return n;
}

static void *peak_worker(void *arg)
{
    peak_thread *t = arg;
    peak_shared *sh = t->sh;
    pthread_mutex_lock(&sh->mu);
    while (sh->gate == 0) pthread_cond_wait(&sh->cv, &sh->mu);
    const int gate = sh->gate;
    pthread_mutex_unlock(&sh->mu);
    if (gate < 0) return NULL;

    _Alignas(64) int8_t a8[4][1024]; /* operands of tmm4..7 */
    _Alignas(64) uint16_t a16[4][512];
    _Alignas(64) int32_t c8[256];
    _Alignas(64) float c16[256];
    uint32_t s = 0x9e3779b9u ^ (uint32_t)(uintptr_t)t;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 1024; i++) {
            s = s * 1664525u + 1013904223u;
            a8[k][i] = (int8_t)((int)(s >> 24) - 128);
        }
        for (int i = 0; i < 512; i++) {
            s = s * 1664525u + 1013904223u;
            /* bf16 of magnitudes 2^-8 .. 2^-7, either sign: sums stay far from overflow over any run */
            a16[k][i] = (uint16_t)(((s >> 31) << 15) | (0x77u << 7) | ((s >> 16) & 0x7fu));
        }
    }

    peak_config();
    _tile_loadd(4, a8[0], 64);
    _tile_loadd(5, a8[1], 64);
    _tile_loadd(6, a8[2], 64);
    _tile_loadd(7, a8[3], 64);
    zero_acc();
    t->n_int8 = timed_phase(t, 0, chunk_int8);
    _tile_stored(0, c8, 64);

    _tile_loadd(4, a16[0], 64);
    _tile_loadd(5, a16[1], 64);
    _tile_loadd(6, a16[2], 64);
    _tile_loadd(7, a16[3], 64);
    zero_acc();
    t->n_bf16 = timed_phase(t, 1, chunk_bf16);
    _tile_stored(0, c16, 64);
    _tile_release();

    uint32_t check = 0;
    for (int i = 0; i < 256; i++) {
        uint32_t u;
        memcpy(&u, &c16[i], sizeof u);
        check = (check ^ (uint32_t)c8[i] ^ u) * 16777619u;
    }
    t->check = check;
    return NULL;
}

static volatile uint32_t peak_sink; /* the threads' checksums end here, so the result tiles are used */

static bool peak_run(int n, double seconds, double *int8_macs, double *bf16_macs)
{
    peak_thread *th = calloc((size_t)n, sizeof *th);
    pthread_t *tid = calloc((size_t)n, sizeof *tid);
    peak_shared sh;
    bool ok = th && tid && pthread_barrier_init(&sh.bar, NULL, (unsigned)n) == 0;
    if (!ok) {
        free(th);
        free(tid);
        return false;
    }
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    sh.gate = 0;
    sh.half = seconds > 0 ? seconds / 2 : 0; /* 0 (or NaN): one chunk per phase */

    int made = 0;
    for (; made < n; made++) {
        th[made].sh = &sh;
        if (pthread_create(&tid[made], NULL, peak_worker, &th[made]) != 0) break;
    }
    ok = made == n;
    pthread_mutex_lock(&sh.mu);
    sh.gate = ok ? 1 : -1;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    for (int i = 0; i < made; i++) pthread_join(tid[i], NULL);

    if (ok) {
        double rate[2];
        for (int p = 0; p < 2; p++) {
            double t0 = ts_sec(&th[0].t0[p]), t1 = ts_sec(&th[0].t1[p]);
            double macs = 0;
            for (int i = 0; i < n; i++) {
                const double a = ts_sec(&th[i].t0[p]), b = ts_sec(&th[i].t1[p]);
                if (a < t0) t0 = a;
                if (b > t1) t1 = b;
                macs += p == 0 ? (double)th[i].n_int8 * PEAK_INT8_MACS : (double)th[i].n_bf16 * PEAK_BF16_MACS;
            }
            rate[p] = t1 > t0 ? macs / (t1 - t0) : 0;
        }
        uint32_t check = 0;
        for (int i = 0; i < n; i++) check ^= th[i].check;
        peak_sink = check;
        *int8_macs = rate[0];
        *bf16_macs = rate[1];
    }

    pthread_barrier_destroy(&sh.bar);
    pthread_cond_destroy(&sh.cv);
    pthread_mutex_destroy(&sh.mu);
    free(th);
    free(tid);
    return ok;
}

bool zl_amx_peak(int n_threads, double seconds, double *int8_macs, double *bf16_macs)
{
    double i8 = 0, b16 = 0;
    bool ok = false;
    if (zl_amx_available()) {
        long n = n_threads > 0 ? n_threads : sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
        ok = peak_run((int)n, seconds, &i8, &b16);
        if (!ok) i8 = b16 = 0;
    }
    if (int8_macs) *int8_macs = i8;
    if (bf16_macs) *bf16_macs = b16;
    return ok;
}
