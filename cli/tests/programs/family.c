/* family: the parent creates a segment; a forked child removes it (not a leak: removed by
 * another process of the tree) and creates a semaphore set that nobody removes (the leak, the
 * child's). Prints "shm ID" and "sem ID" for the test's cleanup. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int make_set(void)
{
    return semget(IPC_PRIVATE, 1, IPC_CREAT | 0600); /* LINE:semget */
}

int main(void)
{
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:shmget */
    if (shm < 0) {
        perror("family: shmget");
        return 1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);

    pid_t child = fork();
    if (child < 0) {
        perror("family: fork");
        shmctl(shm, IPC_RMID, NULL);
        return 1;
    }
    if (child == 0) {
        if (shmctl(shm, IPC_RMID, NULL) != 0) {
            perror("family: shmctl");
            exit(1);
        }
        int sem = make_set();
        if (sem < 0) {
            perror("family: semget");
            exit(1);
        }
        printf("sem %d\n", sem);
        exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child)
        return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
