/* CONTROLLER_ADDR: one controller or several, by host name or IP, and the
 * one dialed now. */
#include "agent/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "net/net.h"
#include "net/resolver.h"

int
agent_controllers_parse(const char *list,
                        char out[AGENT_CONTROLLERS_MAX][AGENT_CONTROLLER_ADDR_MAX],
                        size_t *count, struct ztr_err *err)
{
    *count = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0)
            return ztr_err_set(err, ZTR_E_INVALID, "empty entry in \"%s\"", list);
        if (*count == AGENT_CONTROLLERS_MAX)
            return ztr_err_set(err, ZTR_E_LIMIT, "more than %d controllers",
                               AGENT_CONTROLLERS_MAX);
        if (len >= AGENT_CONTROLLER_ADDR_MAX)
            return ztr_err_set(err, ZTR_E_LIMIT, "address \"%.32s...\" longer than %d bytes", p,
                               AGENT_CONTROLLER_ADDR_MAX - 1);
        memcpy(out[*count], p, len);
        out[*count][len] = '\0';
        TRY(net_addr_check_name(out[*count], err));
        (*count)++;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

void
agent_controller_advance(struct agent *a)
{
    if (a->resolved_index + 1 < a->resolved.count) {
        a->resolved_index++;
        char address[INET6_ADDRSTRLEN + 8];
        log_info("next controller address", "controller=%s address=%s index=%zu of=%zu",
                 a->controller_addr,
                 net_sockaddr_name(&a->resolved.sa[a->resolved_index], address,
                                   sizeof(address)),
                 a->resolved_index + 1, a->resolved.count);
        return;
    }
    a->resolved.count = 0; /* the name is looked up again */
    a->resolved_index = 0;
    if (a->controller_count < 2)
        return;
    a->controller_index = (a->controller_index + 1) % a->controller_count;
    snprintf(a->controller_addr, sizeof(a->controller_addr), "%s",
             a->controllers[a->controller_index]);
    log_info("next controller", "controller=%s index=%zu of=%zu", a->controller_addr,
             a->controller_index + 1, a->controller_count);
}
