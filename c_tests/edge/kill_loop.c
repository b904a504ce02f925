/*
 * kill_loop: processes killed with SIGKILL at random moments while they are inside the hooks.
 * run.py then checks that every line of their logs is whole.
 *
 *   kill_loop driver N SEED   creates a segment and a semaphore set, then N times forks a child
 *                             that loops on every hook (on the inherited objects; it creates
 *                             none, so a killed child leaks nothing) and, once the child says
 *                             it is looping, SIGKILLs it after a pseudo-random 0..4 ms; removes
 *                             the objects at the end
 *   kill_loop solo            loops on every hook forever without creating any SysV object
 *                             (run.py starts it and kills it itself, also during start-up)
 */
#include "../harness.h"
#include "edge.h"

#include <sys/wait.h>

/* One round of every hook; shmid/semid < 0: the SysV calls fail (EINVAL) instead. */
static void hooks_round(int shmid, int semid)
{
    const int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    char *p = mmap(NULL, 4096, rw, pa, -1, 0);
    if (p != MAP_FAILED) {
        p[0] = 1;
        char *q = mremap(p, 4096, 2 * 4096, MREMAP_MAYMOVE);
        munmap(q != MAP_FAILED ? q : p, 2 * 4096);
    }
    p = mmap64(NULL, 4096, rw, pa, -1, 0);
    munmap(p, 4096);
    munmap(p + 1, 4096); /* EINVAL */
    void *a = shmat(shmid, NULL, 0);
    if (a != (void *)-1)
        shmdt(a);
    struct shmid_ds ds;
    shmctl(shmid, IPC_STAT, &ds);
    /* 8 operations: long records, more of them straddle a 4 KiB boundary of the file */
    struct sembuf ops[8] = {{0, 1, SEM_UNDO}, {0, -1, SEM_UNDO}, {0, 0, IPC_NOWAIT},
                            {1, 0, IPC_NOWAIT}, {0, 0, IPC_NOWAIT}, {1, 0, IPC_NOWAIT},
                            {0, 0, IPC_NOWAIT}, {1, 0, IPC_NOWAIT}};
    semop(semid, ops, 8);
    semctl(semid, 0, GETVAL);
    struct sembuf take = {1, -1, 0};
    struct timespec ts = {0, 100000};
    semtimedop(semid, &take, 1, &ts); /* blocks 100 us: sem 1 stays 0 */
    semget(IPC_PRIVATE, -1, 0600);    /* EINVAL: creates nothing */
    shmget(IPC_PRIVATE, 0, 0600);     /* EINVAL */
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "solo") == 0) {
        alarm(0);
        for (;;)
            hooks_round(-1, -1);
    }
    CHECK(argc == 4 && strcmp(argv[1], "driver") == 0);
    int n = atoi(argv[2]);
    unsigned seed = (unsigned)strtoul(argv[3], NULL, 10);
    int shmid = CALL_INT("shmget", shmget, IPC_PRIVATE, 65536, IPC_CREAT | 0600);
    int semid = CALL_INT("semget", semget, IPC_PRIVATE, 2, IPC_CREAT | 0600);
    CHECK(shmid >= 0 && semid >= 0);
    int killed = 0, other = 0;
    for (int i = 0; i < n; i++) {
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            hooks_round(shmid, semid);
            char c = 1;
            if (write(ready[1], &c, 1) != 1) /* "I am in the loop" */
                _exit(1);
            for (;;)
                hooks_round(shmid, semid);
        }
        char c;
        CHECK(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        close(ready[1]);
        sleep_us(rand_r(&seed) % 4000);
        CHECK(kill(pid, SIGKILL) == 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
        else
            other++;
    }
    printf("children killed by SIGKILL: %d of %d (other ends: %d)\n", killed, n, other);
    CHECK(rmid_shm("rmid_shm", shmid) == 0);
    CHECK(rmid_sem("rmid_sem", semid) == 0);
    return 0;
}
