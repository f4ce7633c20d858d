/*
 * embed.h - the `zili embed` command (src/cli/embed.c), over the public API only.
 */
#ifndef ZILI_CLI_EMBED_H
#define ZILI_CLI_EMBED_H

/* argv[0] is "embed". Returns the process exit status: 0, 2 for a usage error, 1 for anything else. */
int zili_cli_embed(int argc, char **argv);

#endif
