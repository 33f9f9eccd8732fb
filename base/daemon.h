/*
 * The one process skeleton every daemon (controller, connector, tunneler)
 * runs in, so the three cannot drift apart again:
 *
 *   configuration  config_load + --help (the same text for every daemon),
 *                  LOG_FORMAT (logfmt or json) applied before anything is logged,
 *                  --version (base/build_info.h),
 *                  config_fill into the daemon's typed settings; a lone
 *                  --print-schema prints the schema for the docs generator
 *   signals        SIGTERM / SIGINT stop cleanly (exit 0 unless the daemon
 *                  already chose a status); SIGHUP calls the daemon's
 *                  on_hup (never the default action, which kills); SIGPIPE
 *                  is ignored (a peer that went away is an I/O error)
 *   systemd        READY / STATUS (daemon_notify_ready, daemon_notify_status),
 *                  STOPPING=1 when the loop ends, WATCHDOG=1 at half of
 *                  WATCHDOG_USEC while the loop turns
 *   exit statuses  0 ok, 1 runtime failure, 2 configuration error (systemd's
 *                  RestartPreventExitStatus=2: it will not fix itself);
 *                  daemons add their own above these (agents: 3, 4)
 *
 * One libev default loop, one thread, the system clock.
 */
#ifndef ZTR_BASE_DAEMON_H
#define ZTR_BASE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"

enum daemon_exit {
    DAEMON_EXIT_OK = 0,
    DAEMON_EXIT_RUNTIME = 1,
    DAEMON_EXIT_CONFIG = 2,
};

struct daemon;
struct ev_loop;

struct daemon_spec {
    /* The binary's name, first on the --version line ("controller"). */
    const char *program;
    /* The --help text before the flags, e.g. "usage: tunneler [--config FILE] [flags]". */
    const char *usage;
    /* The log line for a failed start ("controller failed to start"); its
     * key is error="...". */
    const char *msg_failed;
    /* The log line for SIGTERM / SIGINT ("controller stopping"); key signal=N. */
    const char *msg_stopping;
    const struct config_key *schema;
    size_t schema_len;
    /* The struct schema's offsets point into; config_fill() writes it
     * before configure. Secret fields are wiped when the daemon ends. */
    void *settings;
    /* Checks the settings (config: for error origins; freed after this
     * returns) and prepares what start needs. -1 with err: exit 2. */
    int (*configure)(void *ctx, struct daemon *daemon, const struct config *config,
                     struct ztr_err *err);
    /* Opens listeners and starts work on the loop. -1 with err: *exit_status
     * (preset to DAEMON_EXIT_RUNTIME) is the process's. May call daemon_stop
     * to end before the loop runs. */
    int (*start)(void *ctx, struct daemon *daemon, int *exit_status, struct ztr_err *err);
    /* SIGHUP; may be NULL (the signal is then logged and ignored). */
    void (*on_hup)(void *ctx, struct daemon *daemon);
    /* Releases everything configure and start made (also after either
     * failed; started says whether start succeeded) and returns the exit
     * status: exit_status is the skeleton's (a signal's 0, or daemon_stop's). */
    int (*stop)(void *ctx, bool started, int exit_status);
    void *ctx;
};

/* Runs the daemon until a signal or daemon_stop(); returns the process's
 * exit status. argv holds only flags (no program name, no subcommand). */
int daemon_run(const struct daemon_spec *spec, int argc, char **argv);

/* Ends the loop with exit_status (the first call's status wins). */
void daemon_stop(struct daemon *daemon, int exit_status);

struct ev_loop *daemon_loop(const struct daemon *daemon);
const struct ztr_clock *daemon_clock(const struct daemon *daemon);

/* systemd notifications (no-ops outside systemd): READY=1 with a STATUS,
 * and a STATUS alone. */
void daemon_notify_ready(const char *status);
void daemon_notify_status(const char *status);

#endif
