/* Per-test leak checks: a checkpoint before each of three test cases, the leaks since it
 * after. Only the leaky one (a segment and a lost mapping) has leaks; the one that keeps a
 * mapping in a global has it still reachable. Prints one line per test for the runner, then
 * removes the segment it leaked on purpose. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#include "shmtrace.h"

static void *volatile kept;
static void *volatile scratch;
static int leaked_shmid = -1;

static void test_clean(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, 4096);
}

static __attribute__((noinline)) void test_leaky(void)
{
    leaked_shmid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    scratch = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    scratch = NULL;
}

static void test_keeps(void)
{
    kept = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

int main(void)
{
    struct {
        const char *name;
        void (*run)(void);
    } tests[] = {{"clean", test_clean}, {"leaky", test_leaky}, {"keeps", test_keeps}};
    for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t cp = shmtrace_checkpoint();
        tests[i].run();
        shmtrace_leak_summary s;
        if (shmtrace_leaks_since(cp, &s) != SHMTRACE_OK)
            return 2;
        printf("%s leaks=%llu segments=%llu lost_mappings=%llu lost_bytes=%llu "
               "reachable_mappings=%llu reachable_bytes=%llu sites=%u\n",
               tests[i].name, (unsigned long long)s.leaks, (unsigned long long)s.segments,
               (unsigned long long)s.lost_mappings, (unsigned long long)s.lost_bytes,
               (unsigned long long)s.reachable_mappings, (unsigned long long)s.reachable_bytes,
               s.site_count);
    }
    shmtrace_leak_summary all;
    if (shmtrace_leaks_since(0, &all) != SHMTRACE_OK || shmtrace_leaks_since(0, NULL) != SHMTRACE_NULL_ARGUMENT)
        return 2;
    printf("all leaks=%llu\n", (unsigned long long)all.leaks);
    if (leaked_shmid >= 0)
        shmctl(leaked_shmid, IPC_RMID, NULL);
    return 0;
}
