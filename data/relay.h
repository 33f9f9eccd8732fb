/*
 * One relayed stream: a TCP socket bridged to one established mux stream,
 * the same on both agents (the tunneler's client socket, the connector's
 * target socket). Bytes from the socket go out with mux_send only as far as
 * the stream's and the session's credit allow — with no credit the relay
 * stops reading, and TCP flow control pushes back on the local peer. Bytes
 * from the stream are written straight to the socket; what the socket does
 * not take yet waits in pool chunks and is only then handed back as credit
 * (mux_consumed). So a relay never holds more than one window of input and
 * a slow reader stops its writer end to end.
 *
 * Ends: EOF from the socket becomes FIN on the stream; the peer's FIN
 * becomes shutdown(SHUT_WR) once everything before it is written. A stream
 * that finishes normally is drained before the socket closes (within the
 * pool's drain deadline, RELAY_DRAIN_TIMEOUT_MS); a reset stream
 * closes the socket at once with a TCP RST (SO_LINGER 0), so a truncated
 * transfer never looks complete to the local peer. A socket error resets
 * the stream (MUX_CODE_CANCEL).
 *
 * Ownership: the session owner creates a relay once the stream is
 * established and routes the mux callbacks for the stream to relay_on_*. The relay owns its socket. It frees itself
 * after relay_on_stream_closed (at once, or after draining) and then calls
 * on_done exactly once; the owner must not use it after that. Calls may
 * nest (a relay's mux_reset runs on_stream_closed for that same relay): the
 * relay defers freeing until the outermost call returns.
 */
#ifndef ZTR_DATA_RELAY_H
#define ZTR_DATA_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "data/mux.h"

struct ev_loop;

/* Socket output waits in chunks of this size from the pool. */
#define RELAY_CHUNK_SIZE 16384
/* Bytes a relay may be given before it starts (a client's data that came in
 * the same read as its SOCKS5 request). */
#define RELAY_EARLY_MAX 1024

/* How long a stream that finished normally may take to hand its last bytes
 * to a local peer that does not read: past it the socket is reset
 * (MUX_CODE_CANCEL), so a stalled reader cannot hold a relay, its chunks
 * and its descriptor forever. */
#define RELAY_DRAIN_TIMEOUT_MS 30000

/* Chunks and the read buffer, shared by every relay on one loop. Free chunks
 * are kept up to max_free_chunks (the rest go back to malloc).
 *
 * Lifetime: the creator holds one reference and every live relay another,
 * so relay_pool_free only drops the creator's; the pool itself goes when
 * the last relay still draining into its socket finishes. */
struct relay_pool;
int relay_pool_new(size_t max_free_chunks, struct relay_pool **out, struct ztr_err *err);
void relay_pool_free(struct relay_pool *pool);
/* The drain deadline of relays started from here on (ms; <= 0: the default
 * RELAY_DRAIN_TIMEOUT_MS). */
void relay_pool_set_drain_timeout(struct relay_pool *pool, int64_t ms);
/* Chunks handed out and not yet returned (for /metrics and tests). */
size_t relay_pool_chunks_in_use(const struct relay_pool *pool);

struct relay;

struct relay_totals {
    uint64_t bytes_to_stream;   /* read from the socket, sent on the stream */
    uint64_t bytes_to_socket;   /* received on the stream, written to the socket */
};

/* The relay is gone: the stream's code and reason (MUX_CODE_NORMAL when both
 * directions finished). */
typedef void (*relay_done_fn)(void *user, enum mux_code code, const char *reason,
                              const struct relay_totals *totals);

/* Starts relaying between fd (connected, non-blocking; the relay owns it from
 * here, also on failure) and the established stream. early: bytes the
 * socket's peer already sent (≤ RELAY_EARLY_MAX), sent first. */
int relay_new(struct ev_loop *loop, struct relay_pool *pool, struct mux *mux, uint32_t stream,
              int fd, const uint8_t *early, size_t early_len, relay_done_fn on_done, void *user,
              struct relay **out, struct ztr_err *err);

/* The mux callbacks for this relay's stream. */
void relay_on_data(struct relay *relay, const uint8_t *data, size_t len);
void relay_on_fin(struct relay *relay);
void relay_on_writable(struct relay *relay);
void relay_on_stream_closed(struct relay *relay, enum mux_code code, const char *reason);

/* Bytes waiting for the socket (at most one window). */
size_t relay_queued(const struct relay *relay);

#endif
