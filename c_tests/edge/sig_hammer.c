/*
 * sig_hammer: a timer signal hammers threads that are busy inside the hooks, and its handler
 * calls mmap/mremap/munmap itself. No deadlock, no crash, every call in the
 * handler and in the loop succeeds as natively.
 *
 *   sig_hammer thread    one worker loops on every hook; a POSIX timer sends SIGUSR2 to that
 *                        thread every 50 us (SIGEV_THREAD_ID)
 *   sig_hammer process   two workers and the main thread loop; the timer signal is
 *                        process-directed, so it lands on whichever thread the kernel picks
 *   sig_hammer fork      the worker loops on fork() (child: _exit) and mmap/munmap while the
 *                        timer hammers it: the signal arrives between the shim's fork
 *                        handlers, around the fork system call
 *
 * Each run lasts DURATION seconds of looping; the output does not depend on timing: it says
 * whether every call behaved and whether the handler ran often enough to mean something.
 */
#include "../harness.h"
#include "edge.h"

#include <stdatomic.h>
#include <sys/wait.h>

#define DURATION 0.4
#define PERIOD_NS 50000
#define MIN_HANDLER_RUNS 20

static int semid, shmid;
static volatile sig_atomic_t stop;
static atomic_long h_runs, h_fail, loop_fail, loops;

static void on_timer(int sig)
{
    (void)sig;
    int saved = errno;
    atomic_fetch_add(&h_runs, 1);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        atomic_fetch_add(&h_fail, 1);
        errno = saved;
        return;
    }
    p[8191] = 1;
    char *q = mremap(p, 8192, 4096, 0); /* shrinks in place */
    if (q != p)
        atomic_fetch_add(&h_fail, 1);
    if (munmap(p, q == p ? 4096 : 8192) != 0)
        atomic_fetch_add(&h_fail, 1);
    errno = saved;
}

#define EXPECT(cond)                           \
    do {                                       \
        if (!(cond))                           \
            atomic_fetch_add(&loop_fail, 1);   \
    } while (0)

/* One round of every hook. */
static void hooks_round(void)
{
    const int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    char *p = mmap(NULL, 4096, rw, pa, -1, 0);
    EXPECT(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        p[0] = 1;
        char *q = mremap(p, 4096, 3 * 4096, MREMAP_MAYMOVE);
        EXPECT(q != MAP_FAILED);
        EXPECT(munmap(q != MAP_FAILED ? q : p, q != MAP_FAILED ? 3 * 4096 : 4096) == 0);
    }
    p = mmap64(NULL, 4096, rw, pa, -1, 0);
    EXPECT(p != MAP_FAILED);
    if (p != MAP_FAILED)
        EXPECT(munmap(p, 4096) == 0);
    EXPECT(munmap(p + 1, 4096) == -1 && errno == EINVAL);
    void *a = shmat(shmid, NULL, 0);
    EXPECT(a != (void *)-1);
    if (a != (void *)-1)
        EXPECT(shmdt(a) == 0);
    struct shmid_ds ds;
    EXPECT(shmctl(shmid, IPC_STAT, &ds) == 0);
    struct sembuf zero = {0, 0, IPC_NOWAIT}, take = {1, -1, 0};
    EXPECT(semop(semid, &zero, 1) == 0);
    EXPECT(semctl(semid, 0, GETVAL) == 0);
    struct timespec ts = {0, 20000};
    /* blocks (sem 1 stays 0) until the timeout or a signal */
    int r = semtimedop(semid, &take, 1, &ts);
    EXPECT(r == -1 && (errno == EAGAIN || errno == EINTR));
    EXPECT(shmget(IPC_PRIVATE, 0, 0600) == -1 && errno == EINVAL);
    EXPECT(semget(IPC_PRIVATE, -1, 0600) == -1 && errno == EINVAL);
}

static void fork_round(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    EXPECT(pid > 0);
    int status;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
        ;
    EXPECT(w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT(p != MAP_FAILED);
    if (p != MAP_FAILED)
        EXPECT(munmap(p, 4096) == 0);
}

static const char *mode;
static pthread_barrier_t started;

static void *worker(void *arg)
{
    pid_t *tid = arg;
    *tid = gettid();
    pthread_barrier_wait(&started);
    double t0 = now_s();
    while (!stop && now_s() - t0 < DURATION) {
        if (strcmp(mode, "fork") == 0)
            fork_round();
        else
            hooks_round();
        atomic_fetch_add(&loops, 1);
    }
    return NULL;
}

static timer_t make_timer(pid_t tid)
{
    struct sigevent sev = {0};
    sev.sigev_signo = SIGUSR2;
    if (tid) {
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev._sigev_un._tid = tid; /* sigev_notify_thread_id, glibc >= 2.41 */
    } else {
        sev.sigev_notify = SIGEV_SIGNAL;
    }
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0);
    struct itimerspec its = {{0, PERIOD_NS}, {0, PERIOD_NS}};
    CHECK(timer_settime(t, 0, &its, NULL) == 0);
    return t;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    mode = argv[1];
    CHECK(!strcmp(mode, "thread") || !strcmp(mode, "process") || !strcmp(mode, "fork"));
    int workers = strcmp(mode, "process") == 0 ? 2 : 1;

    /* Set-up through the hooks too (journaled; the loops are not: too many calls). */
    semid = CALL_INT("semget", semget, IPC_PRIVATE, 2, IPC_CREAT | 0600);
    shmid = CALL_INT("shmget", shmget, IPC_PRIVATE, 65536, IPC_CREAT | 0600);
    CHECK(semid >= 0 && shmid >= 0);

    struct sigaction sa = {.sa_handler = on_timer};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);

    pthread_t t[2];
    pid_t tids[2];
    CHECK(pthread_barrier_init(&started, NULL, workers + 1) == 0);
    for (int i = 0; i < workers; i++)
        CHECK(pthread_create(&t[i], NULL, worker, &tids[i]) == 0);
    pthread_barrier_wait(&started);
    timer_t timer = make_timer(workers == 1 ? tids[0] : 0);
    if (workers > 1) { /* the main thread loops too */
        double t0 = now_s();
        while (now_s() - t0 < DURATION)
            hooks_round();
    }
    for (int i = 0; i < workers; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(timer_delete(timer) == 0);

    printf("%s: loops ran: %s\n", mode, loops > 0 ? "yes" : "no");
    printf("%s: calls in the loops that misbehaved: %ld\n", mode, (long)loop_fail);
    printf("%s: handler ran at least %d times: %s\n", mode, MIN_HANDLER_RUNS,
           h_runs >= MIN_HANDLER_RUNS ? "yes" : "no");
    printf("%s: handler calls that failed: %ld\n", mode, (long)h_fail);
    fprintf(stderr, "sig_hammer %s: %ld loops, %ld handler runs\n", mode, (long)loops,
            (long)h_runs);
    CHECK(rmid_shm("rmid_shm", shmid) == 0);
    CHECK(rmid_sem("rmid_sem", semid) == 0);
    return 0;
}
