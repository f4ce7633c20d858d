/*
 * pull.c - `zili pull`: one GGUF file over HTTP(S) into the model store (store.h), with libcurl.
 *
 * Steps (zl_store_pull):
 *   1. the name: --name, else the URL path's last segment without .gguf; a model of that name already stored is
 *      kept (nothing is downloaded);
 *   2. the expected SHA-256: --sha256, else the URL's "#sha256=HEX" suffix, else the sidecar URL.sha256 (the first
 *      64 hex digits of its body, as sha256sum writes it); a sidecar the server does not have (any 4xx) means no check;
 *   3. the download into DIR/NAME.part, appended to: a .part left by an earlier pull is resumed with a Range
 *      request (when the server answers it with the whole file, 200, or with 416, the .part is longer than the
 *      file, the .part is discarded and the download starts over). A transfer that ends early (cut connection, a body shorter
 *      than its Content-Length, a stall) is retried from where it stopped, at most PULL_ATTEMPTS times in all; the
 *      .part stays for a later pull if every attempt fails;
 *   4. the checks on the complete file: the size the server announced, the SHA-256, and the GGUF structure
 *      (gguf_open validates the header, every tensor's offset and size). A file that fails them is deleted (a
 *      resume could not mend it);
 *   5. rename(NAME.part, NAME.gguf): a stored model is always a complete, checked file.
 *
 * Only http:// and https:// are fetched (libcurl's protocol list is restricted, redirects included). The progress
 * bar is drawn on stderr only when the caller asks (zili pull: when stderr is a terminal).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "zili.h" /* ZILI_VERSION */
#include "format/gguf.h"
#include "store/store.h"

enum { PULL_ATTEMPTS = 3, SIDECAR_MAX = 4096 };

/* mkdir -p of the store's directory. */
static int make_dirs(const char *dir, char *err, size_t err_len)
{
    char p[4096];
    const size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p) {
        snprintf(err, err_len, "model store: bad directory '%.200s'", dir);
        return -1;
    }
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        const char c = p[i];
        p[i] = 0;
        struct stat st;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            const int e = errno; /* EACCES too for a directory that exists in one we may not write */
            if (!(stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
                snprintf(err, err_len, "model store: cannot create %s: %s", p, strerror(e));
                return -1;
            }
        }
        if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
            snprintf(err, err_len, "model store: %s is not a directory", p);
            return -1;
        }
        p[i] = c;
    }
    return 0;
}

static int hexval(int c) { return isdigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1; }

/* 64 hex digits at s into 32 bytes; the next character must not be a hex digit. */
static bool parse_sha256(const char *s, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        const int hi = hexval((unsigned char)s[2 * i]), lo = hi < 0 ? -1 : hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return hexval((unsigned char)s[64]) < 0;
}

static void hex32(const unsigned char d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The name a URL gives: the path's last segment (before any query), without ".gguf". */
static int name_from_url(const char *url, char *out, size_t cap, char *err, size_t err_len)
{
    const char *path = strstr(url, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    size_t len = 0;
    const char *seg = "";
    if (path) {
        const size_t plen = strcspn(path, "?#");
        seg = path;
        for (size_t i = 0; i < plen; i++)
            if (path[i] == '/')
                seg = path + i + 1;
        len = (size_t)(path + plen - seg);
    }
    if (len > 5 && !strncmp(seg + len - 5, ".gguf", 5))
        len -= 5;
    if (len == 0 || len >= cap) {
        snprintf(err, err_len, "pull: the URL names no file to call the model; give it a name with --name NAME");
        return -1;
    }
    memcpy(out, seg, len);
    out[len] = 0;
    if (!zl_store_valid_name(out)) {
        snprintf(err, err_len, "pull: '%.128s' (from the URL) is not a model name (1-128 of A-Z a-z 0-9 . _ -, "
                 "not starting with '.'); give one with --name NAME", out);
        return -1;
    }
    return 0;
}

/* ---- one transfer ----------------------------------------------------------------------------------------- */

typedef struct xfer {
    FILE *f;          /* the .part, appended to */
    const char *name; /* for the progress bar */
    bool progress;
    long code;        /* the response's status, once its head arrived */
    curl_off_t have;  /* bytes of the .part before this transfer */
    double t_last;
    char *mem;        /* sidecar: the body in memory instead of f */
    size_t n_mem;
    int werr;         /* errno of a failed write */
} xfer;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    const size_t k = size * n;
    if (x->mem) {
        const size_t take = x->n_mem + k > SIDECAR_MAX ? SIDECAR_MAX - x->n_mem : k;
        memcpy(x->mem + x->n_mem, p, take);
        x->n_mem += take;
        return k;
    }
    if (x->code < 200 || x->code >= 300) /* an error page (404, 416) never goes into the .part */
        return k;
    if (fwrite(p, 1, k, x->f) != k) {
        x->werr = errno ? errno : EIO;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    return k;
}

/* Called for each header line: keeps the status of the last status line (after redirects, the final one's). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    const size_t k = size * n;
    if (k > 9 && !strncmp(p, "HTTP/", 5)) {
        const char *sp = memchr(p, ' ', k);
        x->code = sp ? strtol(sp + 1, NULL, 10) : 0;
    }
    return k;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ultotal, (void)ulnow;
    xfer *x = ud;
    const double t = now_s();
    if (!x->progress || x->code < 200 || x->code >= 300 || (t - x->t_last < 0.1 && (dltotal == 0 || dlnow < dltotal)))
        return 0;
    x->t_last = t;
    const double mib = 1048576.0, done = (double)(x->have + dlnow), total = (double)(x->have + dltotal);
    char bar[31];
    const int fill = dltotal > 0 ? (int)(30.0 * done / total) : 0;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    if (dltotal > 0)
        fprintf(stderr, "\r%-24.24s [%s] %3d%% %8.1f / %.1f MiB", x->name, bar, (int)(100.0 * done / total),
                done / mib, total / mib);
    else
        fprintf(stderr, "\r%-24.24s %8.1f MiB", x->name, done / mib);
    fflush(stderr);
    return 0;
}

static CURL *make_curl(const char *url, xfer *x, long low_speed_s)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "zili/" ZILI_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, low_speed_s > 0 ? low_speed_s : 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    return c;
}

/* The sidecar URL.sha256: 1 with the digest, 0 when the server has none (404/410), -1 on any other answer. */
static int fetch_sidecar(const char *url, long low_speed_s, unsigned char out[32], char *err, size_t err_len)
{
    char side[8300];
    if (snprintf(side, sizeof side, "%s.sha256", url) >= (int)sizeof side) {
        snprintf(err, err_len, "pull: the URL is too long");
        return -1;
    }
    char body[SIDECAR_MAX + 1];
    xfer x = {.mem = body};
    CURL *c = make_curl(side, &x, low_speed_s);
    if (!c) {
        snprintf(err, err_len, "pull: cannot start libcurl");
        return -1;
    }
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "pull: %.300s: %s", side, curl_easy_strerror(rc));
        return -1;
    }
    if (code >= 400 && code < 500) /* 404, or 403 as some object stores answer for a missing file */
        return 0;
    body[x.n_mem] = 0;
    size_t i = 0;
    while (i < x.n_mem && isspace((unsigned char)body[i]))
        i++;
    if (code != 200 || x.n_mem - i < 64 || !parse_sha256(body + i, out)) {
        snprintf(err, err_len, "pull: %.300s: HTTP %ld, %s", side, code,
                 code == 200 ? "not a SHA-256 (64 hex digits first)" : "expected the digest or 404");
        return -1;
    }
    return 1;
}

/* SHA-256 of a file. */
static int file_sha256(const char *path, unsigned char out[32], char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "pull: %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    ok = ok && buf;
    size_t k;
    while (ok && (k = fread(buf, 1, CHUNK, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, k) == 1;
    free(buf);
    ok = ok && !ferror(f);
    unsigned int n = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok)
        snprintf(err, err_len, "pull: cannot compute the SHA-256 of %s", path);
    return ok ? 0 : -1;
}

/* One attempt: appends to part. Returns 0 when the server sent the whole rest, 1 when the transfer ended early
 * (worth retrying; the message in err), -1 on an error a retry cannot mend (HTTP 4xx/5xx, a write error).
 * *total is the complete file's size when the server said (else -1). */
static int attempt(const zl_pull_params *p, const char *url, const char *name, const char *part, curl_off_t *total,
                   char *err, size_t err_len)
{
    FILE *f = fopen(part, "ab");
    if (!f) {
        snprintf(err, err_len, "pull: cannot write %s: %s", part, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        snprintf(err, err_len, "pull: %s: %s", part, strerror(errno));
        fclose(f);
        return -1;
    }
    xfer x = {.f = f, .name = name, .progress = p->progress, .have = st.st_size};
    CURL *c = make_curl(url, &x, p->low_speed_s);
    if (!c) {
        fclose(f);
        snprintf(err, err_len, "pull: cannot start libcurl");
        return -1;
    }
    if (x.have > 0)
        curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, x.have);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_off_t cl = -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    curl_easy_cleanup(c);
    const int close_rc = fclose(f);
    if (p->progress)
        fputc('\n', stderr);
    if (x.werr || close_rc != 0) {
        snprintf(err, err_len, "pull: cannot write %s: %s", part, strerror(x.werr ? x.werr : errno));
        return -1;
    }
    /* 416: the .part is longer than the file; CURLE_RANGE_ERROR: the server answered the range request with the
     * whole file (200), which libcurl refuses to append. Either way the download starts over from byte 0. */
    if ((code == 416 || rc == CURLE_RANGE_ERROR) && x.have > 0) {
        if (unlink(part) != 0) {
            snprintf(err, err_len, "pull: %s: %s", part, strerror(errno));
            return -1;
        }
        snprintf(err, err_len, "pull: the server does not resume at byte %lld; starting over", (long long)x.have);
        return 1;
    }
    if (code != 0 && (code < 200 || code >= 300)) {
        snprintf(err, err_len, "pull: %.300s: HTTP %ld", url, code);
        return -1;
    }
    /* A 200 came for x.have == 0 only (libcurl refuses one to a range request); a 206 continues at x.have. */
    *total = cl >= 0 ? x.have + cl : -1;
    if (rc != CURLE_OK) {
        struct stat now;
        const long long got = stat(part, &now) == 0 ? (long long)now.st_size : -1;
        if (*total >= 0)
            snprintf(err, err_len, "pull: %.300s: %s after %lld of %lld bytes", url, curl_easy_strerror(rc), got,
                     (long long)*total);
        else
            snprintf(err, err_len, "pull: %.300s: %s after %lld bytes", url, curl_easy_strerror(rc), got);
        const bool transient = rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_OPERATION_TIMEDOUT ||
                               rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR || rc == CURLE_HTTP2_STREAM;
        return transient ? 1 : -1;
    }
    return 0;
}

/* Step 4 on the complete .part; on failure the .part is deleted. */
static int check_file(const char *part, const char *url, curl_off_t total, const unsigned char *sha, char *err,
                      size_t err_len)
{
    struct stat st;
    if (stat(part, &st) != 0) {
        snprintf(err, err_len, "pull: %s: %s", part, strerror(errno));
        return -1;
    }
    int rc = 0;
    if (total >= 0 && st.st_size != total) {
        snprintf(err, err_len, "pull: %.300s: received %lld bytes, the server announced %lld", url,
                 (long long)st.st_size, (long long)total);
        rc = -1;
    }
    unsigned char got[32];
    if (rc == 0 && sha) {
        if (file_sha256(part, got, err, err_len) != 0) {
            rc = -1;
        } else if (memcmp(got, sha, 32) != 0) {
            char want_hex[65], got_hex[65];
            hex32(sha, want_hex);
            hex32(got, got_hex);
            snprintf(err, err_len, "pull: %.200s: SHA-256 mismatch: expected %s, got %s", url, want_hex, got_hex);
            rc = -1;
        }
    }
    if (rc == 0) {
        char magic[4] = {0};
        FILE *f = fopen(part, "rb");
        const size_t k = f ? fread(magic, 1, 4, f) : 0;
        if (f)
            fclose(f);
        if (k < 4 || memcmp(magic, "GGUF", 4) != 0) {
            char shown[17] = "";
            for (size_t i = 0, at = 0; i < k; i++)
                at += (size_t)snprintf(shown + at, sizeof shown - at, isprint((unsigned char)magic[i]) ? "%c" : "\\x%02x",
                                       (unsigned char)magic[i]);
            snprintf(err, err_len, "pull: %.300s: not a GGUF file (it starts with \"%s\", not \"GGUF\")", url, shown);
            rc = -1;
        } else {
            gguf_file *g;
            zl_err e;
            if (gguf_open(part, NULL, &g, &e) != 0) {
                snprintf(err, err_len, "pull: %.200s: not a valid GGUF file: %s", url, e.msg);
                rc = -1;
            } else {
                gguf_close(g);
            }
        }
    }
    if (rc != 0)
        unlink(part);
    return rc;
}

int zl_store_pull(const zl_pull_params *p, char *out, size_t cap, bool *checked, char *err, size_t err_len)
{
    if (checked)
        *checked = false;
    if (!p->url || (strncmp(p->url, "http://", 7) && strncmp(p->url, "https://", 8))) {
        snprintf(err, err_len, "pull: '%.200s' is not an http:// or https:// URL (zili has no model registry: pull a "
                 "GGUF file's URL, with --name NAME to call it NAME)", p->url ? p->url : "");
        return -1;
    }
    /* The URL without its #sha256= suffix (any other fragment is dropped too: it never reaches the server). */
    char url[8192];
    const size_t ulen = strcspn(p->url, "#");
    if (ulen >= sizeof url) {
        snprintf(err, err_len, "pull: the URL is longer than %zu bytes", sizeof url - 1);
        return -1;
    }
    memcpy(url, p->url, ulen);
    url[ulen] = 0;
    unsigned char sha[32];
    bool have_sha = false;
    const char *frag = p->url[ulen] == '#' ? p->url + ulen + 1 : NULL;
    if (p->sha256) {
        if (strlen(p->sha256) != 64 || !parse_sha256(p->sha256, sha)) {
            snprintf(err, err_len, "pull: --sha256 '%.100s': expected 64 hex digits", p->sha256);
            return -1;
        }
        have_sha = true;
    } else if (frag) {
        if (strncmp(frag, "sha256=", 7) || strlen(frag + 7) != 64 || !parse_sha256(frag + 7, sha)) {
            snprintf(err, err_len, "pull: URL suffix '#%.100s': expected #sha256= and 64 hex digits", frag);
            return -1;
        }
        have_sha = true;
    }

    char name[160], dir[4096], final[4400], part[4400];
    if (p->name) {
        if (!zl_store_valid_name(p->name)) {
            snprintf(err, err_len, "pull: --name '%.200s': expected 1-128 of A-Z a-z 0-9 . _ -, not starting with '.'",
                     p->name);
            return -1;
        }
        snprintf(name, sizeof name, "%s", p->name);
    } else if (name_from_url(url, name, sizeof name, err, err_len) != 0) {
        return -1;
    }
    if (zl_store_dir(dir, sizeof dir, err, err_len) != 0)
        return -1;
    snprintf(final, sizeof final, "%s/%s.gguf", dir, name);
    snprintf(part, sizeof part, "%s/%s.part", dir, name);
    if (strlen(final) >= cap) {
        snprintf(err, err_len, "pull: the path %s is too long", final);
        return -1;
    }
    struct stat st;
    if (stat(final, &st) == 0) {
        memcpy(out, final, strlen(final) + 1);
        return 0;
    }
    if (make_dirs(dir, err, err_len) != 0)
        return -1;
    if (access(dir, W_OK) != 0) {
        snprintf(err, err_len, "model store: cannot write to %s: %s (set ZILI_MODELS to another directory)", dir,
                 strerror(errno));
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, err_len, "pull: cannot initialise libcurl");
        return -1;
    }
    int rc = 0;
    if (!have_sha) {
        const int s = fetch_sidecar(url, p->low_speed_s, sha, err, err_len);
        rc = s < 0 ? -1 : 0;
        have_sha = s > 0;
    }
    curl_off_t total = -1;
    for (int a = 0; rc == 0 && a < PULL_ATTEMPTS; a++) {
        const int r = attempt(p, url, name, part, &total, err, err_len);
        if (r <= 0) {
            rc = r;
            break;
        }
        rc = a + 1 < PULL_ATTEMPTS ? 0 : -1;
        if (rc == 0)
            fprintf(stderr, "zili: %s; resuming\n", err);
    }
    if (rc == 0 && check_file(part, url, total, have_sha ? sha : NULL, err, err_len) != 0)
        rc = -1;
    if (rc == 0 && rename(part, final) != 0) {
        snprintf(err, err_len, "pull: cannot rename %s to %s: %s", part, final, strerror(errno));
        rc = -1;
    }
    curl_global_cleanup();
    if (rc == 0) {
        memcpy(out, final, strlen(final) + 1);
        if (checked)
            *checked = have_sha;
    } else if (access(part, F_OK) == 0) {
        const size_t n = strlen(err);
        snprintf(err + n, err_len - n, " (%s kept: zili pull resumes it)", part);
    }
    return rc;
}
