/* libFuzzer target: the JSON body of POST /api/admin/tokens, the admin
 * API's richest body, parsed and checked as the route does
 * (admin_parse_token_request). Only a client with the admin token gets this
 * far, but the body is still bytes from the network. Whatever it holds, the
 * parser must not crash or leak; an accepted body must give a request the
 * store can take as it is (a known role, a non-empty name within the
 * store's bound, uses and ttl >= 1, addresses absent or a list), and every
 * refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "controller/controller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct token_request request = {0};
    json_t *body = NULL;
    struct ztr_err err = {0};
    if (admin_parse_token_request((const char *)data, size, 86400, &request, &body, &err) != 0) {
        if (body != NULL || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (body == NULL || request.role == NULL || request.name == NULL)
        abort();
    if (strcmp(request.role, "connector") != 0 && strcmp(request.role, "tunneler") != 0)
        abort();
    size_t name_len = strlen(request.name);
    if (name_len == 0 || name_len > STORE_NAME_MAX)
        abort();
    if (request.uses < 1 || request.ttl_s < 1)
        abort();
    if (request.addresses != NULL && !json_is_array(request.addresses))
        abort();
    json_decref(body);
    return 0;
}
