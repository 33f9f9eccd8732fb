/* The HTTP client of the CLIs (libcurl), apart from the server so that
 * daemons that only serve HTTP do not link libcurl. */
#include "controller/http_client.h"
#include "net/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void
curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct response_sink {
    char *data;
    size_t len;
    size_t cap;
    bool too_large;
    bool no_memory;
};

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct response_sink *sink = userdata;
    size_t len = size * nmemb;
    if (len > HTTP_BODY_MAX - sink->len) {
        sink->too_large = true;
        return 0; /* anything short of len makes curl abort the transfer */
    }
    size_t need = sink->len + len + 1;
    if (need > sink->cap) {
        size_t cap = sink->cap != 0 ? sink->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(sink->data, cap);
        if (grown == NULL) {
            sink->no_memory = true;
            return 0;
        }
        sink->data = grown;
        sink->cap = cap;
    }
    memcpy(sink->data + sink->len, ptr, len);
    sink->len += len;
    sink->data[sink->len] = '\0';
    return len;
}

/* A method goes into the request line verbatim: only a plain token. */
static bool
valid_method(const char *method)
{
    size_t len = strlen(method);
    if (len == 0 || len > 16)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (method[i] < 'A' || method[i] > 'Z')
            return false;
    }
    return true;
}

/* The bearer travels only in this header. Our formatted copy is wiped
 * here, curl's copy in the list by free_headers(). */
static int
add_bearer(struct curl_slist **headers, const char *bearer, struct ztr_err *err)
{
    if (strpbrk(bearer, "\r\n") != NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "bearer token contains a line break");
    static const char prefix[] = "Authorization: Bearer ";
    size_t len = sizeof(prefix) + strlen(bearer);
    char *line = malloc(len);
    if (line == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    snprintf(line, len, "%s%s", prefix, bearer);
    struct curl_slist *grown = curl_slist_append(*headers, line);
    explicit_bzero(line, len);
    free(line);
    if (grown == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    *headers = grown;
    return 0;
}

static void
free_headers(struct curl_slist *headers)
{
    for (struct curl_slist *h = headers; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(headers);
}

static int
build_headers(const char *bearer, const char *body, struct curl_slist **headers,
              struct ztr_err *err)
{
    *headers = NULL;
    if (bearer != NULL && add_bearer(headers, bearer, err) != 0)
        return -1;
    if (body != NULL) {
        struct curl_slist *grown = curl_slist_append(*headers, "Content-Type: application/json");
        if (grown == NULL) {
            free_headers(*headers);
            *headers = NULL;
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        *headers = grown;
    }
    return 0;
}

static void
set_method(CURL *curl, const char *method, const char *body)
{
    bool sends_body = body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    bool head = strcmp(method, "HEAD") == 0;
    if (sends_body) {
        const char *data = body != NULL ? body : "";
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(data));
    } else if (head) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    }
    /* Each option above implies a method; any other is named explicitly. */
    const char *implied = sends_body ? "POST" : head ? "HEAD" : "GET";
    if (strcmp(method, implied) != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
}

static int
transfer_failed(CURL *curl, CURLcode rc, const struct response_sink *sink, const char *method,
                const char *url, long timeout_ms, const char *detail, struct ztr_err *err)
{
    if (sink->too_large)
        return ztr_err_set(err, ZTR_E_LIMIT, "%s %s: response larger than %d bytes", method,
                           url, HTTP_BODY_MAX);
    if (sink->no_memory)
        return ztr_err_set(err, ZTR_E_NOMEM, "%s %s: out of memory", method, url);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return ztr_err_set(err, ZTR_E_IO, "%s %s: timed out after %ld ms", method, url,
                           timeout_ms);
    long os_errno = 0;
    if (rc == CURLE_COULDNT_CONNECT &&
        curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno != 0) {
        char reason[128];
        return ztr_err_set(err, ZTR_E_IO, "%s %s: connect: %s", method, url,
                           file_strerror((int)os_errno, reason, sizeof(reason)));
    }
    int code = ZTR_E_IO;
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        code = HTTP_CLIENT_E_UNTRUSTED;
    else if (rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR ||
             rc == CURLE_WEIRD_SERVER_REPLY)
        code = HTTP_CLIENT_E_NO_REPLY;
    else if (rc == CURLE_SSL_CONNECT_ERROR)
        code = HTTP_CLIENT_E_TLS;
    return ztr_err_set(err, code, "%s %s: %s", method, url,
                       detail[0] != '\0' ? detail : curl_easy_strerror(rc));
}

/* https only: TLS 1.3, the peer and its name always verified, and with a
 * CA file only that file's CAs trusted (not the system store beside it). */
static void
set_tls(CURL *curl, const char *ca_file)
{
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
}

static int
perform(CURL *curl, const char *method, const char *url, long timeout_ms, long *status,
        char **body_out, struct ztr_err *err)
{
    struct response_sink sink = {0};
    char detail[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    /* No SIGALRM-based resolver timeouts: the CLIs may be threaded. */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    /* The URL comes from a flag or config: never let it read file:// etc. */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        free(sink.data);
        return transfer_failed(curl, rc, &sink, method, url, timeout_ms, detail, err);
    }
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    char *body = sink.data != NULL ? sink.data : strdup("");
    if (body == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    if (status != NULL)
        *status = code;
    if (body_out != NULL)
        *body_out = body;
    else
        free(body);
    return 0;
}

int
http_client_request(const char *method, const char *url, const char *bearer, const char *body,
                    long timeout_ms, long *status, char **body_out, struct ztr_err *err)
{
    return http_client_request_ca(method, url, NULL, bearer, body, timeout_ms, status,
                                  body_out, err);
}

int
http_client_request_ca(const char *method, const char *url, const char *ca_file,
                       const char *bearer, const char *body, long timeout_ms, long *status,
                       char **body_out, struct ztr_err *err)
{
    if (status != NULL)
        *status = 0;
    if (body_out != NULL)
        *body_out = NULL;
    if (!valid_method(method))
        return ztr_err_set(err, ZTR_E_INVALID, "invalid HTTP method \"%s\"", method);
    if (timeout_ms <= 0)
        return ztr_err_set(err, ZTR_E_INVALID, "%s %s: timeout must be positive", method, url);
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK)
        return ztr_err_set(err, ZTR_E_IO, "%s %s: libcurl: %s", method, url,
                           curl_easy_strerror(curl_init_result));
    struct curl_slist *headers = NULL;
    TRY(build_headers(bearer, body, &headers, err));
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        free_headers(headers);
        return ztr_err_set(err, ZTR_E_NOMEM, "%s %s: libcurl: cannot create a handle", method,
                           url);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    set_method(curl, method, body);
    set_tls(curl, ca_file);
    int rc = perform(curl, method, url, timeout_ms, status, body_out, err);
    curl_easy_cleanup(curl);
    free_headers(headers);
    return rc;
}
