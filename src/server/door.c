/*
 * door.c - the front door of zili serve (see door.h): request-head checks, per-address and global connection
 * limits, head deadlines, and the hand-over of sound connections to the HTTP library.
 *
 * A connection at the door is in one of two states:
 *   WAITING  accepted, its head not yet complete. Each new byte (epoll, edge-triggered) makes the door peek at
 *            everything that has arrived; a complete head is checked and either handed over (the entry leaves) or
 *            answered with an error (CLOSING). The deadline is head_timeout after the accept; bytes do not extend it.
 *   CLOSING  an error reply written and the write side shut: the door reads and drops whatever the client still
 *            sends for up to LINGER_S, then closes. (Closing a socket with unread bytes sends a reset, which can
 *            destroy the reply before the client has read it.)
 * Counts: `waiting` entries are the door thread's; `active` (connections the library holds) and the per-address
 * table are shared with the library's threads under d->mu.
 */
#include "server/door.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LINGER_S 2.0

/* ------------------------------------------------------------------------------------------------------------ */
/* Request heads */

size_t zl_http_head_len(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    for (; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < n && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *p, size_t n, const char *name)
{
    if (strlen(name) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)p[i], b = (unsigned char)name[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

static zl_head_verdict refuse(int status, const char *reason)
{
    return (zl_head_verdict){status, reason};
}

zl_head_verdict zl_http_check_head(const char *head, size_t len, uint64_t max_body)
{
    size_t i = 0;
    while (i < len && (head[i] == '\r' || head[i] == '\n'))
        i++;
    /* The request line: METHOD SP TARGET SP HTTP/x.y */
    const char *line = head + i;
    const char *nl = memchr(line, '\n', len - i);
    if (!nl)
        return refuse(400, "the request head does not end");
    size_t ll = (size_t)(nl - line);
    if (ll && line[ll - 1] == '\r')
        ll--;
    size_t k = 0;
    while (k < ll && is_tchar((unsigned char)line[k]))
        k++;
    if (k == 0 || k == ll || line[k] != ' ')
        return refuse(400, "malformed request line");
    size_t t0 = ++k;
    while (k < ll && (unsigned char)line[k] > ' ' && line[k] != 0x7f)
        k++;
    if (k == t0 || k == ll || line[k] != ' ')
        return refuse(400, "malformed request line");
    const char *ver = line + k + 1;
    const size_t vl = ll - k - 1;
    if (vl != 8 || memcmp(ver, "HTTP/", 5) || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' || ver[7] < '0' ||
        ver[7] > '9')
        return refuse(400, "malformed request line");
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1'))
        return refuse(505, "only HTTP/1.0 and HTTP/1.1 are served");
    const bool http10 = ver[7] == '0';

    /* Header lines up to the blank one. */
    int n_cl = 0, n_te = 0;
    bool te_chunked = false, cl_bad = false;
    uint64_t cl = 0;
    i = (size_t)(nl - head) + 1;
    for (;;) {
        if (i >= len)
            return refuse(400, "the request head does not end");
        const char *h = head + i;
        const char *e = memchr(h, '\n', len - i);
        if (!e)
            return refuse(400, "the request head does not end");
        size_t hl = (size_t)(e - h);
        i += hl + 1;
        if (hl && h[hl - 1] == '\r')
            hl--;
        if (hl == 0)
            break;
        if (h[0] == ' ' || h[0] == '\t')
            return refuse(400, "folded header lines are not accepted");
        size_t c = 0;
        while (c < hl && is_tchar((unsigned char)h[c]))
            c++;
        if (c == 0 || c == hl || h[c] != ':')
            return refuse(400, "malformed header line (a name of token characters, then a colon)");
        for (size_t j = c + 1; j < hl; j++) {
            const unsigned char b = (unsigned char)h[j];
            if ((b < ' ' && b != '\t') || b == 0x7f)
                return refuse(400, "a control character in a header value");
        }
        const char *v = h + c + 1;
        size_t vn = hl - c - 1;
        while (vn && (*v == ' ' || *v == '\t'))
            v++, vn--;
        if (name_is(h, c, "Content-Length")) {
            n_cl++;
            cl_bad |= vn == 0;
            uint64_t x = 0; /* saturates: more digits than fit are more than any max_body */
            for (size_t j = 0; j < vn; j++) {
                if (v[j] < '0' || v[j] > '9') {
                    cl_bad = true;
                    break;
                }
                x = x > (UINT64_MAX - 9) / 10 ? UINT64_MAX : x * 10 + (uint64_t)(v[j] - '0');
            }
            cl = x;
        } else if (name_is(h, c, "Transfer-Encoding")) {
            n_te++;
            te_chunked = vn == 7 && name_is(v, vn, "chunked");
        }
    }
    if (n_te && http10)
        return refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (n_te && n_cl)
        return refuse(400, "both Content-Length and Transfer-Encoding");
    if (n_te > 1 || (n_te && !te_chunked))
        return refuse(501, "the only Transfer-Encoding served is chunked");
    if (n_cl > 1)
        return refuse(400, "more than one Content-Length");
    if (n_cl && cl_bad)
        return refuse(400, "Content-Length is not a number of bytes");
    if (n_cl && cl > max_body)
        return refuse(413, "the request body is larger than the server accepts (--max-body)");
    return (zl_head_verdict){0, NULL};
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The door */

enum { ST_WAITING = 0, ST_CLOSING = 1 };

/* A client address as the per-address counts know it: IPv6's 16 bytes, IPv4 as its mapped form ::ffff:a.b.c.d
 * (so a dual-stack socket's IPv4 clients count as themselves). */
typedef struct ip_key {
    unsigned char b[16];
} ip_key;

typedef struct waiter {
    int fd, state;
    ip_key ip;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    double since, deadline;
} waiter;

typedef struct ip_count {
    ip_key ip;
    int waiting, active;
} ip_count;

struct zl_door {
    zl_door_params p;
    zl_door_hand_over hand_over;
    void *ctx;
    int lfd, efd;
    pthread_t thread;
    atomic_bool stop;
    bool stopped; /* zl_door_stop has run (the starting thread's) */
    char *peek; /* p.max_head bytes, the door thread's */
    waiter *w;  /* the door thread's */
    int nw, cap_w;
    pthread_mutex_t mu; /* guards everything below */
    ip_count *ips;
    int nips, cap_ips;
    int active;
    zl_door_stats st;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The entry for ip, created with zero counts when create is set (NULL when absent, or out of memory). */
static ip_count *ip_find(zl_door *d, ip_key ip, bool create)
{
    for (int i = 0; i < d->nips; i++)
        if (!memcmp(d->ips[i].ip.b, ip.b, sizeof ip.b))
            return &d->ips[i];
    if (!create)
        return NULL;
    if (d->nips == d->cap_ips) {
        const int cap = d->cap_ips ? 2 * d->cap_ips : 64;
        ip_count *n = realloc(d->ips, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        d->ips = n;
        d->cap_ips = cap;
    }
    d->ips[d->nips] = (ip_count){ip, 0, 0};
    return &d->ips[d->nips++];
}

/* Drops the entry once nothing from its address is left. Under mu. */
static void ip_tidy(zl_door *d, ip_count *c)
{
    if (c->waiting || c->active)
        return;
    *c = d->ips[--d->nips];
}

/* The key of addr; all zeros for NULL or another family. */
static ip_key addr_ip(const struct sockaddr *a)
{
    ip_key k = {{0}};
    if (a && a->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, a, sizeof in);
        k.b[10] = k.b[11] = 0xff;
        memcpy(k.b + 12, &in.sin_addr, 4);
    } else if (a && a->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, a, sizeof in6);
        memcpy(k.b, &in6.sin6_addr, 16);
    }
    return k;
}

void zl_door_active_add(zl_door *d, const struct sockaddr *addr)
{
    pthread_mutex_lock(&d->mu);
    d->active++;
    ip_count *c = ip_find(d, addr_ip(addr), true);
    if (c)
        c->active++;
    pthread_mutex_unlock(&d->mu);
}

void zl_door_active_remove(zl_door *d, const struct sockaddr *addr)
{
    pthread_mutex_lock(&d->mu);
    if (d->active > 0)
        d->active--;
    ip_count *c = ip_find(d, addr_ip(addr), false);
    if (c && c->active > 0) {
        c->active--;
        ip_tidy(d, c);
    }
    pthread_mutex_unlock(&d->mu);
}

zl_door_stats zl_door_get_stats(zl_door *d)
{
    pthread_mutex_lock(&d->mu);
    zl_door_stats s = d->st;
    s.waiting = d->nw;
    s.active = d->active;
    pthread_mutex_unlock(&d->mu);
    return s;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Writes a whole error reply (OpenAI's error shape; reason has no characters JSON would escape), non-blocking:
 * a few hundred bytes into a fresh socket's buffer. */
static void write_reply(int fd, int status, const char *reason)
{
    char body[384], msg[768];
    const char *type = status == 429 || status == 503 ? "server_busy" : "invalid_request_error";
    const int bn = snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,"
                            "\"code\":null}}", reason, type);
    const int n = snprintf(msg, sizeof msg, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                           "%d\r\nConnection: close\r\n%s\r\n%s", status, status_text(status), bn,
                           status == 429 || status == 503 ? "Retry-After: 1\r\n" : "", body);
    if (n > 0 && (size_t)n < sizeof msg) {
        const ssize_t w = send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w; /* a client that cannot take it is closed all the same */
    }
}

/* Entry i no longer counts as waiting for its address. Under mu. */
static void stop_waiting(zl_door *d, int i)
{
    ip_count *c = ip_find(d, d->w[i].ip, false);
    if (c && c->waiting > 0) {
        c->waiting--;
        ip_tidy(d, c);
    }
}

static void drop_at(zl_door *d, int i)
{
    pthread_mutex_lock(&d->mu);
    if (d->w[i].state == ST_WAITING)
        stop_waiting(d, i);
    d->w[i] = d->w[--d->nw];
    pthread_mutex_unlock(&d->mu);
}

static void close_at(zl_door *d, int i)
{
    epoll_ctl(d->efd, EPOLL_CTL_DEL, d->w[i].fd, NULL);
    close(d->w[i].fd);
    drop_at(d, i);
}

/* Answers entry i with an error and moves it to CLOSING (its address no longer counts as waiting). */
static void refuse_at(zl_door *d, int i, int status, const char *reason, double now)
{
    write_reply(d->w[i].fd, status, reason);
    shutdown(d->w[i].fd, SHUT_WR);
    pthread_mutex_lock(&d->mu);
    stop_waiting(d, i);
    d->w[i].state = ST_CLOSING;
    d->w[i].deadline = now + LINGER_S;
    pthread_mutex_unlock(&d->mu);
}

static int find_fd(const zl_door *d, int fd)
{
    for (int i = 0; i < d->nw; i++)
        if (d->w[i].fd == fd)
            return i;
    return -1;
}

/* New bytes (or a hang-up) on entry i. */
static void on_event(zl_door *d, int i, uint32_t events, double now)
{
    waiter *w = &d->w[i];
    if (w->state == ST_CLOSING) {
        char trash[4096];
        for (;;) {
            const ssize_t n = recv(w->fd, trash, sizeof trash, MSG_DONTWAIT);
            if (n > 0)
                continue;
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                close_at(d, i);
            return;
        }
    }
    const ssize_t n = recv(w->fd, d->peek, d->p.max_head, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_at(d, i);
        return;
    }
    if (n < 0)
        return;
    const size_t hl = zl_http_head_len(d->peek, (size_t)n);
    if (!hl) {
        if ((size_t)n >= d->p.max_head) {
            pthread_mutex_lock(&d->mu);
            d->st.bad_heads++;
            pthread_mutex_unlock(&d->mu);
            refuse_at(d, i, 431, "the request head is too large", now);
        } else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            close_at(d, i); /* the head can no longer complete */
        }
        return;
    }
    const zl_head_verdict v = zl_http_check_head(d->peek, hl, d->p.max_body);
    if (v.status) {
        pthread_mutex_lock(&d->mu);
        d->st.bad_heads++;
        pthread_mutex_unlock(&d->mu);
        refuse_at(d, i, v.status, v.reason, now);
        return;
    }
    const int fd = w->fd;
    const struct sockaddr_storage addr = w->addr;
    const socklen_t addr_len = w->addr_len;
    epoll_ctl(d->efd, EPOLL_CTL_DEL, fd, NULL);
    drop_at(d, i);
    d->hand_over(d->ctx, fd, (const struct sockaddr *)&addr, addr_len);
}

/* A refused connection gets its reply and is closed at once: it holds no slot. What it has sent so far is read
 * first, so that the close is a FIN rather than a reset that could destroy the reply. */
static void refuse_fd(int fd, int status, const char *reason)
{
    write_reply(fd, status, reason);
    shutdown(fd, SHUT_WR);
    char trash[4096];
    for (int k = 0; k < 16 && recv(fd, trash, sizeof trash, MSG_DONTWAIT) > 0; k++)
        ;
    close(fd);
}

static void on_accept(zl_door *d, double now)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t al = sizeof addr;
        const int fd = accept4(d->lfd, (struct sockaddr *)&addr, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient failure (EMFILE, ECONNABORTED): the next event retries */
        const ip_key ip = addr_ip((const struct sockaddr *)&addr);
        /* Entries of the address table move (realloc, removal) under the library's threads: never keep one across
         * an unlock. */
        pthread_mutex_lock(&d->mu);
        ip_count *c = ip_find(d, ip, true);
        if (!c || (d->p.max_per_ip > 0 && c->waiting + c->active >= d->p.max_per_ip)) {
            d->st.refused_ip++;
            if (c)
                ip_tidy(d, c);
            pthread_mutex_unlock(&d->mu);
            refuse_fd(fd, 429, "too many connections from this address (--max-conns-per-ip)");
            continue;
        }
        ip_tidy(d, c);
        bool full = d->nw + d->active >= d->p.max_conns;
        pthread_mutex_unlock(&d->mu);
        if (full) {
            /* Shed the connection that has waited longest for its head (or lingers after a refusal). */
            int oldest = -1;
            for (int k = 0; k < d->nw; k++)
                if (oldest < 0 || d->w[k].since < d->w[oldest].since)
                    oldest = k;
            if (oldest >= 0) {
                close_at(d, oldest);
                pthread_mutex_lock(&d->mu);
                d->st.shed++;
                pthread_mutex_unlock(&d->mu);
                full = false;
            }
        }
        pthread_mutex_lock(&d->mu);
        c = full || d->nw == d->cap_w ? NULL : ip_find(d, ip, true);
        if (!c) {
            d->st.refused_full++;
            pthread_mutex_unlock(&d->mu);
            refuse_fd(fd, 503, "the server is at its connection limit");
            continue;
        }
        c->waiting++;
        d->w[d->nw] = (waiter){fd, ST_WAITING, ip, addr, al, now, now + d->p.head_timeout};
        const int i = d->nw++;
        pthread_mutex_unlock(&d->mu);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (epoll_ctl(d->efd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            drop_at(d, i);
            continue;
        }
        /* Edge-triggered: bytes that arrived with the connection are reported by the ADD itself. */
    }
}

static void *door_main(void *arg)
{
    zl_door *d = arg;
    struct epoll_event ev[64];
    while (!atomic_load(&d->stop)) {
        const int n = epoll_wait(d->efd, ev, 64, 100);
        const double now = now_s();
        for (int k = 0; k < n; k++) {
            if (ev[k].data.fd == d->lfd) {
                on_accept(d, now);
                continue;
            }
            const int i = find_fd(d, ev[k].data.fd);
            if (i >= 0)
                on_event(d, i, ev[k].events, now);
        }
        for (int i = 0; i < d->nw;) {
            if (d->w[i].deadline > now) {
                i++;
                continue;
            }
            if (d->w[i].state == ST_WAITING) {
                pthread_mutex_lock(&d->mu);
                d->st.head_timeouts++;
                pthread_mutex_unlock(&d->mu);
                refuse_at(d, i, 408, "the request head did not arrive in time", now);
                i++;
            } else {
                close_at(d, i); /* the entry at i is now another one: look at i again */
            }
        }
    }
    return NULL;
}

int zl_door_start(int listen_fd, const zl_door_params *p, zl_door_hand_over hand_over, void *ctx, zl_door **out,
                  zl_err *err)
{
    *out = NULL;
    if (p->max_conns < 1 || p->max_head < 64)
        return zl_err_set(err, ZL_EINVAL, "door: bad limits");
    zl_door *d = calloc(1, sizeof *d);
    if (!d)
        return zl_err_set(err, ZL_ENOMEM, "door: out of memory");
    d->p = *p;
    d->hand_over = hand_over;
    d->ctx = ctx;
    d->lfd = listen_fd;
    d->cap_w = p->max_conns;
    d->w = calloc((size_t)d->cap_w, sizeof *d->w);
    d->peek = malloc(p->max_head);
    d->efd = epoll_create1(EPOLL_CLOEXEC);
    pthread_mutex_init(&d->mu, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    if (!d->w || !d->peek || d->efd < 0 || epoll_ctl(d->efd, EPOLL_CTL_ADD, listen_fd, &ev) != 0 ||
        pthread_create(&d->thread, NULL, door_main, d) != 0) {
        const int e = errno;
        if (d->efd >= 0)
            close(d->efd);
        pthread_mutex_destroy(&d->mu);
        free(d->w);
        free(d->peek);
        free(d);
        return zl_err_set(err, ZL_ENOMEM, "door: cannot start: %s", strerror(e));
    }
    *out = d;
    return ZL_OK;
}

void zl_door_stop(zl_door *d)
{
    if (!d || d->stopped)
        return;
    d->stopped = true;
    atomic_store(&d->stop, true);
    pthread_join(d->thread, NULL);
    close(d->lfd);
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->nw; i++)
        close(d->w[i].fd);
    d->nw = 0;
    pthread_mutex_unlock(&d->mu);
    close(d->efd);
}

void zl_door_free(zl_door *d)
{
    if (!d)
        return;
    zl_door_stop(d);
    pthread_mutex_destroy(&d->mu);
    free(d->ips);
    free(d->w);
    free(d->peek);
    free(d);
}
