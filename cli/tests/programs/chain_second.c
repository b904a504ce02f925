/* chain_second: exec'd by chain_first in the same process; creates a semaphore set it never
 * removes. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/sem.h>

int main(void)
{
    int sem = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600); /* LINE:semget */
    if (sem < 0) {
        perror("chain_second: semget");
        return 1;
    }
    printf("sem %d\n", sem);
    return 0;
}
