/* dump.c - see dump.h. */
#include "core/dump.h"

#include <stdio.h>
#include <stdlib.h>

static int g_state = -1; /* -1 unknown, 0 off, 1 on */
static const char *g_dir;
static int g_step = -1;

bool zl_dump_enabled(void)
{
    if (g_state < 0) {
        g_dir = getenv("ZILI_DUMP");
        g_state = g_dir && *g_dir ? 1 : 0;
    }
    return g_state == 1;
}

void zl_dump_step(void)
{
    if (zl_dump_enabled())
        g_step++;
}

void zl_dump(const char *name, int il, const float *x, int64_t rows, int64_t cols)
{
    if (!zl_dump_enabled() || rows <= 0 || cols <= 0)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%d-%s-%d.f32", g_dir, g_step < 0 ? 0 : g_step, name, il);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "zili: ZILI_DUMP: cannot write %s\n", path);
        return;
    }
    if (fwrite(x, sizeof(float), (size_t)(rows * cols), fp) != (size_t)(rows * cols))
        fprintf(stderr, "zili: ZILI_DUMP: short write to %s\n", path);
    fclose(fp);
}
