/* outlive: the parent exits at once; its child, a second later, creates a segment it never
 * removes and prints "shm ID". */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

int main(void)
{
    pid_t child = fork();
    if (child < 0) {
        perror("outlive: fork");
        return 1;
    }
    if (child == 0) {
        sleep(1);
        int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:late */
        printf("shm %d\n", shm);
        return shm < 0;
    }
    return 0;
}
