/* stacks: one helper creates a segment (a leak), attaches it, and maps a page, and is called
 * through two call chains, so that only the stack above the call sites tells the two apart:
 *   main -> first_chain -> first_leaf -> leak_here
 *   main -> second_chain -> second_middle -> second_leaf -> leak_here
 * Every function keeps its frame (noinline, no tail calls), and each call is on a marked line.
 * Prints `shm ID` for each segment. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define KEEP __attribute__((noinline, optimize("no-optimize-sibling-calls")))

KEEP static int leak_here(void)
{
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:shmget */
    if (shm < 0) {
        perror("stacks: shmget");
        return -1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);
    void *at = shmat(shm, NULL, 0);                                              /* LINE:shmat */
    void *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* LINE:mmap */
    if (at == (void *)-1 || map == MAP_FAILED) {
        perror("stacks: shmat/mmap");
        return -1;
    }
    return 0;
}

KEEP static int first_leaf(void)
{
    int r = leak_here(); /* LINE:first_leaf */
    return r;
}

KEEP static int first_chain(void)
{
    int r = first_leaf(); /* LINE:first_chain */
    return r;
}

KEEP static int second_leaf(void)
{
    int r = leak_here(); /* LINE:second_leaf */
    return r;
}

KEEP static int second_middle(void)
{
    int r = second_leaf(); /* LINE:second_middle */
    return r;
}

KEEP static int second_chain(void)
{
    int r = second_middle(); /* LINE:second_chain */
    return r;
}

int main(void)
{
    if (first_chain() != 0) /* LINE:main_first */
        return 1;
    if (second_chain() != 0) /* LINE:main_second */
        return 1;
    return 0;
}
