/*
 * released: a program that releases everything it acquires itself, while its allocator
 * (jemalloc, preloaded by run.py) maps memory and keeps it: the exit report must set the
 * allocator's mappings aside as retained, not call them leaks.
 *
 *     released [leak]
 *
 * Allocates and frees large and small blocks through malloc, maps and unmaps a region of its
 * own, and with `leak` also leaves one mapping of its own (3 pages) behind: a real leak that
 * must still be reported with the allocator present.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
    return 0;
}
