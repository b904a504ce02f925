/* The downstream project's own test, linked against libshmtrace (pkg-config) so that
 * `make check` runs it under the shim and reads its verdict. */
#include <shmtrace.h>
#include <stdio.h>

#include "queue.h"

int main(void)
{
    struct queue *q = queue_open();
    int v = 0, ok = q != NULL;
    for (int i = 0; ok && i < 10; i++)
        ok = queue_push(q, i) == 0;
    for (int i = 0; ok && i < 10; i++)
        ok = queue_pop(q, &v) == 0 && v == i;
    if (q)
        queue_close(q);
    printf("test_queue (shmtrace %s): %s\n", shmtrace_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
