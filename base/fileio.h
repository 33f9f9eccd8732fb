/*
 * The one place that reads and writes state files.
 *
 * Writes are atomic: data goes to a temporary file in the same directory
 * (created with O_EXCL and the final mode), is fsynced, renamed over the
 * target and the directory is fsynced, so a crash leaves either the old file
 * or the new one, never a torn one.
 *
 * Error texts follow the form operators know from other daemons:
 * `open <path>: permission denied`, `open <path>: no such file or directory`.
 */
#ifndef ZTR_BASE_FILEIO_H
#define ZTR_BASE_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

#include "base/err.h"

/* Reads the whole file into a new NUL-terminated buffer the caller frees
 * with free(). Files larger than max_len are refused (ZTR_E_LIMIT). */
int file_read_all(const char *path, size_t max_len, char **out, size_t *out_len,
                  struct ztr_err *err);

/* Replaces path atomically with data, leaving it with the given mode. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                      struct ztr_err *err);

/* Creates path with O_EXCL (fails if it exists) and the given mode; data is
 * fsynced before return. For private keys: never overwrite one silently. */
int file_create_exclusive(const char *path, const void *data, size_t len, mode_t mode,
                          struct ztr_err *err);

/* Creates dir (one level) with mode if missing. An existing directory that
 * grants more than mode (a STATE_DIR left 0755 or 0777) is narrowed to it
 * with a warn line ("permissions narrowed") when this process owns it, and
 * refused (ZTR_E_INVALID, naming the mode and the owner) when it does not.
 * A symlink is followed: the directory it names is checked. */
int file_ensure_dir(const char *dir, mode_t mode, struct ztr_err *err);

/* The same rule for a private file (a key, the database): one granting
 * more than 0600 is narrowed if ours, refused if not. A missing file is
 * fine (nothing to protect yet). */
int file_ensure_private(const char *path, struct ztr_err *err);

/* Creates path empty with mode 0600 if it is missing (so a file another
 * library then opens is never created with the umask's mode), else applies
 * file_ensure_private to it. */
int file_create_private_if_missing(const char *path, struct ztr_err *err);

/* rename(2) and an fsync of the target's directory, so the rename survives
 * a crash; the step that commits a change written beside its target. */
int file_rename(const char *from, const char *to, struct ztr_err *err);

/* Writes "dir/name" into out (cap bytes): the one way a state file's path
 * is built. A result that does not fit is refused, never cut short:
 * ZTR_E_LIMIT, `path <dir>/<name> is longer than <cap-1> bytes`. name is a
 * plain file name (no '/'; ZTR_E_INVALID otherwise). */
int file_path_join(char *out, size_t cap, const char *dir, const char *name,
                   struct ztr_err *err);

/* Formats an errno the way the texts above do (lowercase, no period). */
const char *file_strerror(int errnum, char *buf, size_t cap);

#endif
