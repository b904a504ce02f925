/* outlive: the parent exits at once; its child, a second later, creates a segment it never
 * removes and prints "shm ID". The parent exits only once the child runs (its fork record is
 * in its log then), so that even a report made at once knows the child. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

int main(void)
{
    int running[2];
    if (pipe(running) != 0) {
        perror("outlive: pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("outlive: fork");
        return 1;
    }
    if (child == 0) {
        close(running[0]);
        close(running[1]); /* the parent's read returns: this process runs */
        sleep(1);
        int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:late */
        printf("shm %d\n", shm);
        return shm < 0;
    }
    close(running[1]);
    char byte;
    if (read(running[0], &byte, 1) < 0) {
        perror("outlive: read");
        return 1;
    }
    return 0;
}
