/* tree: a small process tree for the HTML report's browser test. The parent creates a
 * world-accessible segment (finding SHM001) and removes it at the end; a forked child maps
 * ten areas and unmaps nine (one mapping leaked); a second child execs this program again,
 * which attaches and detaches the segment and creates a semaphore set it never removes (the
 * SysV leak); a third child kills itself with SIGKILL (no exit report). Prints "shm ID" and "sem ID" for cleanup. `tree many N` maps and unmaps a page
 * N times (2N calls, nothing left): a run longer than the timeline has pixels. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define AREAS 10

static int exec_child(int shmid)
{
    void *at = shmat(shmid, NULL, 0);
    if (at == (void *)-1) {
        perror("tree: shmat");
        return 1;
    }
    shmdt(at);
    int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600); /* LINE:semget */
    if (sem < 0) {
        perror("tree: semget");
        return 1;
    }
    printf("sem %d\n", sem);
    return 0;
}

static int mapping_child(void)
{
    void *areas[AREAS];
    for (int i = 0; i < AREAS; i++) {
        areas[i] = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (areas[i] == MAP_FAILED) {
            perror("tree: mmap");
            return 1;
        }
        usleep(2000);
    }
    for (int i = 1; i < AREAS; i++)
        munmap(areas[i], 65536);
    return 0;
}

static int many(long n)
{
    for (long i = 0; i < n; i++) {
        void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, 4096) != 0) {
            perror("tree: many");
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "exec"))
        return exec_child(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "many"))
        return many(atol(argv[2]));

    int shm = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0666); /* LINE:shmget */
    if (shm < 0) {
        perror("tree: shmget");
        return 1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);

    pid_t mapper = fork();
    if (mapper == 0)
        _exit(mapping_child());
    pid_t execer = fork();
    if (execer == 0) {
        char id[16];
        snprintf(id, sizeof id, "%d", shm);
        execl("/proc/self/exe", argv[0], "exec", id, (char *)NULL);
        perror("tree: exec");
        _exit(127);
    }
    pid_t killed = fork();
    if (killed == 0) {
        mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        raise(SIGKILL);
        _exit(1);
    }
    int status;
    int failed = 0;
    pid_t done;
    while ((done = wait(&status)) > 0) {
        if (done == killed)
            failed |= !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL;
        else
            failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    /* Some traffic for the counters: maps and unmaps, a few at a time. */
    for (int i = 0; i < 50; i++) {
        void *p = mmap(NULL, 4096 * (i % 5 + 1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED && i % 3 != 0)
            munmap(p, 4096 * (i % 5 + 1));
    }
    shmctl(shm, IPC_RMID, NULL);
    return failed;
}
