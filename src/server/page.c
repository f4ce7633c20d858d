/*
 * page.c - the chat page at GET /. The document is src/server/page.html (HTML, CSS and JavaScript in one file, no
 * external resources); the Makefile turns its bytes into a C initializer list, $(BUILD)/server/page.html.inc, which
 * this file includes, so the page is part of the binary and is edited as a plain HTML file.
 */
#include "server/page.h"

const char zl_chat_page[] = {
#include "server/page.html.inc"
    0,
};
