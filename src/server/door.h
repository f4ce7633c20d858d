/*
 * door.h - the server's front door: every TCP connection waits here until its request head has arrived in full
 * and its framing is known to be sound, and only then is handed to the HTTP library (libmicrohttpd).
 *
 * Why it exists. libmicrohttpd 0.9.75 (Debian 12) gives an application nothing before a request's headers are
 * complete, resets its idle timeout on every byte, spends one thread per connection, and frames some hostile
 * requests its own way (an unknown Transfer-Encoding is read until the peer closes; a malformed Content-Length gets
 * its status line and headers written twice). So zili owns the listening socket: one door thread accepts, keeps
 * waiting connections in an epoll set, peeks (MSG_PEEK, nothing consumed) at what has arrived, and
 *
 *   - closes a connection whose head has not arrived within head_timeout seconds of its accept (slow heads);
 *   - answers 431 to a head longer than max_head, 400 / 501 / 505 / 413 to a head zl_http_check_head refuses, each
 *     with "Connection: close", and closes it;
 *   - refuses with 429 a connection from an address that already holds max_per_ip (waiting here or in the library);
 *   - at max_conns connections in all, sheds the waiting connection that has waited longest to make room, or
 *     answers 503 when none waits;
 *   - hands every other connection to the library (hand_over), its bytes still unread in the socket.
 *
 * The library sees only requests whose head passed; zili answers each with "Connection: close" so that no second
 * request on the same connection reaches the library unchecked.
 *
 * Threads: the door thread owns the waiting connections. zl_door_active_add / _remove are called from the
 * library's threads (its connection-start and connection-closed notifications) and, like zl_door_get_stats, take
 * the door's mutex. zl_door_stop and zl_door_free are called from the thread that started it.
 */
#ifndef ZL_DOOR_H
#define ZL_DOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/err.h"

/* The verdict on a request head. */
typedef struct zl_head_verdict {
    int status;         /* 0: sound; else the HTTP status to answer with (400, 413, 501, 505) */
    const char *reason; /* static text for the error body, when status != 0 */
} zl_head_verdict;

/* Checks the framing of one request head: head[0..len) holds everything up to and including the blank line that
 * ends it (any bytes; nothing past len is read). Refused: a request line that is not METHOD SP TARGET SP
 * HTTP/1.x (400; 505 for another version); a header line without a colon, with whitespace before its colon, with a
 * control byte, or folded onto the previous line (400); more than one Content-Length, or one that is not digits
 * (400); Content-Length together with Transfer-Encoding, or Transfer-Encoding in an HTTP/1.0 request (400); more
 * than one Transfer-Encoding, or one that is not exactly "chunked" (501: RFC 9112 6.1, and the library frames no
 * other); a Content-Length above max_body (413, decided here, before any "100 Continue"). */
zl_head_verdict zl_http_check_head(const char *head, size_t len, uint64_t max_body);

/* The length of the head at the start of buf[0..n): up to and including the first CRLF CRLF (a bare LF LF ends it
 * too), or 0 when it has not arrived yet. Leading CRLFs before the request line are part of it (RFC 9112 2.2). */
size_t zl_http_head_len(const char *buf, size_t n);

typedef struct zl_door_params {
    int max_conns;       /* connections in all, waiting here and in the library */
    int max_per_ip;      /* per client address, in all; 0: no limit */
    double head_timeout; /* seconds from accept until the head is complete */
    size_t max_head;     /* bytes of a request head */
    uint64_t max_body;   /* a Content-Length above this is 413 */
} zl_door_params;

/* Gives a connection whose head passed to the library; the callee owns fd from then on (closes it on failure). */
typedef void (*zl_door_hand_over)(void *ctx, int fd, const struct sockaddr *addr, socklen_t addr_len);

typedef struct zl_door zl_door;

/* Starts the door thread on listen_fd (bound, listening; the door closes it in zl_door_stop). */
int zl_door_start(int listen_fd, const zl_door_params *p, zl_door_hand_over hand_over, void *ctx, zl_door **out,
                  zl_err *err);
/* The library started / closed a connection from addr (IPv4 or IPv6): counted against max_conns and max_per_ip. */
void zl_door_active_add(zl_door *d, const struct sockaddr *addr);
void zl_door_active_remove(zl_door *d, const struct sockaddr *addr);
/* Connections waiting at the door, and in the library; and those refused, shed or timed out so far. */
typedef struct zl_door_stats {
    int waiting, active;
    uint64_t refused_ip, refused_full, shed, head_timeouts, bad_heads;
} zl_door_stats;
zl_door_stats zl_door_get_stats(zl_door *d);
/* Stops accepting: joins the thread, closes the listening socket and every waiting connection. The counts stay
 * usable (the library's closing notifications still arrive) until zl_door_free. */
void zl_door_stop(zl_door *d);
/* Frees d (stopped first if it was not); after the library has stopped. NULL is ignored. */
void zl_door_free(zl_door *d);

#endif
