/* The downstream project's own tests: a small xUnit-style runner, linked against libshmtrace
 * (pkg-config), that takes a checkpoint before each test case and asks what the case left
 * behind after it. A case that leaks fails by itself, naming the functions that acquired the
 * leaks; the others pass. `make check` also reads the process's verdict at exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <shmtrace.h>
#include <stdio.h>

#include "queue.h"

static int test_push_pop(void)
{
    struct queue *q = queue_open();
    int v = 0, ok = q != NULL;
    for (int i = 0; ok && i < 10; i++)
        ok = queue_push(q, i) == 0;
    for (int i = 0; ok && i < 10; i++)
        ok = queue_pop(q, &v) == 0 && v == i;
    if (q)
        queue_close(q);
    return ok;
}

static int test_compact(void)
{
    struct queue *q = queue_open();
    int v = 0, ok = q != NULL;
    for (int i = 0; ok && i < 5; i++)
        ok = queue_push(q, i) == 0;
    ok = ok && queue_pop(q, &v) == 0 && queue_compact(q) == 0;
    for (int i = 1; ok && i < 5; i++)
        ok = queue_pop(q, &v) == 0 && v == i;
    if (q)
        queue_close(q);
    return ok;
}

static int test_empty(void)
{
    struct queue *q = queue_open();
    int v, ok = q != NULL && queue_pop(q, &v) == -1;
    if (q)
        queue_close(q);
    return ok;
}

/* The function a call site lies in (the program is linked with -rdynamic for dladdr). */
static void print_site(uintptr_t site)
{
    Dl_info info;
    if (dladdr((void *)site, &info) && info.dli_sname)
        printf("    acquired in %s+%#lx\n", info.dli_sname, (unsigned long)(site - (uintptr_t)info.dli_saddr));
    else
        printf("    acquired at %#lx\n", (unsigned long)site);
}

int main(void)
{
    static const struct {
        const char *name;
        int (*run)(void);
    } tests[] = {{"push_pop", test_push_pop}, {"compact", test_compact}, {"empty", test_empty}};
    int failed = 0;
    printf("test_queue (shmtrace %s)\n", shmtrace_version());
    for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t checkpoint = shmtrace_checkpoint();
        int ok = tests[i].run();
        shmtrace_leak_summary leaks;
        if (shmtrace_leaks_since(checkpoint, &leaks) == SHMTRACE_OK && leaks.leaks > 0) {
            printf("FAIL %s: leaked %llu segment(s), %llu mapping(s), %llu attachment(s)\n",
                   tests[i].name, (unsigned long long)leaks.segments,
                   (unsigned long long)leaks.lost_mappings,
                   (unsigned long long)leaks.lost_attachments);
            for (uint32_t s = 0; s < leaks.site_count; s++)
                print_site(leaks.sites[s]);
            ok = 0;
        } else if (!ok) {
            printf("FAIL %s\n", tests[i].name);
        } else {
            printf("ok   %s\n", tests[i].name);
        }
        failed += !ok;
    }
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
