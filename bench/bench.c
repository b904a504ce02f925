/* The workloads of `make bench`. Run natively, under the shim and under strace by bench/run.py,
 * which compares them; this program only measures itself and prints "key value" lines.
 *
 *   bench mmap ITERS          anonymous mmap+munmap of one page            (2 calls/cycle)
 *   bench shm ITERS           shmget(IPC_PRIVATE)+shmat+shmdt+IPC_RMID     (4 calls/cycle)
 *   bench semop ITERS         uncontended semop P then V                   (2 calls/cycle)
 *   bench msg ITERS           msgsnd then msgrcv of a 16-byte message      (2 calls/cycle)
 *   bench pingpong ITERS      two processes passing a token on semaphores  (4 calls/round)
 *   bench threads N ITERS     N threads sharing ITERS mmap+munmap cycles   (2 calls/cycle)
 *   bench scale N PAIRS       N live pages, PAIRS mmap+munmap, then N munmaps in random order
 *   bench mix ITERS           a program's mix: mappings of many sizes kept live and replaced,
 *                             mremap, semaphore P/V, now and then a shm segment's life
 *   bench idle                makes no hooked call; reports its resident memory
 *
 * Every SysV object is IPC_PRIVATE and removed before exit, also on SIGINT/SIGTERM/SIGHUP. The
 * timed loops run after an untimed warm-up of a tenth of their length (first-touch of the
 * shim's heap, page cache, CPU caches), so a run measures the steady state. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmtrace.h"

#define PAGE 4096

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- SysV objects of this process, removed on every way out ---- */

static volatile sig_atomic_t sem_id = -1;
static volatile sig_atomic_t shm_id = -1;
static volatile sig_atomic_t msg_id = -1;
/* The POSIX shared memory name of the posix workload, the semaphore name of the semname
 * workload ("" when none). */
static char shm_name[64], sem_name[64];
static pid_t owner;

static void remove_objects(void)
{
    /* A forked child shares the ids but must not remove what its parent still uses. */
    if (getpid() != owner)
        return;
    if (sem_id >= 0)
        semctl(sem_id, 0, IPC_RMID);
    if (shm_id >= 0)
        shmctl(shm_id, IPC_RMID, NULL);
    if (msg_id >= 0)
        msgctl(msg_id, IPC_RMID, NULL);
    if (shm_name[0])
        shm_unlink(shm_name);
    if (sem_name[0])
        sem_unlink(sem_name);
    sem_id = shm_id = msg_id = -1;
}

static void on_signal(int sig)
{
    remove_objects();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_objects(void)
{
    owner = getpid();
    atexit(remove_objects);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
}

static int new_semaphores(int n)
{
    int id = semget(IPC_PRIVATE, n, IPC_CREAT | 0600);
    if (id < 0)
        die("semget");
    sem_id = id;
    return id;
}

static void drop_semaphores(void)
{
    if (semctl(sem_id, 0, IPC_RMID) != 0)
        die("semctl IPC_RMID");
    sem_id = -1;
}

static void sem_add(int id, unsigned short num, short delta)
{
    struct sembuf op = {.sem_num = num, .sem_op = delta, .sem_flg = 0};
    while (semop(id, &op, 1) != 0)
        if (errno != EINTR)
            die("semop");
}

static void report(double ns, int calls)
{
    printf("ns %.1f\ncalls %d\n", ns, calls);
}

/* ---- workloads ---- */

/* A one-page hole between two PROT_NONE pages, where the cycles map their page (a hint the
 * kernel honours while the hole is free). Left to itself, the kernel puts the page in the
 * highest free gap, whose neighbours differ with and without the preloaded library: natively
 * the page merged into an adjacent read-write area (mmap extends it, munmap splits it), under
 * the shim it did not, which made the shim look faster than native. Same neighbours, same
 * kernel work. */
static void *make_hole(void)
{
    char *r = mmap(NULL, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED || munmap(r + PAGE, PAGE) != 0)
        die("hole");
    return r + PAGE;
}

static void mmap_cycles(long n, void *hole)
{
    for (long i = 0; i < n; i++) {
        void *p = mmap(hole, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0)
            die("mmap cycle");
    }
}

static void bench_mmap(long iters)
{
    void *hole = make_hole();
    mmap_cycles(iters / 10, hole);
    double t0 = now_ns();
    mmap_cycles(iters, hole);
    report((now_ns() - t0) / iters, 2);
}

static void shm_cycles(long n)
{
    for (long i = 0; i < n; i++) {
        int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (id < 0)
            die("shmget");
        shm_id = id;
        void *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            die("shmat");
        if (shmdt(p) != 0 || shmctl(id, IPC_RMID, NULL) != 0)
            die("shmdt/IPC_RMID");
        shm_id = -1;
    }
}

/* mmap and munmap of a regular file's page: the descriptor is no shared memory object, so
 * the shim must not pay for naming one. */
static void file_cycles(long n, void *hole, int fd)
{
    for (long i = 0; i < n; i++) {
        void *p = mmap(hole, PAGE, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0)
            die("file mmap cycle");
    }
}

static void bench_filemap(long iters)
{
    void *hole = make_hole();
    FILE *f = tmpfile();
    if (!f || ftruncate(fileno(f), PAGE) != 0)
        die("tmpfile");
    file_cycles(iters / 10, hole, fileno(f));
    double t0 = now_ns();
    file_cycles(iters, hole, fileno(f));
    report((now_ns() - t0) / iters, 2);
    fclose(f);
}

static void bench_shm(long iters)
{
    shm_cycles(iters / 10);
    double t0 = now_ns();
    shm_cycles(iters);
    report((now_ns() - t0) / iters, 4);
}

/* One POSIX shared memory object's whole life: five calls, three of them hooked (shm_open,
 * mmap, munmap, shm_unlink; ftruncate and close are not). */
static void posix_cycles(long n, void *hole)
{
    char *name = shm_name;
    snprintf(shm_name, sizeof shm_name, "/shmtrace-bench-%d", (int)getpid());
    for (long i = 0; i < n; i++) {
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || ftruncate(fd, PAGE) != 0)
            die("shm_open/ftruncate");
        void *p = mmap(hole, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0 || close(fd) != 0 || shm_unlink(name) != 0)
            die("posix cycle");
    }
}

static void bench_posix(long iters)
{
    void *hole = make_hole();
    posix_cycles(iters / 10, hole);
    double t0 = now_ns();
    posix_cycles(iters, hole);
    report((now_ns() - t0) / iters, 4);
}

/* One named semaphore's whole life: sem_open(O_CREAT|O_EXCL), sem_post, sem_wait, sem_close,
 * sem_unlink [3 hooked: sem_post and sem_wait are not]. */
static void semname_cycles(long n)
{
    char *name = sem_name;
    snprintf(sem_name, sizeof sem_name, "/shmtrace-bench-sem-%d", (int)getpid());
    for (long i = 0; i < n; i++) {
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
        if (s == SEM_FAILED || sem_post(s) != 0 || sem_wait(s) != 0 || sem_close(s) != 0 ||
            sem_unlink(name) != 0)
            die("semname cycle");
    }
}

static void bench_semname(long iters)
{
    semname_cycles(iters / 10);
    double t0 = now_ns();
    semname_cycles(iters);
    report((now_ns() - t0) / iters, 3);
}

static void bench_semop(long iters)
{
    int id = new_semaphores(1);
    for (long i = 0; i < iters / 10; i++) {
        sem_add(id, 0, 1);
        sem_add(id, 0, -1);
    }
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        sem_add(id, 0, 1);
        sem_add(id, 0, -1);
    }
    double ns = (now_ns() - t0) / iters;
    drop_semaphores();
    report(ns, 2);
}

/* A message through a private queue and back out: neither call waits. */
static void msg_cycles(int id, long n)
{
    struct {
        long mtype;
        char text[16];
    } m = {1, "0123456789abcde"};
    for (long i = 0; i < n; i++)
        if (msgsnd(id, &m, sizeof m.text, 0) != 0 || msgrcv(id, &m, sizeof m.text, 0, 0) < 0)
            die("msgsnd/msgrcv");
}

static void bench_msg(long iters)
{
    int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (id < 0)
        die("msgget");
    msg_id = id;
    msg_cycles(id, iters / 10);
    double t0 = now_ns();
    msg_cycles(id, iters);
    double ns = (now_ns() - t0) / iters;
    if (msgctl(id, IPC_RMID, NULL) != 0)
        die("msgctl IPC_RMID");
    msg_id = -1;
    report(ns, 2);
}

/* Semaphore 0 is the child's turn, 1 the parent's: one round is two handovers. */
static void bench_pingpong(long iters)
{
    int id = new_semaphores(2);
    long warm = iters / 10;
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        for (long i = 0; i < warm + iters; i++) {
            sem_add(id, 0, -1);
            sem_add(id, 1, 1);
        }
        _exit(0);
    }
    double t0 = 0;
    for (long i = 0; i < warm + iters; i++) {
        if (i == warm)
            t0 = now_ns();
        sem_add(id, 0, 1);
        sem_add(id, 1, -1);
    }
    double ns = (now_ns() - t0) / iters;
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("ping-pong child");
    drop_semaphores();
    report(ns, 4);
}

struct worker {
    pthread_t thread;
    long cycles;
    pthread_barrier_t *start;
    double began, ended;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    void *hole = make_hole();
    mmap_cycles(w->cycles / 10, hole);
    pthread_barrier_wait(w->start);
    w->began = now_ns();
    mmap_cycles(w->cycles, hole);
    w->ended = now_ns();
    return NULL;
}

/* Wall time per cycle with all N threads cycling at once: the throughput of the process. The
 * span runs from the first thread's start to the last one's end (the main thread may be
 * scheduled late after the barrier, its own clock would miss work). */
static void bench_threads(int n, long iters)
{
    struct worker w[64];
    pthread_barrier_t start;
    if (n < 1 || n > 64)
        die("threads: 1..64");
    pthread_barrier_init(&start, NULL, n);
    for (int i = 0; i < n; i++) {
        w[i].cycles = iters / n;
        w[i].start = &start;
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
            die("pthread_create");
    }
    double first = 0, last = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].thread, NULL);
        if (i == 0 || w[i].began < first)
            first = w[i].began;
        if (w[i].ended > last)
            last = w[i].ended;
    }
    pthread_barrier_destroy(&start);
    report((last - first) / (w[0].cycles * n), 2);
}

/* The shim's private heap when it is preloaded, else -1. */
static int64_t shim_heap(void)
{
    shmtrace_result (*get)(shmtrace_stats *) =
        (shmtrace_result (*)(shmtrace_stats *))dlsym(RTLD_DEFAULT, "shmtrace_get_stats");
    shmtrace_stats s;
    return get && get(&s) == SHMTRACE_OK ? (int64_t)s.shim_heap_bytes : -1;
}

static void bench_scale(long n, long pairs)
{
    /* The array is mapped here with a PROT_NONE page at its foot, rather than malloc'ed (which
     * maps it from 100k pages on): the pages mapped next are placed under it, and without the
     * fence they would merge into the array, which this loop writes, and share its anon_vma.
     * Every munmap that splits them would then copy the anon_vma chain and insert into an
     * interval tree as large as the number of areas: kernel work that depends on what happens
     * to lie next to the pages, not on the workload. */
    size_t bytes = PAGE + (n * sizeof(void *) + PAGE - 1) / PAGE * PAGE;
    char *array = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (array == MAP_FAILED || mprotect(array, PAGE, PROT_NONE) != 0)
        die("mmap");
    void **live = (void **)(array + PAGE);
    int64_t heap0 = shim_heap();
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        live[i] = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (live[i] == MAP_FAILED)
            die("mmap");
    }
    double build = (now_ns() - t0) / n;
    int64_t heap1 = shim_heap();

    /* PROT_READ: never merged into the neighbouring read-write pages. */
    for (long i = 0; i < pairs / 10 + 1; i++) {
        void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0)
            die("pair");
    }
    double pair0 = now_ns();
    for (long i = 0; i < pairs; i++) {
        void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0)
            die("pair");
    }
    double pair1 = now_ns();
    double pair = (pair1 - pair0) / pairs;

    srand(42);
    for (long i = n - 1; i > 0; i--) {
        long j = rand() % (i + 1);
        void *t = live[i];
        live[i] = live[j];
        live[j] = t;
    }
    t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (munmap(live[i], PAGE) != 0)
            die("munmap");
    double t1 = now_ns();
    double teardown = (t1 - t0) / n;
    munmap(array, bytes);
    printf("ns %.1f\ncalls 2\nbuild_ns %.1f\nteardown_ns %.1f\n", pair, build, teardown);
    /* Each phase's span on CLOCK_MONOTONIC, so that bench/where.py (perf record -k
     * CLOCK_MONOTONIC) can charge the samples of that phase alone. */
    printf("pair_from_ns %.0f\npair_to_ns %.0f\n", pair0, pair1);
    printf("teardown_from_ns %.0f\nteardown_to_ns %.0f\n", t0, t1);
    if (heap0 >= 0)
        printf("heap_per_mapping %.1f\n", (double)(heap1 - heap0) / n);
}

/* Deterministic, cheap, and independent of libc's rand state. */
static uint32_t next_random(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

#define MIX_SLOTS 64

struct mix {
    void *addr[MIX_SLOTS];
    size_t len[MIX_SLOTS];
    uint32_t rng;
    int sem;
    long calls;
};

static void mix_step(struct mix *m, long i)
{
    int s = next_random(&m->rng) % MIX_SLOTS;
    if (m->addr[s]) {
        munmap(m->addr[s], m->len[s]);
        m->calls++;
    }
    size_t len = (size_t)(1 + next_random(&m->rng) % 64) * PAGE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m->calls++;
    if (p == MAP_FAILED)
        die("mix mmap");
    p[0] = 1; /* programs use what they map: one first-touch fault */
    m->addr[s] = p;
    m->len[s] = len;
    if (i % 4 == 0) {
        int t = next_random(&m->rng) % MIX_SLOTS;
        if (m->addr[t]) {
            void *q = mremap(m->addr[t], m->len[t], m->len[t] + PAGE, MREMAP_MAYMOVE);
            m->calls++;
            if (q == MAP_FAILED)
                die("mix mremap");
            m->addr[t] = q;
            m->len[t] += PAGE;
        }
    }
    sem_add(m->sem, 0, 1);
    sem_add(m->sem, 0, -1);
    m->calls += 2;
    if (i % 16 == 0) {
        shm_cycles(1);
        m->calls += 4;
    }
}

static void bench_mix(long iters)
{
    struct mix m;
    memset(&m, 0, sizeof m);
    m.rng = 12345;
    m.sem = new_semaphores(1);
    for (long i = 0; i < iters / 10; i++)
        mix_step(&m, i);
    long before = m.calls;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++)
        mix_step(&m, i);
    double ns = (now_ns() - t0) / (m.calls - before);
    for (int s = 0; s < MIX_SLOTS; s++)
        if (m.addr[s])
            munmap(m.addr[s], m.len[s]);
    drop_semaphores();
    report(ns, 1);
}

/* VmRSS from /proc with open/read only: no stdio buffer, no hooked call. */
static long rss_kib(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *line = strstr(buf, "VmRSS:");
    return line ? atol(line + 6) : -1;
}

static void bench_idle(void)
{
    long rss = rss_kib();
    printf("rss_kib %ld\n", rss);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench mmap|filemap|shm|posix|semname|semop|msg|pingpong|mix ITERS | threads N ITERS | "
                        "scale N PAIRS | idle\n");
        return 2;
    }
    const char *w = argv[1];
    long a = argc > 2 ? atol(argv[2]) : 0;
    long b = argc > 3 ? atol(argv[3]) : 0;
    guard_objects();
    if (!strcmp(w, "mmap"))
        bench_mmap(a);
    else if (!strcmp(w, "filemap"))
        bench_filemap(a);
    else if (!strcmp(w, "shm"))
        bench_shm(a);
    else if (!strcmp(w, "semop"))
        bench_semop(a);
    else if (!strcmp(w, "posix"))
        bench_posix(a);
    else if (!strcmp(w, "msg"))
        bench_msg(a);
    else if (!strcmp(w, "semname"))
        bench_semname(a);
    else if (!strcmp(w, "pingpong"))
        bench_pingpong(a);
    else if (!strcmp(w, "threads"))
        bench_threads((int)a, b);
    else if (!strcmp(w, "scale"))
        bench_scale(a, b);
    else if (!strcmp(w, "mix"))
        bench_mix(a);
    else if (!strcmp(w, "idle"))
        bench_idle();
    else {
        fprintf(stderr, "bench: unknown workload %s\n", w);
        return 2;
    }
    return 0;
}
