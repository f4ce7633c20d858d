/*
 * page.h - the small chat page served at GET / (one self-contained HTML document).
 */
#ifndef ZL_PAGE_H
#define ZL_PAGE_H

extern const char zl_chat_page[];

#endif
