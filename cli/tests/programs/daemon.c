/* daemon: a launcher that starts a daemon the classic way (fork, setsid, fork) and exits once
 * the daemon is ready. The daemon creates a segment it keeps attached and a semaphore set it
 * operates on, prints "daemon PID", "shm ID" and "sem ID", then runs for SECONDS (argv[1])
 * with its standard streams on /dev/null, and exits without removing either: they are its
 * state while it runs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

static void daemon_main(int ready, unsigned seconds)
{
    int shm = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
    int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (shm < 0 || sem < 0) {
        perror("daemon: get");
        exit(1);
    }
    if (shmat(shm, NULL, 0) == (void *)-1) {
        perror("daemon: shmat");
        exit(1);
    }
    struct sembuf up = {0, 1, 0};
    if (semop(sem, &up, 1) != 0) {
        perror("daemon: semop");
        exit(1);
    }
    printf("daemon %d\nshm %d\nsem %d\n", (int)getpid(), shm, sem);
    fflush(stdout);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    close(null);
    close(ready);
    sleep(seconds);
}

int main(int argc, char **argv)
{
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 30;
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        perror("daemon: pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("daemon: fork");
        return 1;
    }
    if (child == 0) {
        close(pipefd[0]);
        setsid();
        if (fork() == 0) {
            daemon_main(pipefd[1], seconds);
        }
        _exit(0);
    }
    close(pipefd[1]);
    char c;
    /* EOF: the daemon is ready (or died). */
    while (read(pipefd[0], &c, 1) > 0) {
    }
    return 0;
}
