/*
 * cors.c - cross-origin requests (--cors ORIGIN): a browser page from ORIGIN may call the API.
 *
 * Every reply carries Access-Control-Allow-Origin: ORIGIN. A browser asks before a request that is not "simple"
 * (a POST of JSON, one with Authorization) with a preflight OPTIONS; it is answered 204 with the methods the
 * routes take and the headers the API reads. The preflight needs no API key: browsers send it without one
 * (the request that follows still needs it). Without --cors none of this is sent and OPTIONS is an unknown method.
 */
#include "server/cors.h"

#include <string.h>

void zl_cors_headers(struct MHD_Response *r, const char *origin)
{
    if (!origin)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    if (strcmp(origin, "*")) /* the answer depends on the request's Origin: caches must keep them apart */
        MHD_add_response_header(r, "Vary", "Origin");
}

enum MHD_Result zl_cors_preflight(struct MHD_Connection *c, const char *origin)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    zl_cors_headers(r, origin);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    MHD_add_response_header(r, "Connection", "close");
    const enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}
