/* build/bin/controller: `serve` (the default) runs the daemon; every other
 * subcommand is a CLI over the admin API. */
#include <string.h>

#include "controller/controller.h"

int
main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return daemon_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return daemon_main(argc - 2, argv + 2);
    return cli_main(argc - 1, argv + 1);
}
