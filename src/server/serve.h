/*
 * serve.h - `zili serve`: the OpenAI-compatible HTTP server.
 */
#ifndef ZL_SERVE_H
#define ZL_SERVE_H

/* Runs the server with the command line of `zili serve ...` (argv[0] is "serve"). Returns the process exit
 * status: 0 after SIGTERM/SIGINT, 1 on a start-up failure, 2 on a usage error. */
int zl_serve_main(int argc, char **argv);

#endif
