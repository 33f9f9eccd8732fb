/* State files: whole reads with limits, atomic and exclusive writes, dirs. */
#include "tests/unit/support.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fileio.h"

/* Each test gets a fresh directory in *state. */
static int
setup(void **state)
{
    *state = test_mkdtemp();
    return 0;
}

static int
teardown(void **state)
{
    test_rmtree(*state);
    free(*state);
    return 0;
}

static mode_t
mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Entries in dir other than . and .., and how many look like temp files. */
static size_t
count_entries(const char *dir, size_t *tmp_files)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    *tmp_files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (strstr(e->d_name, ".tmp.") != NULL)
            (*tmp_files)++;
    }
    closedir(d);
    return n;
}

static void
expect_message(const struct ztr_err *err, const char *op, const char *path, const char *reason)
{
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "%s %s: %s", op, path, reason);
    assert_string_equal(err->msg, want);
}

/* ---- a child process, for things root cannot see or that could block --- */

struct child_result {
    int rc;
    int code;
    char msg[ZTR_ERR_MSG_MAX];
};

typedef int (*child_fn)(const char *path, struct ztr_err *err);

#define CHILD_SETUID_FAILED 99
#define NOBODY 65534

/* Runs fn(path) in a child, as uid when uid != 0, and with an alarm so a
 * call that blocks fails the test instead of hanging the suite. */
static void
run_in_child(child_fn fn, const char *path, uid_t uid, struct child_result *out)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(5);
        struct child_result r;
        memset(&r, 0, sizeof(r));
        if (uid != 0 && (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0)) {
            r.rc = CHILD_SETUID_FAILED;
        } else {
            struct ztr_err err = {0};
            r.rc = fn(path, &err);
            r.code = err.code;
            memcpy(r.msg, err.msg, sizeof(r.msg));
        }
        if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], out, sizeof(*out));
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("child killed by signal %d (blocked in the call?)", WTERMSIG(status));
    assert_int_equal(n, (ssize_t)sizeof(*out));
}

static int
read_and_discard(const char *path, struct ztr_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = file_read_all(path, 1 << 20, &data, &len, err);
    free(data);
    return rc;
}

static int
atomic_write_hello(const char *path, struct ztr_err *err)
{
    return file_write_atomic(path, "hello", 5, 0600, err);
}

/* ---- file_read_all ------------------------------------------------------- */

static void
test_read_all_returns_content_length_and_terminator(void **state)
{
    char *path = test_path(*state, "a.txt");
    test_write_file(path, "line one\nline two\n");
    char *data = NULL;
    size_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 1024, &data, &len, &err), 0);
    assert_int_equal(len, 18);
    assert_string_equal(data, "line one\nline two\n");
    assert_int_equal(data[len], '\0');
    free(data);
    free(path);
}

static void
test_read_all_of_empty_file_gives_empty_string(void **state)
{
    char *path = test_path(*state, "empty");
    test_write_file(path, "");
    char *data = NULL;
    size_t len = 99;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 0, &data, &len, &err), 0);
    assert_non_null(data);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);
    free(path);
}

static void
test_read_all_keeps_embedded_nul_bytes(void **state)
{
    char *path = test_path(*state, "bin");
    static const char bytes[] = {'a', 0, 'b', 0, (char)0xff};
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, bytes, sizeof(bytes), 0600, &err), 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(path, 64, &data, &len, &err), 0);
    assert_int_equal(len, sizeof(bytes));
    assert_memory_equal(data, bytes, sizeof(bytes));
    free(data);
    free(path);
}

static void
test_read_all_accepts_null_length_pointer(void **state)
{
    char *path = test_path(*state, "x");
    test_write_file(path, "xyz");
    char *data = NULL;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 3, &data, NULL, &err), 0);
    assert_string_equal(data, "xyz");
    free(data);
    free(path);
}

static void
test_read_all_at_exact_limit_succeeds_and_one_over_fails(void **state)
{
    char *path = test_path(*state, "sized");
    char text[101];
    memset(text, 'q', 100);
    text[100] = '\0';
    test_write_file(path, text);
    char *data = NULL;
    size_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 100, &data, &len, &err), 0);
    assert_int_equal(len, 100);
    free(data);
    data = NULL;
    assert_int_equal(file_read_all(path, 99, &data, &len, &err), -1);
    assert_null(data);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "read %s: file larger than 99 bytes", path);
    assert_string_equal(err.msg, want);
    free(path);
}

static void
test_read_all_of_missing_file_names_path_and_reason(void **state)
{
    char *path = test_path(*state, "missing.yaml");
    char *data = NULL;
    size_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 1024, &data, &len, &err), -1);
    assert_null(data);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    expect_message(&err, "open", path, "no such file or directory");
    free(path);
}

static void
test_read_all_of_directory_is_not_a_regular_file(void **state)
{
    char *data = NULL;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(*state, 1024, &data, NULL, &err), -1);
    assert_null(data);
    assert_int_equal(err.code, ZTR_E_INVALID);
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "read %s: not a regular file", (const char *)*state);
    assert_string_equal(err.msg, want);
}

static void
test_read_all_of_device_is_not_a_regular_file(void **state)
{
    (void)state;
    char *data = NULL;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all("/dev/null", 1024, &data, NULL, &err), -1);
    assert_null(data);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_string_equal(err.msg, "read /dev/null: not a regular file");
}

static void
test_read_all_of_fifo_fails_without_blocking(void **state)
{
    /* Nobody writes to the FIFO: opening it for reading must not wait. */
    char *path = test_path(*state, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    struct child_result r;
    run_in_child(read_and_discard, path, 0, &r);
    assert_int_equal(r.rc, -1);
    assert_int_equal(r.code, ZTR_E_INVALID);
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "read %s: not a regular file", path);
    assert_string_equal(r.msg, want);
    free(path);
}

static void
test_read_all_follows_symlink_to_regular_file(void **state)
{
    char *target = test_path(*state, "target");
    char *link = test_path(*state, "link");
    test_write_file(target, "via link");
    assert_int_equal(symlink(target, link), 0);
    char *data = NULL;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(link, 64, &data, NULL, &err), 0);
    assert_string_equal(data, "via link");
    free(data);
    free(target);
    free(link);
}

/* Whether a control run (which must succeed) could not even start: no
 * uid switch, or the test directory's parents are closed to that uid. The
 * caller frees its own memory and skips then, saying why. */
static int
control_run_unavailable(const struct child_result *r, const char *dir)
{
    if (r->rc == CHILD_SETUID_FAILED) {
        printf("skipped: running as root and cannot switch to uid %d\n", NOBODY);
        return 1;
    }
    if (r->rc != 0 && strstr(r->msg, "permission denied") != NULL) {
        printf("skipped: %s is not reachable by uid %d (set TMPDIR)\n", dir, NOBODY);
        return 1;
    }
    return 0;
}

static uid_t
unprivileged_uid(void)
{
    /* root reads and writes anything; ask as an ordinary user instead. */
    return geteuid() == 0 ? NOBODY : 0;
}

static void
test_read_all_of_unreadable_file_says_permission_denied(void **state)
{
    char *path = test_path(*state, "key.pem");
    test_write_file(path, "secret");
    assert_int_equal(chmod(*state, 0755), 0);
    assert_int_equal(chmod(path, 0644), 0);
    struct child_result r;
    /* Control first: the same reader succeeds while the mode allows it. */
    run_in_child(read_and_discard, path, unprivileged_uid(), &r);
    if (control_run_unavailable(&r, *state)) {
        free(path);
        skip();
    }
    assert_int_equal(r.rc, 0);
    assert_int_equal(chmod(path, 0000), 0);
    run_in_child(read_and_discard, path, unprivileged_uid(), &r);
    assert_int_equal(r.rc, -1);
    assert_int_equal(r.code, ZTR_E_IO);
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "open %s: permission denied", path);
    assert_string_equal(r.msg, want);
    free(path);
}

/* ---- file_write_atomic --------------------------------------------------- */

static void
test_write_atomic_creates_file_with_exact_mode_despite_umask(void **state)
{
    char *path = test_path(*state, "cert.pem");
    mode_t old = umask(0077);
    struct ztr_err err = {0};
    int rc = file_write_atomic(path, "CERT", 4, 0644, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(path), 0644);
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "CERT");
    free(text);
    free(path);
}

static void
test_write_atomic_private_mode_is_not_widened_by_umask_zero(void **state)
{
    char *path = test_path(*state, "key.pem");
    mode_t old = umask(0);
    struct ztr_err err = {0};
    int rc = file_write_atomic(path, "KEY", 3, 0600, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(path), 0600);
    free(path);
}

static void
test_write_atomic_replaces_content_and_mode(void **state)
{
    char *path = test_path(*state, "state.json");
    test_write_file(path, "a much longer old content that must fully disappear");
    assert_int_equal(chmod(path, 0644), 0);
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, "new", 3, 0600, &err), 0);
    size_t len = 0;
    char *text = test_read_file(path, &len);
    assert_int_equal(len, 3);
    assert_string_equal(text, "new");
    assert_int_equal(mode_of(path), 0600);
    free(text);
    free(path);
}

static void
test_write_atomic_swaps_inode_so_open_readers_keep_old_data(void **state)
{
    char *path = test_path(*state, "swap");
    test_write_file(path, "old");
    FILE *reader = fopen(path, "r");
    assert_non_null(reader);
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, "new!", 4, 0600, &err), 0);
    char buf[16] = {0};
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, reader), 3);
    assert_string_equal(buf, "old");
    fclose(reader);
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "new!");
    free(text);
    free(path);
}

static void
test_write_atomic_leaves_no_temp_files(void **state)
{
    char *path = test_path(*state, "target");
    struct ztr_err err = {0};
    for (int i = 0; i < 20; i++) {
        char data[32];
        int n = snprintf(data, sizeof(data), "version %d", i);
        assert_int_equal(file_write_atomic(path, data, (size_t)n, 0640, &err), 0);
    }
    size_t tmp = 0;
    assert_int_equal(count_entries(*state, &tmp), 1);
    assert_int_equal(tmp, 0);
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "version 19");
    free(text);
    free(path);
}

static void
test_write_atomic_of_zero_bytes_makes_empty_file(void **state)
{
    char *path = test_path(*state, "empty");
    test_write_file(path, "previous");
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, "", 0, 0600, &err), 0);
    size_t len = 99;
    char *text = test_read_file(path, &len);
    assert_int_equal(len, 0);
    free(text);
    free(path);
}

static void
test_write_atomic_round_trips_a_megabyte(void **state)
{
    char *path = test_path(*state, "big");
    size_t size = 1 << 20;
    unsigned char *data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 9));
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, data, size, 0600, &err), 0);
    char *back = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(path, size, &back, &len, &err), 0);
    assert_int_equal(len, size);
    assert_memory_equal(back, data, size);
    assert_int_equal(file_read_all(path, size - 1, &back, &len, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    free(back);
    free(data);
    free(path);
}

static void
test_write_atomic_over_directory_fails_and_cleans_up(void **state)
{
    char *path = test_path(*state, "adir");
    assert_int_equal(mkdir(path, 0700), 0);
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, "x", 1, 0600, &err), -1);
    assert_int_equal(err.code, ZTR_E_IO);
    expect_message(&err, "rename", path, "is a directory");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    size_t tmp = 0;
    assert_int_equal(count_entries(*state, &tmp), 1);
    assert_int_equal(tmp, 0);
    free(path);
}

static void
test_write_atomic_into_missing_directory_reports_not_found(void **state)
{
    char *path = test_path(*state, "no/such/dir/file");
    struct ztr_err err = {0};
    assert_int_equal(file_write_atomic(path, "x", 1, 0600, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, ": no such file or directory"));
    assert_int_equal(strncmp(err.msg, "open ", 5), 0);
    free(path);
}

static void
test_write_atomic_into_unwritable_directory_says_permission_denied(void **state)
{
    char *sub = test_path(*state, "ro");
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(chmod(*state, 0755), 0);
    char *control = test_path(sub, "control");
    char *path = test_path(sub, "file");
    struct child_result r;
    /* Control first: the same writer succeeds while the directory allows. */
    run_in_child(atomic_write_hello, control, unprivileged_uid(), &r);
    if (control_run_unavailable(&r, *state)) {
        free(control);
        free(path);
        free(sub);
        skip();
    }
    assert_int_equal(r.rc, 0);
    assert_int_equal(chmod(sub, 0555), 0);
    run_in_child(atomic_write_hello, path, unprivileged_uid(), &r);
    assert_int_equal(r.rc, -1);
    assert_int_equal(r.code, ZTR_E_IO);
    assert_non_null(strstr(r.msg, path));
    assert_non_null(strstr(r.msg, ": permission denied"));
    size_t tmp = 0;
    assert_int_equal(count_entries(sub, &tmp), 1); /* only the control file */
    assert_int_equal(tmp, 0);
    /* A non-root teardown could not empty a read-only directory. */
    assert_int_equal(chmod(sub, 0700), 0);
    free(control);
    free(path);
    free(sub);
}

/* ---- file_create_exclusive ----------------------------------------------- */

static void
test_create_exclusive_writes_data_with_exact_mode(void **state)
{
    char *path = test_path(*state, "node.key");
    mode_t old = umask(0077);
    struct ztr_err err = {0};
    int rc = file_create_exclusive(path, "PRIVATE", 7, 0640, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(path), 0640);
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "PRIVATE");
    free(text);
    free(path);
}

static void
test_create_exclusive_refuses_existing_file_and_keeps_it(void **state)
{
    char *path = test_path(*state, "node.key");
    test_write_file(path, "ORIGINAL KEY");
    assert_int_equal(chmod(path, 0400), 0);
    struct ztr_err err = {0};
    assert_int_equal(file_create_exclusive(path, "NEW", 3, 0600, &err), -1);
    assert_int_equal(err.code, ZTR_E_IO);
    expect_message(&err, "open", path, "file exists");
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "ORIGINAL KEY");
    assert_int_equal(mode_of(path), 0400);
    free(text);
    free(path);
}

static void
test_create_exclusive_does_not_follow_dangling_symlink(void **state)
{
    /* A planted link must not make us write a key somewhere else. */
    char *link = test_path(*state, "node.key");
    char *elsewhere = test_path(*state, "elsewhere");
    assert_int_equal(symlink(elsewhere, link), 0);
    struct ztr_err err = {0};
    assert_int_equal(file_create_exclusive(link, "KEY", 3, 0600, &err), -1);
    expect_message(&err, "open", link, "file exists");
    assert_int_equal(access(elsewhere, F_OK), -1);
    free(link);
    free(elsewhere);
}

static void
test_create_exclusive_in_missing_directory_reports_not_found(void **state)
{
    char *path = test_path(*state, "nope/node.key");
    struct ztr_err err = {0};
    assert_int_equal(file_create_exclusive(path, "KEY", 3, 0600, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    expect_message(&err, "open", path, "no such file or directory");
    free(path);
}

/* ---- file_ensure_dir ----------------------------------------------------- */

static void
test_ensure_dir_creates_missing_directory_with_mode(void **state)
{
    char *dir = test_path(*state, "state");
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(dir, 0700, &err), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    free(dir);
}

static void
test_ensure_dir_accepts_existing_private_directory_untouched(void **state)
{
    char *dir = test_path(*state, "state");
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chmod(dir, 0700), 0);
    test_log_capture_start();
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(dir, 0700, &err), 0);
    assert_int_equal(mode_of(dir), 0700);
    assert_null(strstr(test_log_captured(), "permissions narrowed"));
    test_log_capture_stop();
    free(dir);
}

/* A STATE_DIR someone left group/other-accessible is narrowed to the mode
 * asked for when it is ours, with a warn line saying so. */
static void
test_ensure_dir_narrows_an_open_directory_of_ours(void **state)
{
    char *dir = test_path(*state, "state");
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    test_log_capture_start();
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(dir, 0700, &err), 0);
    assert_int_equal(mode_of(dir), 0700);
    assert_non_null(strstr(test_log_captured(), "level=warn msg=\"permissions narrowed\""));
    assert_non_null(strstr(test_log_captured(), "from=0777 to=0700"));
    test_log_capture_stop();
    free(dir);
}

/* Someone else's open directory cannot be trusted nor fixed: refused.
 * Needs root to give a directory away. */
static void
test_ensure_dir_refuses_an_open_directory_of_another_user(void **state)
{
    if (geteuid() != 0)
        skip();
    char *dir = test_path(*state, "state");
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(chown(dir, 65534, 65534), 0);
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(dir, 0700, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_non_null(strstr(err.msg, "has mode 0777 and belongs to uid 65534"));
    assert_int_equal(mode_of(dir), 0777);
    free(dir);
}

/* systemd's DynamicUser= makes STATE_DIR a symlink to the real directory:
 * the directory it names is what is checked and narrowed. */
static void
test_ensure_dir_follows_a_symlink_and_checks_its_target(void **state)
{
    char *dir = test_path(*state, "real");
    char *link = test_path(*state, "state");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(symlink(dir, link), 0);
    struct ztr_err err = {0};
    test_log_capture_start();
    assert_int_equal(file_ensure_dir(link, 0700, &err), 0);
    test_log_capture_stop();
    assert_int_equal(mode_of(dir), 0700);
    free(dir);
    free(link);
}

static void
test_ensure_private_narrows_a_readable_key(void **state)
{
    char *path = test_path(*state, "key.pem");
    test_write_file(path, "k");
    assert_int_equal(chmod(path, 0644), 0);
    test_log_capture_start();
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_private(path, &err), 0);
    assert_int_equal(mode_of(path), 0600);
    assert_non_null(strstr(test_log_captured(), "what=file from=0644 to=0600"));
    test_log_capture_stop();
    /* Missing: nothing to protect yet. */
    char *missing = test_path(*state, "none.pem");
    assert_int_equal(file_ensure_private(missing, &err), 0);
    free(missing);
    free(path);
}

static void
test_create_private_if_missing_makes_0600_whatever_the_umask(void **state)
{
    char *path = test_path(*state, "controller.db");
    mode_t old = umask(0);
    struct ztr_err err = {0};
    assert_int_equal(file_create_private_if_missing(path, &err), 0);
    umask(old);
    assert_int_equal(mode_of(path), 0600);
    /* An existing one keeps its content. */
    test_write_file(path, "data");
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(file_create_private_if_missing(path, &err), 0);
    size_t len;
    char *text = test_read_file(path, &len);
    assert_string_equal(text, "data");
    free(text);
    free(path);
}

static void
test_rename_replaces_the_target(void **state)
{
    char *from = test_path(*state, "a.new");
    char *to = test_path(*state, "a");
    test_write_file(from, "new");
    test_write_file(to, "old");
    struct ztr_err err = {0};
    assert_int_equal(file_rename(from, to, &err), 0);
    size_t len;
    char *text = test_read_file(to, &len);
    assert_string_equal(text, "new");
    free(text);
    assert_int_equal(file_rename(from, to, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    free(from);
    free(to);
}

static void
test_ensure_dir_rejects_existing_regular_file(void **state)
{
    char *path = test_path(*state, "file");
    test_write_file(path, "x");
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(path, 0700, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    char want[ZTR_ERR_MSG_MAX];
    snprintf(want, sizeof(want), "%s: not a directory", path);
    assert_string_equal(err.msg, want);
    free(path);
}

static void
test_ensure_dir_does_not_create_parents(void **state)
{
    char *dir = test_path(*state, "a/b");
    struct ztr_err err = {0};
    assert_int_equal(file_ensure_dir(dir, 0700, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    expect_message(&err, "mkdir", dir, "no such file or directory");
    free(dir);
}

/* ---- file_strerror ------------------------------------------------------- */

static void
test_strerror_is_lowercase_without_period(void **state)
{
    (void)state;
    char buf[128];
    assert_string_equal(file_strerror(ENOENT, buf, sizeof(buf)), "no such file or directory");
    assert_string_equal(file_strerror(EACCES, buf, sizeof(buf)), "permission denied");
    assert_string_equal(file_strerror(EEXIST, buf, sizeof(buf)), "file exists");
    assert_ptr_equal(file_strerror(EIO, buf, sizeof(buf)), buf);
}

static void
test_strerror_truncates_to_small_buffers(void **state)
{
    (void)state;
    char buf[5];
    assert_string_equal(file_strerror(ENOENT, buf, sizeof(buf)), "no s");
    char one[1] = {'z'};
    assert_string_equal(file_strerror(ENOENT, one, sizeof(one)), "");
}

/* dir + name: exact fit, one byte short (refused, never cut), no '/'. */
static void
test_path_join_fits_exactly_or_refuses(void **state)
{
    (void)state;
    char out[16];
    struct ztr_err err = {0};
    assert_int_equal(file_path_join(out, sizeof(out), "/var/lib", "node.json", &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    assert_string_equal(err.msg, "path /var/lib/node.json is longer than 15 bytes");
    assert_string_equal(out, "");   /* nothing half-written to open by mistake */
    /* "/var/lib/a.json" is 15 bytes + NUL: exactly 16. */
    assert_int_equal(file_path_join(out, sizeof(out), "/var/lib", "a.json", &err), 0);
    assert_string_equal(out, "/var/lib/a.json");
    assert_int_equal(file_path_join(out, sizeof(out), "/var/lib", "ab.json", &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);

    assert_int_equal(file_path_join(out, sizeof(out), "/d", "../x", &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(file_path_join(out, sizeof(out), "/d", "", &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

#define FILE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        FILE_TEST(test_read_all_returns_content_length_and_terminator),
        cmocka_unit_test(test_path_join_fits_exactly_or_refuses),
        FILE_TEST(test_read_all_of_empty_file_gives_empty_string),
        FILE_TEST(test_read_all_keeps_embedded_nul_bytes),
        FILE_TEST(test_read_all_accepts_null_length_pointer),
        FILE_TEST(test_read_all_at_exact_limit_succeeds_and_one_over_fails),
        FILE_TEST(test_read_all_of_missing_file_names_path_and_reason),
        FILE_TEST(test_read_all_of_directory_is_not_a_regular_file),
        FILE_TEST(test_read_all_of_device_is_not_a_regular_file),
        FILE_TEST(test_read_all_of_fifo_fails_without_blocking),
        FILE_TEST(test_read_all_follows_symlink_to_regular_file),
        FILE_TEST(test_read_all_of_unreadable_file_says_permission_denied),
        FILE_TEST(test_write_atomic_creates_file_with_exact_mode_despite_umask),
        FILE_TEST(test_write_atomic_private_mode_is_not_widened_by_umask_zero),
        FILE_TEST(test_write_atomic_replaces_content_and_mode),
        FILE_TEST(test_write_atomic_swaps_inode_so_open_readers_keep_old_data),
        FILE_TEST(test_write_atomic_leaves_no_temp_files),
        FILE_TEST(test_write_atomic_of_zero_bytes_makes_empty_file),
        FILE_TEST(test_write_atomic_round_trips_a_megabyte),
        FILE_TEST(test_write_atomic_over_directory_fails_and_cleans_up),
        FILE_TEST(test_write_atomic_into_missing_directory_reports_not_found),
        FILE_TEST(test_write_atomic_into_unwritable_directory_says_permission_denied),
        FILE_TEST(test_create_exclusive_writes_data_with_exact_mode),
        FILE_TEST(test_create_exclusive_refuses_existing_file_and_keeps_it),
        FILE_TEST(test_create_exclusive_does_not_follow_dangling_symlink),
        FILE_TEST(test_create_exclusive_in_missing_directory_reports_not_found),
        FILE_TEST(test_ensure_dir_creates_missing_directory_with_mode),
        FILE_TEST(test_ensure_dir_accepts_existing_private_directory_untouched),
        FILE_TEST(test_ensure_dir_narrows_an_open_directory_of_ours),
        FILE_TEST(test_ensure_dir_refuses_an_open_directory_of_another_user),
        FILE_TEST(test_ensure_dir_follows_a_symlink_and_checks_its_target),
        FILE_TEST(test_ensure_private_narrows_a_readable_key),
        FILE_TEST(test_create_private_if_missing_makes_0600_whatever_the_umask),
        FILE_TEST(test_rename_replaces_the_target),
        FILE_TEST(test_ensure_dir_rejects_existing_regular_file),
        FILE_TEST(test_ensure_dir_does_not_create_parents),
        FILE_TEST(test_strerror_is_lowercase_without_period),
        FILE_TEST(test_strerror_truncates_to_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
