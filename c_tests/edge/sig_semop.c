/*
 * sig_semop: semop/semtimedop interrupted by a signal whose handler maps and unmaps.
 *
 * A thread blocks in semop (then semtimedop, 10 s timeout) on a semaphore that is 0. Once the
 * kernel counts it as a waiter (GETNCNT), the main thread sends it SIGUSR1. The handler, which
 * runs while the interrupted thread is inside the shim's semop hook, calls mmap, mremap and
 * munmap, and a munmap that fails with EINVAL (so errno in the handler is not EINTR). The
 * interrupted call must return -1 with errno EINTR, exactly as natively, and the handler's
 * calls must succeed. `sig_semop norestart` installs the handler without SA_RESTART,
 * `sig_semop restart` with it (semop is never restarted after a handler: EINTR either way).
 * Finally the semaphore is posted while the thread waits: semop returns 0.
 */
#include "../harness.h"
#include "edge.h"

#define ROUNDS 3

static int semid;
static volatile sig_atomic_t h_ran, h_map, h_remap, h_unmap, h_einval;

static void on_usr1(int sig)
{
    (void)sig;
    h_ran++;
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    h_map++;
    p[0] = 1;
    char *q = mremap(p, 8192, 16384, MREMAP_MAYMOVE);
    if (q != MAP_FAILED) {
        h_remap++;
        p = q;
    }
    if (munmap(p + 1, 4096) == -1 && errno == EINVAL)
        h_einval++;
    if (munmap(p, q != MAP_FAILED ? 16384 : 8192) == 0)
        h_unmap++;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int step, done_step;
static long result;
static int result_errno;

/* The waiter performs call number `step` when told, and reports its outcome. */
static void *waiter(void *arg)
{
    (void)arg;
    struct sembuf op = {0, -1, 0};
    struct timespec ten = {10, 0};
    for (int n = 1;; n++) {
        pthread_mutex_lock(&lock);
        while (step >= 0 && step < n)
            pthread_cond_wait(&cond, &lock);
        int which = step;
        pthread_mutex_unlock(&lock);
        if (which < 0)
            return NULL;
        long r;
        errno = E_SENTINEL;
        if (which % 2)
            r = CALL_BLOCKING("semop", semop, semid, &op, 1);
        else
            r = CALL_BLOCKING("semtimedop", semtimedop, semid, &op, 1, &ten);
        int err = errno;
        pthread_mutex_lock(&lock);
        result = r;
        result_errno = err;
        done_step = which;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
}

static void wait_for_waiter(void)
{
    double t0 = now_s();
    while (syscall(SYS_semctl, semid, 0, GETNCNT, 0) < 1) {
        CHECK(now_s() - t0 < 5);
        sleep_us(200);
    }
    sleep_us(2000); /* well inside the kernel's wait by now */
}

static void finish_step(int n, const char *what)
{
    pthread_mutex_lock(&lock);
    while (done_step < n)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    char label[64];
    snprintf(label, sizeof label, "%s %d", what, n);
    show_int(label, result, result_errno);
}

static void start_step(int n)
{
    pthread_mutex_lock(&lock);
    step = n;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2 && (!strcmp(argv[1], "restart") || !strcmp(argv[1], "norestart")));
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = strcmp(argv[1], "restart") == 0 ? SA_RESTART : 0;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    semid = CALL_INT("semget", semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    CHECK(semid >= 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter, NULL) == 0);
    int n = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < 2; k++) {
            h_ran = h_map = h_remap = h_unmap = h_einval = 0;
            start_step(++n);
            wait_for_waiter();
            CHECK(pthread_kill(t, SIGUSR1) == 0);
            finish_step(n, n % 2 ? "interrupted semop" : "interrupted semtimedop");
            printf("handler %d: ran=%d mmap=%d mremap=%d munmap=%d einval=%d\n", n, h_ran,
                   h_map, h_remap, h_unmap, h_einval);
        }
    }
    /* And a wait that ends normally: posted by this thread. */
    for (int k = 0; k < 2; k++) {
        start_step(++n);
        wait_for_waiter();
        struct sembuf post = {0, 1, 0};
        CHECK(CALL_BLOCKING("post", semop, semid, &post, 1) == 0);
        finish_step(n, n % 2 ? "posted semop" : "posted semtimedop");
    }
    start_step(-1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(rmid_sem("rmid", semid) == 0);
    return 0;
}
