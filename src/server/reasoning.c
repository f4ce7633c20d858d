/*
 * reasoning.c - the "<think>" splitter of reasoning.h: a three-state machine over the reply's bytes.
 *
 *   THINK_START  nothing but whitespace so far: whitespace is held, "<think>" enters THINK_IN (the held whitespace
 *                dropped), anything else makes the whole reply content (THINK_AFTER without dropping).
 *   THINK_IN     reasoning until "</think>", then THINK_AFTER with leading whitespace dropped.
 *   THINK_AFTER  content.
 * A tag may arrive split over feeds: the bytes that are a proper prefix of the awaited tag wait in hold.
 */
#include "server/reasoning.h"

#include <string.h>

enum { THINK_START = 0, THINK_IN = 1, THINK_AFTER = 2 };

static const char k_open[] = "<think>", k_close[] = "</think>";

void oai_think_init(oai_think *t, bool start_inside)
{
    memset(t, 0, sizeof *t);
    t->state = start_inside ? THINK_IN : THINK_START;
}

static void put_reasoning(oai_think_out *o, const char *s, size_t n)
{
    memcpy(o->reasoning + o->n_reasoning, s, n);
    o->n_reasoning += n;
}

static void put_content(oai_think *t, oai_think_out *o, const char *s, size_t n)
{
    if (t->skip_ws) {
        while (n && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
            s++, n--;
        if (n)
            t->skip_ws = false;
    }
    memcpy(o->content + o->n_content, s, n);
    o->n_content += n;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* One byte. The held bytes and c are either still a prefix of what is awaited, or settled. */
static void step(oai_think *t, char c, oai_think_out *o)
{
    if (t->state == THINK_START) {
        /* hold: whitespace, then a prefix of "<think>" */
        size_t ws = 0;
        while (ws < t->n_hold && is_ws(t->hold[ws]))
            ws++;
        const size_t tag = t->n_hold - ws;
        if (tag == 0 && is_ws(c) && t->n_hold < 8) {
            t->hold[t->n_hold++] = c;
            return;
        }
        if (c == k_open[tag]) {
            if (tag + 1 == sizeof k_open - 1) {
                t->state = THINK_IN;
                t->n_hold = 0;
            } else {
                t->hold[t->n_hold++] = c;
            }
            return;
        }
        t->state = THINK_AFTER; /* no reasoning block: all of it is content, as written */
        put_content(t, o, t->hold, t->n_hold);
        t->n_hold = 0;
        put_content(t, o, &c, 1);
        return;
    }
    if (t->state == THINK_IN) {
        if (c == k_close[t->n_hold]) {
            t->hold[t->n_hold++] = c;
            if (t->n_hold == sizeof k_close - 1) {
                t->state = THINK_AFTER;
                t->skip_ws = true;
                t->n_hold = 0;
            }
            return;
        }
        /* not the tag after all: the first held byte is reasoning; the rest may start the tag again */
        char buf[16];
        size_t n = t->n_hold;
        memcpy(buf, t->hold, n);
        buf[n++] = c;
        t->n_hold = 0;
        put_reasoning(o, buf, 1);
        for (size_t i = 1; i < n; i++)
            step(t, buf[i], o);
        return;
    }
    put_content(t, o, &c, 1);
}

void oai_think_feed(oai_think *t, const char *s, size_t n, bool final, oai_think_out *out)
{
    out->n_reasoning = out->n_content = 0;
    for (size_t i = 0; i < n; i++)
        step(t, s[i], out);
    if (final && t->n_hold) {
        if (t->state == THINK_IN)
            put_reasoning(out, t->hold, t->n_hold);
        else
            put_content(t, out, t->hold, t->n_hold);
        t->n_hold = 0;
    }
}
