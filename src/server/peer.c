/*
 * peer.c - the client's presence, polled on its socket while a reply is computed (peer.h).
 */
#include "server/peer.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

peer_state peer_poll(struct MHD_Connection *c, bool *eof_seen)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return PEER_GONE;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return PEER_HERE;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        return PEER_GONE;
    if (*eof_seen)
        return PEER_HERE;
    bool eof = (p.revents & POLLRDHUP) != 0;
    if (!eof && (p.revents & POLLIN)) {
        char b;
        eof = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    if (!eof)
        return PEER_HERE;
    *eof_seen = true;
    return PEER_EOF;
}

bool probe_whole(struct MHD_Connection *c, bool http10)
{
    if (http10)
        return true;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    static const char k_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const ssize_t n = send(ci->connect_fd, k_continue, sizeof k_continue - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK;
}
