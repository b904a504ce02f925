/*
 * released: a program that releases everything it acquires itself, while its allocator
 * (jemalloc, preloaded by run.py) maps memory and keeps it: the exit report must set the
 * allocator's mappings aside as retained, not call them leaks.
 *
 *     released [leak | fork-locked]
 *
 * Allocates and frees large and small blocks through malloc, maps and unmaps a region of its
 * own, and with `leak` also leaves one mapping of its own (3 pages) behind: a real leak that
 * must still be reported with the allocator present.
 *
 * `fork-locked`: then forks while another thread is inside dl_iterate_phdr (holding the
 * loader's lock, which glibc never resets in the child); the child allocates a large block
 * (the allocator maps it) and exits: its report, which looks for the allocator's module, must
 * not wait for that lock (a child not gone within 8 s is reported `HUNG pid`).
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int hold[2], entered[2];

static int hold_loader_lock(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (void)data;
    char c = 'x';
    if (write(entered[1], &c, 1) != 1 || read(hold[0], &c, 1) != 1)
        return 1;
    return 1;
}

static void *holder(void *arg)
{
    (void)arg;
    dl_iterate_phdr(hold_loader_lock, NULL);
    return NULL;
}

static int fork_while_loader_locked(void)
{
    pthread_t thread;
    char c;
    if (pipe(hold) || pipe(entered) || pthread_create(&thread, NULL, holder, NULL) ||
        read(entered[0], &c, 1) != 1) {
        printf("FAIL setting up the thread inside dl_iterate_phdr\n");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        printf("FAIL fork\n");
        return 1;
    }
    if (child == 0) {
        char *block = malloc((size_t)64 << 20);
        if (!block)
            _exit(3);
        memset(block, 1, 4096);
        free(block);
        exit(0);
    }
    int status = 0, done = 0;
    for (int i = 0; i < 800 && !done; i++) {
        done = waitpid(child, &status, WNOHANG) == child;
        if (!done)
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    c = 'x';
    if (write(hold[1], &c, 1) != 1 || pthread_join(thread, NULL)) {
        printf("FAIL releasing the thread inside dl_iterate_phdr\n");
        return 1;
    }
    if (!done) {
        printf("FAIL child %d did not exit within 8 s (its exit report waits?)\nHUNG %d\n",
               (int)child, (int)child);
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL child ended with status 0x%x\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long page = sysconf(_SC_PAGESIZE);
    for (int round = 0; round < 8; round++) {
        void *blocks[16];
        for (int i = 0; i < 16; i++) {
            size_t size = (size_t)(i + 1) << 16;
            blocks[i] = malloc(size);
            if (!blocks[i]) {
                printf("FAIL malloc(%zu)\n", size);
                return 1;
            }
            memset(blocks[i], i, size);
        }
        for (int i = 0; i < 16; i++)
            free(blocks[i]);
    }
    char *own = mmap(NULL, (size_t)page * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (own == MAP_FAILED || munmap(own, (size_t)page * 4) != 0) {
        printf("FAIL own mapping\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "leak") == 0) {
        char *kept = mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (kept == MAP_FAILED) {
            printf("FAIL leak mapping\n");
            return 1;
        }
        kept[0] = 1;
    }
    if (argc > 1 && strcmp(argv[1], "fork-locked") == 0)
        return fork_while_loader_locked();
    return 0;
}
