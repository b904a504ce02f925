/* The pointer scan's cost: a process with SCAN_MIB MiB (default 1024) of touched memory in 64
 * mappings of its own, each holding a pointer to the one before, asks for its report, whose
 * scan line says how many bytes were read and how long it took; then the CPU time the report
 * took. Run with the library preloaded. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PIECES 64

static void **volatile first;

int main(void)
{
    const char *mib_env = getenv("SCAN_MIB");
    size_t mib = mib_env ? strtoul(mib_env, NULL, 10) : 1024;
    size_t len = mib * 1024 * 1024 / PIECES;
    void **prev = NULL;
    for (int i = 0; i < PIECES; i++) {
        void **p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        /* Data that looks like data: small integers, and one pointer per mapping. */
        for (size_t w = 0; w < len / sizeof *p; w++)
            p[w] = (void *)(uintptr_t)(w * 7);
        p[0] = prev;
        prev = p;
    }
    first = prev;
    int (*write_report)(int, int) = (int (*)(int, int))dlsym(RTLD_DEFAULT, "shmtrace_write_report");
    if (!write_report) {
        fprintf(stderr, "scan: run with libshmtrace.so preloaded\n");
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    int rc = write_report(STDOUT_FILENO, 0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("report cpu %.3f ms\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    return rc == 0 ? 0 : 1;
}
