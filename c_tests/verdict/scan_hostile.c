/* The scan never faults: a file mapping cut short by ftruncate (its tail raises SIGBUS when
 * touched), a PROT_NONE reservation, a mapping made inaccessible after the fact, and mappings
 * another thread unmaps while scans run (each referenced from a global, so scans read them).
 * Scans run through shmtrace_leak_count while the thread works, then at exit. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 64

static void *volatile truncated, *volatile reserved, *volatile closed;
static void *volatile churn[SLOTS];
static volatile int stop;

static void *churner(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !stop; i++) {
        unsigned k = i % SLOTS;
        void *old = churn[k];
        void **p = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            continue;
        p[0] = (void *)churn[(k + 1) % SLOTS];
        churn[k] = p;
        if (old)
            munmap(old, 16 * 4096);
    }
    return NULL;
}

int main(void)
{
    char path[] = "/tmp/shmtrace-scan-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 4 * 4096) != 0)
        return 2;
    truncated = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (truncated == MAP_FAILED || ftruncate(fd, 100) != 0)
        return 2;
    unlink(path);
    close(fd);
    reserved = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    closed = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reserved == MAP_FAILED || closed == MAP_FAILED || mprotect(closed, 8192, PROT_NONE) != 0)
        return 2;

    int64_t (*leak_count)(void) = (int64_t (*)(void))dlsym(RTLD_DEFAULT, "shmtrace_leak_count");
    pthread_t t;
    if (pthread_create(&t, NULL, churner, NULL) != 0)
        return 2;
    int scans = 0;
    for (int i = 0; i < 200 && leak_count; i++, scans++)
        if (leak_count() < 0)
            return 3;
    stop = 1;
    pthread_join(t, NULL);
    printf("scans %d\n", scans);
    return 0;
}
