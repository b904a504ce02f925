/* blocker: creates a semaphore set (value 0), forks a child that blocks in semop on it, waits
 * until the child sleeps in the kernel, prints "ready SEMID CHILD PARENT", then waits forever.
 * The test kills both with SIGKILL: the set is left behind and the child's semop never
 * returns. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <time.h>
#include <unistd.h>

static void wait_forever(int sem)
{
    struct sembuf op = {.sem_num = 0, .sem_op = -1, .sem_flg = 0};
    semop(sem, &op, 1); /* LINE:semop */
}

int main(void)
{
    int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600); /* LINE:semget */
    if (sem < 0) {
        perror("blocker: semget");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("blocker: fork");
        return 1;
    }
    if (child == 0) {
        wait_forever(sem);
        _exit(3);
    }
    for (int i = 0; i < 10000; i++) {
        if (semctl(sem, 0, GETNCNT) == 1) {
            printf("ready %d %d %d\n", sem, (int)child, (int)getpid());
            fflush(stdout);
            for (;;)
                pause();
        }
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    fprintf(stderr, "blocker: the child never blocked\n");
    kill(child, SIGKILL);
    return 1;
}
