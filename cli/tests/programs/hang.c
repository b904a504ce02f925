/* hang: processes that block in semop, in the patterns the wait-for graph must tell apart.
 *
 *   hang cycle N      N children (2 or 3) each take semaphore i of a set whose values are all 1,
 *                     then wait for semaphore i+1 (the last for 0): a deadlock of N processes.
 *   hang slow         child A takes semaphore 0 and sleeps; child B waits for it: no deadlock.
 *   hang undo         child A takes semaphore 0 with SEM_UNDO and sleeps; child B waits for it.
 *                     When A is killed, the kernel gives the unit back, B gets it and exits 0,
 *                     and the parent exits 0 once both children are gone.
 *   hang zero         child A raises semaphore 0 to 1 and sleeps; child B waits for zero.
 *   hang removed      child B waits for semaphore 0; the parent removes the set: B's semop
 *                     fails with EIDRM and B exits 2; the parent exits 0.
 *   hang pingpong S   two children pass a token back and forth for S seconds, then exit 0.
 *   hang prodcons S   a producer and two consumers over a 4-slot buffer for S seconds.
 *   hang keep         child A takes semaphore 0 (a lock at 1) without SEM_UNDO and exits
 *                     holding it; the parent removes the set and exits 0.
 *   hang handoff      one round of ping-pong: child B waits for semaphore 1, child A takes
 *                     semaphore 0 (at 1) and gives 1, B takes it and gives 0 back; both exit
 *                     having taken what the other gave. The parent removes the set, exits 0.
 *
 * The blocking modes print "ready SEMID PID..." (the set, then every child) once every waiter
 * sleeps in the kernel, then the parent waits for its children. The timed modes print
 * "running SEMID" and exit 0 when done, removing their set. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int set;

static void op(unsigned short num, short delta, short flags)
{
    struct sembuf b = {.sem_num = num, .sem_op = delta, .sem_flg = flags};
    if (semop(set, &b, 1) < 0) {
        perror("hang: semop");
        _exit(2);
    }
}

static void take(int num)
{
    struct sembuf b = {.sem_num = (unsigned short)num, .sem_op = -1, .sem_flg = 0};
    if (semop(set, &b, 1) < 0) /* LINE:take */
        _exit(2);
}

static void wait_for(unsigned short num)
{
    struct sembuf b = {.sem_num = num, .sem_op = -1, .sem_flg = 0};
    if (semop(set, &b, 1) < 0) /* LINE:wait */
        _exit(2);
}

static void sleep_forever(void)
{
    for (;;)
        pause();
}

static void nap_ms(long ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000}, NULL);
}

/* Waits (up to 10 s) until `n` processes sleep on semaphore `num` (decrement, or zero if `zero`). */
static int sleepers(unsigned short num, int n, int zero)
{
    for (int i = 0; i < 10000; i++) {
        if (semctl(set, num, zero ? GETZCNT : GETNCNT) == n)
            return 1;
        nap_ms(1);
    }
    return 0;
}

static pid_t child(void (*body)(int), int arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        body(arg);
        _exit(0);
    }
    return pid;
}

static int ring;

static void cycle_member(int i)
{
    take((unsigned short)i);
    /* Everyone holds its own before anyone waits for the next. */
    op((unsigned short)ring, -1, 0);
    op((unsigned short)ring, 0, 0);
    wait_for((unsigned short)((i + 1) % ring));
}

static void holder(int flags)
{
    struct sembuf b = {.sem_num = 0, .sem_op = -1, .sem_flg = (short)flags};
    if (semop(set, &b, 1) < 0) /* LINE:hold */
        _exit(2);
    sleep_forever();
}

static void waiter(int unused)
{
    (void)unused;
    wait_for(0);
}

static void raiser(int unused)
{
    (void)unused;
    struct sembuf b = {.sem_num = 0, .sem_op = 1, .sem_flg = 0};
    if (semop(set, &b, 1) < 0) /* LINE:raise */
        _exit(2);
    sleep_forever();
}

static void zero_waiter(int unused)
{
    (void)unused;
    struct sembuf b = {.sem_num = 0, .sem_op = 0, .sem_flg = 0};
    if (semop(set, &b, 1) < 0) /* LINE:zero */
        _exit(2);
}

static void report_ready(pid_t *kids, int n)
{
    printf("ready %d", set);
    for (int i = 0; i < n; i++)
        printf(" %d", (int)kids[i]);
    printf("\n");
    fflush(stdout);
}

static int reap(int n)
{
    int failed = 0, status;
    for (int i = 0; i < n; i++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    return failed;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double until;

static void pinger(int me)
{
    /* Semaphore 0 is A's turn, 1 is B's; the token goes back and forth. */
    while (now() < until) {
        op((unsigned short)me, -1, 0);
        op((unsigned short)(1 - me), 1, 0);
    }
    /* Let the other side finish its last round. */
    op((unsigned short)(1 - me), 1, 0);
}

static void pinger_once(int me)
{
    op((unsigned short)me, -1, 0);
    op((unsigned short)(1 - me), 1, 0);
}

enum { EMPTY, FULL, MUTEX };

static void producer(int unused)
{
    (void)unused;
    while (now() < until) {
        op(EMPTY, -1, 0);
        op(MUTEX, -1, SEM_UNDO);
        op(MUTEX, 1, SEM_UNDO);
        op(FULL, 1, 0);
    }
    /* Wake both consumers for good. */
    op(FULL, 100, 0);
}

static void consumer(int unused)
{
    (void)unused;
    while (now() < until) {
        op(FULL, -1, 0);
        op(MUTEX, -1, SEM_UNDO);
        op(MUTEX, 1, SEM_UNDO);
        op(EMPTY, 1, 0);
    }
    /* Never leave the producer waiting for room. */
    op(EMPTY, 100, 0);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int arg = argc > 2 ? atoi(argv[2]) : 0;
    set = semget(IPC_PRIVATE, 4, IPC_CREAT | 0600); /* LINE:semget */
    if (set < 0) {
        perror("hang: semget");
        return 1;
    }
    pid_t kids[3];
    if (strcmp(mode, "cycle") == 0 && (arg == 2 || arg == 3)) {
        ring = arg;
        for (int i = 0; i < ring; i++)
            semctl(set, i, SETVAL, 1); /* LINE:setval */
        semctl(set, ring, SETVAL, ring);
        for (int i = 0; i < ring; i++)
            kids[i] = child(cycle_member, i);
        for (int i = 0; i < ring; i++)
            if (!sleepers((unsigned short)((i + 1) % ring), 1, 0))
                return 1;
        report_ready(kids, ring);
        return reap(ring);
    }
    if (strcmp(mode, "slow") == 0 || strcmp(mode, "undo") == 0) {
        semctl(set, 0, SETVAL, 1);
        kids[0] = child(holder, strcmp(mode, "undo") == 0 ? SEM_UNDO : 0);
        while (semctl(set, 0, GETVAL) != 0)
            nap_ms(1);
        kids[1] = child(waiter, 0);
        if (!sleepers(0, 1, 0))
            return 1;
        report_ready(kids, 2);
        /* The test kills the holder: in undo mode the waiter then gets the unit and exits 0. */
        int status;
        if (waitpid(kids[1], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
        waitpid(kids[0], NULL, 0);
        semctl(set, 0, IPC_RMID);
        return 0;
    }
    if (strcmp(mode, "zero") == 0) {
        kids[0] = child(raiser, 0);
        while (semctl(set, 0, GETVAL) != 1)
            nap_ms(1);
        kids[1] = child(zero_waiter, 0);
        if (!sleepers(0, 1, 1))
            return 1;
        report_ready(kids, 2);
        return reap(2);
    }
    if (strcmp(mode, "keep") == 0) {
        semctl(set, 0, SETVAL, 1);
        kids[0] = child(take, 0);
        int failed = reap(1);
        semctl(set, 0, IPC_RMID);
        return failed;
    }
    if (strcmp(mode, "handoff") == 0) {
        semctl(set, 0, SETVAL, 1);
        kids[1] = child(pinger_once, 1);
        if (!sleepers(1, 1, 0))
            return 1;
        kids[0] = child(pinger_once, 0);
        int failed = reap(2);
        semctl(set, 0, IPC_RMID);
        return failed;
    }
    if (strcmp(mode, "removed") == 0) {
        kids[0] = child(waiter, 0);
        if (!sleepers(0, 1, 0))
            return 1;
        semctl(set, 0, IPC_RMID); /* LINE:rmid */
        int status;
        waitpid(kids[0], &status, 0);
        return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? 0 : 1;
    }
    if ((strcmp(mode, "pingpong") == 0 || strcmp(mode, "prodcons") == 0) && arg > 0) {
        until = now() + arg;
        printf("running %d\n", set);
        fflush(stdout);
        if (strcmp(mode, "pingpong") == 0) {
            semctl(set, 0, SETVAL, 1);
            kids[0] = child(pinger, 0);
            kids[1] = child(pinger, 1);
        } else {
            semctl(set, EMPTY, SETVAL, 4);
            semctl(set, MUTEX, SETVAL, 1);
            kids[0] = child(producer, 0);
            kids[1] = child(consumer, 0);
            kids[2] = child(consumer, 0);
        }
        int n = strcmp(mode, "pingpong") == 0 ? 2 : 3;
        int failed = reap(n);
        semctl(set, 0, IPC_RMID);
        return failed;
    }
    fprintf(stderr, "usage: hang cycle 2|3 | slow | undo | zero | removed | keep | handoff | pingpong S | prodcons S\n");
    semctl(set, 0, IPC_RMID);
    return 1;
}
