/*
 * binlog.c - workloads for the binary log checks (run.py). Every workload keeps its own count
 * of the hooked calls that returned, so run.py can compare it with what the log holds.
 *
 *   binlog busy COUNTFILE        mmap+munmap of LEN_BUSY bytes forever; after each call
 *                                returns, the number of calls returned so far is stored in
 *                                COUNTFILE (a shared mapping: it survives SIGKILL)
 *   binlog block COUNTFILE       creates a private semaphore set (prints "semid N"), makes
 *                                PAIRS P/V pairs (counted likewise), then waits forever in a
 *                                semop P on a semaphore that is 0
 *   binlog threads N CALLS       N threads, each CALLS mmap+munmap of (16 + thread) pages
 *   binlog fork N CALLS          N children in turn, each CALLS mmap+munmap of (32 + child)
 *                                pages, then the parent CALLS of 31 pages
 *   binlog many CALLS            CALLS mmap+munmap of LEN_BUSY bytes, then prints "done CALLS"
 *   binlog exec                  one mmap+munmap, then execs itself as `binlog many 1`
 *   binlog timed                 mmap+munmap for 50 ms (long enough for the log to measure
 *                                its clock's rate and switch to it), then a semtimedop that
 *                                times out after 30 ms on a private semaphore at 0, then
 *                                removes the set; prints "before NS", "after NS" (the wall
 *                                clock around the call) and "semid N"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define LEN_BUSY (3 * PAGE)
#define PAIRS 100

static volatile unsigned long *counter;

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* The count lives in a file mapped shared, so its last value survives a SIGKILL. */
static void open_counter(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, PAGE) != 0)
        die("counter");
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap counter");
    close(fd);
    counter = p;
}

static void cycle(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    if (counter)
        *counter += 1;
    if (munmap(p, len) != 0)
        die("munmap");
    if (counter)
        *counter += 1;
}

static void busy(void) {
    for (;;)
        cycle(LEN_BUSY);
}

static void block(void) {
    int id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (id < 0)
        die("semget");
    printf("semid %d\n", id);
    fflush(stdout);
    struct sembuf v = {0, 1, 0}, p = {0, -1, 0}, wait_forever = {1, -1, 0};
    for (int i = 0; i < PAIRS; i++) {
        if (semop(id, &v, 1) != 0)
            die("semop V");
        *counter += 1;
        if (semop(id, &p, 1) != 0)
            die("semop P");
        *counter += 1;
    }
    /* Semaphore 1 is 0: this never returns (run.py kills the process here). */
    semop(id, &wait_forever, 1);
    die("semop returned");
}

static long calls_per_thread;

static void *thread_main(void *arg) {
    size_t len = (size_t)(16 + (long)arg) * PAGE;
    for (long i = 0; i < calls_per_thread; i++)
        cycle(len);
    return NULL;
}

static void threads(int n) {
    pthread_t t[64];
    if (n > 64)
        n = 64;
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, thread_main, (void *)i) != 0)
            die("pthread_create");
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void forks(int n, long calls) {
    for (int c = 0; c < n; c++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            for (long i = 0; i < calls; i++)
                cycle((size_t)(32 + c) * PAGE);
            exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("child");
    }
    for (long i = 0; i < calls; i++)
        cycle(31 * PAGE);
}

static long long wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void timed(void) {
    long long warm_until = wall_ns() + 50LL * 1000 * 1000;
    while (wall_ns() < warm_until)
        cycle(LEN_BUSY);
    int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (id < 0)
        die("semget");
    struct sembuf op = {0, -1, 0};
    struct timespec timeout = {0, 30 * 1000 * 1000};
    long long before = wall_ns();
    int rc = semtimedop(id, &op, 1, &timeout);
    int err = errno;
    long long after = wall_ns();
    if (semctl(id, 0, IPC_RMID) != 0)
        die("semctl");
    if (rc != -1 || err != EAGAIN)
        die("semtimedop should time out");
    printf("before %lld\nafter %lld\nsemid %d\n", before, after, id);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "busy") && argc == 3) {
        open_counter(argv[2]);
        busy();
    } else if (!strcmp(mode, "block") && argc == 3) {
        open_counter(argv[2]);
        block();
    } else if (!strcmp(mode, "threads") && argc == 4) {
        calls_per_thread = atol(argv[3]);
        threads(atoi(argv[2]));
    } else if (!strcmp(mode, "fork") && argc == 4) {
        forks(atoi(argv[2]), atol(argv[3]));
    } else if (!strcmp(mode, "many") && argc == 3) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++)
            cycle(LEN_BUSY);
        printf("done %ld\n", n);
    } else if (!strcmp(mode, "timed") && argc == 2) {
        timed();
    } else if (!strcmp(mode, "exec") && argc == 2) {
        cycle(LEN_BUSY);
        execl("/proc/self/exe", argv[0], "many", "1", (char *)NULL);
        die("exec");
    } else {
        fprintf(stderr, "usage: see binlog.c\n");
        return 2;
    }
    return 0;
}
