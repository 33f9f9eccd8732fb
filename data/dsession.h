/*
 * One data-plane session (ALPN ztr-data/1): a TLS connection carrying the
 * mux (data/mux.h), and the streams on it. Both agents use it — the
 * tunneler as the opener, the connector as the acceptor — so the wiring of
 * TLS bytes into the mux, mux frames into TLS, and established streams into
 * relays (data/relay.h) exists once.
 *
 * A stream is "pending" until its owner attaches a socket (connector: after
 * dialing the target, dsession_accept; tunneler: after OPEN_OK,
 * dsession_attach); then it is relayed until it ends. The owner keeps its
 * own pointer per pending stream (the dial, the waiting client) and hears of
 * a pending stream's end through on_pending_closed; relayed streams end by
 * themselves and only update the counters.
 *
 * Life cycle: dsession_new starts the handshake; on_ready runs once the
 * peer is verified (dsession_peer_id); on_closed runs exactly once, from the
 * loop, after every stream has ended, and the session is freed right after
 * it returns. dsession_close may be called from any callback.
 */
#ifndef ZTR_DATA_DSESSION_H
#define ZTR_DATA_DSESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "data/mux.h"
#include "data/relay.h"
#include "net/tls.h"

#define DATA_ALPN "ztr-data/1"

/* A session lasts no longer than its peer's identity: at the earliest
 * not_after of the peer's chain it stops taking new streams, and unless
 * the peer proves a renewed certificate within DATA_REAUTH_GRACE (an
 * IDENTITY frame, dsession_present_identity) it ends (GOAWAY REFUSED with
 * this text, and a warn line). A proven renewal moves the end to the new
 * certificate's not_after; nothing else does. */
#define DSESSION_MSG_PEER_EXPIRED "peer certificate expired"
/* An IDENTITY frame that does not prove a renewed certificate of the same
 * peer ends the session (GOAWAY REFUSED with this text). */
#define DSESSION_MSG_BAD_IDENTITY "peer identity update refused"
/* What an IDENTITY proof signs first (then NUL, the receiver's SPIFFE ID,
 * NUL, the chain PEM): a signature for one receiver is no proof to another. */
#define DSESSION_IDENTITY_DOMAIN "ztr-data/1 identity"
/* dsession_recheck_peer found the peer no longer verifies. */
#define DSESSION_MSG_PEER_UNTRUSTED "peer no longer trusted"

/* Counters both agents export (/health "data", /metrics ztr_data_*). */
struct dsession_stats {
    uint64_t sessions;          /* open now */
    uint64_t sessions_total;
    uint64_t streams;           /* open now (pending and relayed) */
    uint64_t streams_total;
    uint64_t streams_failed;    /* ended with a code other than NORMAL */
    uint64_t bytes_sent;        /* relayed onto sessions */
    uint64_t bytes_received;    /* relayed off sessions */
};

/* A data session's flow control as configured (DATA_WINDOW,
 * DATA_WINDOW_MAX), handed from the daemon's config to each session in
 * this one struct; the session's own window and its growth limit follow
 * from these through mux_session_window. */
struct dsession_window {
    uint32_t window;       /* initial credit per stream; the same on both ends (0: default) */
    uint32_t max_window;   /* a stream's receive window may grow to this (0: no growth) */
    /* DATA_REAUTH_GRACE: how long past its peer's not_after a session keeps
     * the streams it has (never new ones) while the peer re-authenticates;
     * 0: it ends at not_after. */
    int64_t reauth_grace_ms;
};

/* How much TLS output a session may queue: its send credit (at most the
 * session window, grown) plus a quarter for framing and control frames and
 * 256 KiB of slack. Flow control keeps a session under it, so reaching it
 * means a broken peer. */
size_t dsession_queue_max(const struct dsession_window *window);

struct dsession;

struct dsession_hooks {
    void (*on_ready)(void *user, struct dsession *session);
    /* Acceptor: the peer opens stream to resource; answer with
     * dsession_accept or dsession_reset (now or later). */
    void (*on_open)(void *user, struct dsession *session, uint32_t stream, const char *resource);
    /* Opener: the peer accepted; attach a socket with dsession_attach. */
    void (*on_open_ok)(void *user, struct dsession *session, uint32_t stream,
                       void *stream_user);
    /* A stream that had no socket attached ended (refused, reset, session
     * over): the owner drops stream_user. */
    void (*on_pending_closed)(void *user, struct dsession *session, uint32_t stream,
                              void *stream_user, enum mux_code code, const char *reason);
    /* Opener: PONG arrived. */
    void (*on_pong)(void *user, struct dsession *session, int64_t rtt_ms);
    /* The session is over; freed after. code: the GOAWAY's (either way) or
     * MUX_CODE_INTERNAL when the connection failed without one — decide on
     * it; reason (the TLS or mux text) is for logs. */
    void (*on_closed)(void *user, struct dsession *session, enum mux_code code,
                      const char *reason);
};

struct dsession_config {
    struct ev_loop *loop;
    struct tls_ctx *tls;
    struct relay_pool *pool;
    struct dsession_stats *stats;    /* shared by the agent's sessions */
    enum mux_role role;
    struct dsession_window window;
    const struct dsession_hooks *hooks;
    void *user;
    /* This side's SPIFFE ID (borrowed, outlives the session): what a peer's
     * IDENTITY proof must be addressed to. NULL: proofs are refused. */
    const char *self_id;
};

/* Takes fd (connected or connecting, non-blocking) in every case. */
int dsession_new(const struct dsession_config *config, int fd, const struct pki_expect *expect,
                 struct dsession **out, struct ztr_err *err);

/* Opener: OPEN a stream to resource; stream_user comes back in on_open_ok
 * or on_pending_closed. ZTR_E_LIMIT when the session cannot open more. */
int dsession_open(struct dsession *s, const char *resource, void *stream_user, uint32_t *stream,
                  struct ztr_err *err);
/* Opener, after on_open_ok: relay fd (owned from here) on the stream. */
int dsession_attach(struct dsession *s, uint32_t stream, int fd, const uint8_t *early,
                    size_t early_len, struct ztr_err *err);
/* Acceptor: OPEN_OK, then relay fd (owned from here) on the stream. */
int dsession_accept(struct dsession *s, uint32_t stream, int fd, struct ztr_err *err);
/* Pending or relayed: RST with code and reason. */
int dsession_reset(struct dsession *s, uint32_t stream, enum mux_code code, const char *reason);
/* Pending streams' owner pointer (NULL when relayed or unknown). */
void *dsession_stream_user(const struct dsession *s, uint32_t stream);
void dsession_set_stream_user(struct dsession *s, uint32_t stream, void *stream_user);
/* fn(ctx) runs once when the stream is completely over: after its relay
 * drained and closed its socket, or when it ends pending — possibly after
 * the session is gone, so ctx must not be the session's. -1 (and nothing
 * kept) when the stream is unknown. */
int dsession_set_stream_done(struct dsession *s, uint32_t stream, void (*fn)(void *ctx),
                             void *ctx);
/* The resource a stream was opened to (NULL when unknown). */
const char *dsession_stream_resource(const struct dsession *s, uint32_t stream);
/* Calls fn for every open stream (fn may reset the one it is given). */
void dsession_foreach_stream(struct dsession *s,
                             void (*fn)(void *ctx, struct dsession *s, uint32_t stream,
                                        const char *resource),
                             void *ctx);

/* GOAWAY(code, reason) if the session is up, then close. */
void dsession_close(struct dsession *s, enum mux_code code, const char *reason);
int dsession_ping(struct dsession *s);
/* The trust bundle changed: verify the peer again against bundle (the
 * caller's) at the current time. A peer that no longer verifies is logged
 * and its session closed (GOAWAY REFUSED); returns -1 then, else 0 (also
 * for a session not ready yet: its handshake uses the new bundle). */
int dsession_recheck_peer(struct dsession *s, const struct pki_bundle *bundle);
/* When the session ends by itself (0: before the handshake). */
int64_t dsession_peer_not_after(const struct dsession *s);
/* Our certificate changed (renewal, re-authentication): sends the peer an
 * IDENTITY frame with chain_pem and key's signature over
 * DSESSION_IDENTITY_DOMAIN, the peer's SPIFFE ID and the chain, so that the
 * peer moves its end of the session to the new not_after. 0 when sent (or
 * the session is not ready: its handshake uses the new certificate). */
int dsession_present_identity(struct dsession *s, const char *chain_pem, size_t chain_len,
                              const struct pki_key *key, struct ztr_err *err);
/* Whether the peer's certificate has expired and the session only waits
 * for its renewal (no new streams). */
bool dsession_peer_in_grace(const struct dsession *s);

bool dsession_is_ready(const struct dsession *s);
const struct pki_spiffe_id *dsession_peer_id(const struct dsession *s);
const char *dsession_peer_addr(const struct dsession *s);
size_t dsession_stream_count(const struct dsession *s);
/* Monotonic ms of the last bytes received (idle detection). */
int64_t dsession_last_input_ms(const struct dsession *s);
void *dsession_user(const struct dsession *s);
void dsession_set_user(struct dsession *s, void *user);

/* The flow-control keys both agents take (in their config schema). */
#define DSESSION_CONFIG_KEYS                                                                     \
    {.name = "DATA_WINDOW", .type = CONFIG_UINT, .default_value = "262144",                     \
     .help = "initial flow-control window per stream, bytes (session: 4x); the same on both ends"}, \
    {.name = "DATA_WINDOW_MAX", .type = CONFIG_UINT, .default_value = "4194304",                \
     .help = "a stream's receive window grows up to this while its reader keeps up (session: 4x)"}, \
    {.name = "DATA_REAUTH_GRACE", .type = CONFIG_DURATION, .default_value = "30s",              \
     .help = "a session keeps its streams this long past its peer's not_after for the peer to "  \
             "prove a renewed certificate (0..10m; 0: end at not_after)"}

struct config;
struct metrics;
/* Reads and checks them into *out: window 16 KiB..64 MiB, max_window
 * window..128 MiB, reauth_grace 0..10 min. */
int dsession_window_config(const struct config *config, struct dsession_window *out,
                           struct ztr_err *err);

/* Appends the "data" object to /health and ztr_data_* lines to /metrics. */
struct json_t;
void dsession_stats_health(const struct dsession_stats *stats, struct json_t *health);
/* sum += stats, field by field (several workers' counters). */
void dsession_stats_add(struct dsession_stats *sum, const struct dsession_stats *stats);
void dsession_stats_metrics(const struct dsession_stats *stats, const char *role,
                            struct metrics *metrics);

#endif
