/*
 * peer.h - is the client of a connection still there while its reply is computed (serve.c, ollama.c).
 *
 * Threads: called from the connection's own thread.
 */
#ifndef ZL_PEER_H
#define ZL_PEER_H

#include <microhttpd.h>
#include <stdbool.h>

/* Where the client is while its reply is being computed. */
typedef enum peer_state {
    PEER_HERE,     /* nothing new */
    PEER_EOF,      /* it has just been seen to have shut its sending side (first time): maybe a half-close */
    PEER_GONE,     /* the socket failed or was reset: nobody reads the reply */
} peer_state;

/* A client that shuts only its sending side after the request (SHUT_WR: `nc -N`, some HTTP/1.0 clients and
 * proxies) still reads the reply, and the end of file it leaves looks the same as a client that closed the socket.
 * So end of file is reported once as PEER_EOF, and the caller writes something (an interim "100 Continue", an SSE
 * comment): a peer that has closed altogether answers that with a reset, which the next polls see as PEER_GONE.
 * *eof_seen: the connection's flag, false at first. */
peer_state peer_poll(struct MHD_Connection *c, bool *eof_seen);

/* The probe of a non-streamed reply: "100 Continue" straight to the socket (RFC 9110 15.2: clients skip interim
 * responses before the final one; an HTTP/1.0 client must not get one, so it is not probed and only a reset or a
 * socket error counts as gone). Returns false when the write already fails. */
bool probe_whole(struct MHD_Connection *c, bool http10);

#endif
