/*
 * systemd's notification protocol (sd_notify(3)), written out: one
 * datagram with "READY=1", "STATUS=...", "WATCHDOG=1" or "STOPPING=1" to
 * the AF_UNIX socket $NOTIFY_SOCKET names (a path, or "@name" in the
 * abstract namespace).
 *
 * Why not libsystemd: these two calls were all ztr used of it, and linking
 * it maps libsystemd and the compression and crypto libraries it needs
 * (about 1 MiB resident in every agent) for one sendto(). The protocol is
 * stable and documented for exactly this (systemd's "notify-standalone").
 */
#ifndef ZTR_BASE_SD_NOTIFY_H
#define ZTR_BASE_SD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Sends state. 0 when sent, or when not started by systemd
 * ($NOTIFY_SOCKET unset or empty); -1 (errno set) when it could not be
 * sent: an unusable address or a failed send. */
int sd_notify_send(const char *state);

/* true and *usec when systemd expects WATCHDOG=1 from this process:
 * $WATCHDOG_USEC is a positive number and $WATCHDOG_PID, if set, is ours. */
bool sd_notify_watchdog_usec(uint64_t *usec);

#endif
