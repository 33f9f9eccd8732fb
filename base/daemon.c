#include "base/daemon.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/build_info.h"
#include "base/fileio.h"
#include "base/log.h"
#include "base/sd_notify.h"

extern char **environ;

struct daemon {
    const struct daemon_spec *spec;
    struct ev_loop *loop;
    const struct ztr_clock *clock;
    ev_signal sigterm, sigint, sighup;
    ev_timer watchdog;
    bool stopped;
    int exit_status;
};

void
daemon_stop(struct daemon *daemon, int exit_status)
{
    if (!daemon->stopped)
        daemon->exit_status = exit_status;
    daemon->stopped = true;
    ev_break(daemon->loop, EVBREAK_ALL);
}

struct ev_loop *
daemon_loop(const struct daemon *daemon)
{
    return daemon->loop;
}

const struct ztr_clock *
daemon_clock(const struct daemon *daemon)
{
    return daemon->clock;
}

/* A notification that cannot be sent is logged once: systemd then waits
 * for READY until its timeout, and the line says why. */
static void
notify(const char *state)
{
    static bool logged;
    if (sd_notify_send(state) == 0 || logged)
        return;
    logged = true;
    char text[128];
    log_warn("systemd notification failed", "error=\"%s\"", file_strerror(errno, text, sizeof(text)));
}

void
daemon_notify_ready(const char *status)
{
    char text[512];
    if (status != NULL)
        snprintf(text, sizeof(text), "READY=1\nSTATUS=%s", status);
    else
        snprintf(text, sizeof(text), "READY=1");
    notify(text);
}

void
daemon_notify_status(const char *status)
{
    char text[512];
    snprintf(text, sizeof(text), "STATUS=%s", status);
    notify(text);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct daemon *d = w->data;
    if (w->signum == SIGHUP) {
        if (d->spec->on_hup != NULL)
            d->spec->on_hup(d->spec->ctx, d);
        else
            log_info("SIGHUP ignored", NULL);
        return;
    }
    log_info(d->spec->msg_stopping, "signal=%d", w->signum);
    daemon_stop(d, DAEMON_EXIT_OK);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    /* The loop is alive: that is what systemd's watchdog asks. */
    notify("WATCHDOG=1");
}

static void
print_line(void *ctx, const char *line)
{
    fprintf(ctx, "%s\n", line);
}

/* Loads, fills and checks the configuration; 1 when --help was answered. */
static int
configure(struct daemon *d, int argc, char **argv, struct ztr_err *err)
{
    const struct daemon_spec *spec = d->spec;
    struct config *config = NULL;
    /* Hidden: for scripts/gen-docs.py; answered before any setting is read,
     * so a machine's environment cannot change or break it. */
    if (argc == 1 && strcmp(argv[0], "--print-schema") == 0) {
        config_print_schema(spec->schema, spec->schema_len, print_line, stdout);
        return 1;
    }
    TRY(config_load(spec->schema, spec->schema_len, environ, argc, argv, &config, err));
    /* First, so that even a configuration error below is written in it. */
    const char *format_name = config_get(config, "LOG_FORMAT");
    enum log_format format;
    if (format_name != NULL && log_format_from_name(format_name, &format) != 0) {
        int rc = config_fail(config, "LOG_FORMAT", err, "use logfmt or json");
        config_free(config);
        return rc;
    }
    if (format_name != NULL)
        log_set_format(format);
    if (config_help_requested(config)) {
        printf("%s\n\nflags (each also an environment variable and a YAML key):\n", spec->usage);
        config_print_help(spec->schema, spec->schema_len, print_line, stdout);
        config_free(config);
        return 1;
    }
    int rc = config_fill(config, spec->settings, err);
    if (rc == 0 && spec->configure != NULL)
        rc = spec->configure(spec->ctx, d, config, err);
    config_free(config);
    return rc;
}

static void
watch(struct daemon *d)
{
    ev_signal *signals[] = {&d->sigterm, &d->sigint, &d->sighup};
    int numbers[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        ev_signal_init(signals[i], signal_cb, numbers[i]);
        signals[i]->data = d;
        ev_signal_start(d->loop, signals[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    uint64_t watchdog_usec = 0;
    ev_timer_init(&d->watchdog, watchdog_cb, 0, 0);
    if (sd_notify_watchdog_usec(&watchdog_usec)) {
        d->watchdog.repeat = (double)watchdog_usec / 2e6;
        ev_timer_again(d->loop, &d->watchdog);
    }
}

static void
unwatch(struct daemon *d)
{
    ev_timer_stop(d->loop, &d->watchdog);
    ev_signal_stop(d->loop, &d->sigterm);
    ev_signal_stop(d->loop, &d->sigint);
    ev_signal_stop(d->loop, &d->sighup);
}

/* --version anywhere among the flags answers alone, before any
 * configuration is read: it must work on a host with none. */
static bool
version_requested(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--version") == 0)
            return true;
    return false;
}

int
daemon_run(const struct daemon_spec *spec, int argc, char **argv)
{
    if (version_requested(argc, argv)) {
        char line[256];
        build_info_line(spec->program != NULL ? spec->program : "ztr", line, sizeof(line));
        printf("%s\n", line);
        return DAEMON_EXIT_OK;
    }
    struct daemon d = {.spec = spec, .clock = clock_system()};
    struct ztr_err err = {0};
    log_set_journal_priority(log_stderr_is_journal());
    d.loop = ev_default_loop(EVFLAG_AUTO);
    int rc = configure(&d, argc, argv, &err);
    if (rc == 1)
        return DAEMON_EXIT_OK;
    int status = DAEMON_EXIT_CONFIG;
    if (rc == 0) {
        watch(&d);
        status = DAEMON_EXIT_RUNTIME;
        rc = spec->start(spec->ctx, &d, &status, &err);
    }
    if (rc != 0) {
        log_error(spec->msg_failed, "error=\"%s\"", err.msg);
        unwatch(&d);
        if (spec->stop != NULL)
            spec->stop(spec->ctx, false, status);
        config_wipe_secrets(spec->schema, spec->schema_len, spec->settings);
        log_clear_secrets();
        return status;
    }
    if (!d.stopped)
        ev_run(d.loop, 0);
    notify("STOPPING=1");
    unwatch(&d);
    status = spec->stop != NULL ? spec->stop(spec->ctx, true, d.exit_status) : d.exit_status;
    config_wipe_secrets(spec->schema, spec->schema_len, spec->settings);
    log_clear_secrets();
    return status;
}
