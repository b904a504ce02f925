/* envprint: prints the shim's environment variables as the program sees them. */
#include <stdio.h>
#include <stdlib.h>

static void show(const char *name)
{
    const char *value = getenv(name);
    printf("%s=%s\n", name, value ? value : "(unset)");
}

int main(void)
{
    show("LD_PRELOAD");
    show("SHMTRACE_LOG");
    show("SHMTRACE_FORMAT");
    show("SHMTRACE_EXITCODE");
    show("SHMTRACE_TEST_MARK");
    return 0;
}
