/* cors.h - --cors ORIGIN: the Access-Control headers that let a page from ORIGIN (or any, "*") call the API. */
#ifndef ZL_CORS_H
#define ZL_CORS_H

#include <microhttpd.h>

/* Adds Access-Control-Allow-Origin for origin (and Vary: Origin unless it is "*") to r. origin NULL: nothing. */
void zl_cors_headers(struct MHD_Response *r, const char *origin);
/* The answer to a preflight (OPTIONS with Access-Control-Request-Method): 204 with the allowed methods and headers
 * (Authorization, Content-Type) and how long a browser may keep them. origin must not be NULL. */
enum MHD_Result zl_cors_preflight(struct MHD_Connection *c, const char *origin);

#endif
