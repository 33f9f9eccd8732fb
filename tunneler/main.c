/* build/bin/tunneler: the agent core (common/agent.h) in the tunneler role.
 * It learns which connectors it may use from the controller; the forwards
 * and SOCKS5 front ends that dial them are built on this in their own
 * module. */
#include "common/agent.h"
#include "common/log.h"

static void
tunneler_on_connectors(void *ctx, const json_t *msg)
{
    (void)ctx;
    log_info("connector list received", "version=%lld connectors=%zu",
             (long long)json_integer_value(json_object_get(msg, "version")),
             json_array_size(json_object_get(msg, "connectors")));
}

int
main(int argc, char **argv)
{
    struct agent_spec spec = {
        .role = PKI_ROLE_TUNNELER,
        .default_state_dir = "/var/lib/ztr-tunneler",
        .default_health_listen = "127.0.0.1:9102",
        .on_connectors = tunneler_on_connectors,
    };
    return agent_main(&spec, argc - 1, argv + 1);
}
