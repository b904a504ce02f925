/* api: the C API in <shmtrace.h> (linked build only). */
#include "harness.h"

#include <shmtrace.h>

int main(void)
{
    char parts[64];
    const char *v = shmtrace_version();
    CHECK(v != NULL);
    printf("shmtrace_version() = %s\n", v);
    expect_eq("shmtrace_version() equals SHMTRACE_VERSION", strcmp(v, SHMTRACE_VERSION), 0);
    snprintf(parts, sizeof parts, "%d.%d.%d", (int)SHMTRACE_VERSION_MAJOR,
             (int)SHMTRACE_VERSION_MINOR, (int)SHMTRACE_VERSION_PATCH);
    expect_eq("SHMTRACE_VERSION is MAJOR.MINOR.PATCH", strcmp(SHMTRACE_VERSION, parts), 0);
    return 0;
}
