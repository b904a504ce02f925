/* ledger_fork: after fork, each process's ledger speaks of what it acquired itself; a segment
 * or set removed by the other process is no leak of either (the kernel is asked). run.py
 * checks that every process's exit report is clean. */
#include "harness.h"
#include "ledger.h"

struct held {
    char *map, *att;
    int shm, sem;
};

static void expect_inherited(int line, const void *addr, int inherited)
{
    shmtrace_mapping m;
    if (shmtrace_mapping_at(addr, &m) != SHMTRACE_OK)
        lg_fail(line, "%p: the ledger has no mapping there", addr);
    else if (m.inherited != inherited)
        lg_fail(line, "%p: inherited is %d in the ledger, expected %d", addr, m.inherited,
                inherited);
}

/* Forgets (for harness.h's cleanup at exit) what the other process removed. */
static void forget_removed(const struct held *h)
{
    struct shmid_ds ds;
    if (!kernel_shm_stat(h->shm, &ds))
        untrack(0, h->shm);
    if (!kernel_sem_exists(h->sem))
        untrack(1, h->sem);
}

static void child_of_inherit(void *arg)
{
    struct held *h = arg;
    shmtrace_stats s = stats();
    uint64_t calls = 0;
    for (int i = 0; i < SHMTRACE_FUNCTIONS; i++)
        calls += s.calls[i];
    EXPECT(s.segments == 0 && s.semaphore_sets == 0 && calls == 0,
           "child: stats start from zero: %lu segments, %lu sets, %lu calls",
           (unsigned long)s.segments, (unsigned long)s.semaphore_sets, (unsigned long)calls);
    EXPECT_EQ("child: shmtrace_leak_count (nothing of its own yet)", leaks(), 0);
    expect_inherited(__LINE__, h->map, 1);
    expect_inherited(__LINE__, h->att, 1);
    AGREE(h->map, 2);
    AGREE(h->att, 1);
    EXPECT_EQ("child: shmtrace_attachments_of (the inherited one)",
              shmtrace_attachments_of(h->shm), 1);

    /* what the child makes is its own */
    char *mine = map(1, RW, MAP_PRIVATE);
    expect_inherited(__LINE__, mine, 0);
    int shm = new_shm(P(1));
    EXPECT_EQ("child: stats.segments after its own shmget", stats().segments, 1);
    EXPECT_EQ("child: shmtrace_leak_count with its own mapping and segment", leaks(), 2);
    remove_shm(shm);
    unmap(mine, 1);
    EXPECT_EQ("child: shmtrace_leak_count after releasing them", leaks(), 0);

    /* releasing what it inherited */
    unmap(h->map, 2);
    detach(h->att);
    AGREE(h->map, 2);
    AGREE(h->att, 1);
    EXPECT_EQ("child: shmtrace_attachments_of after shmdt", shmtrace_attachments_of(h->shm), 0);
    EXPECT_EQ("child: shmtrace_leak_count at the end", leaks(), 0);
}

/* The child inherits the parent's mapping, attachment, segment and set; the parent's ledger
 * is untouched by what the child does. */
static void inherit(void)
{
    struct held h = {map(2, RW, MAP_PRIVATE), NULL, new_shm(P(1)), new_sem(1)};
    h.att = attach(h.shm, NULL, 0);
    shmtrace_stats before = stats();
    long leaked = leaks();
    EXPECT_EQ("parent: shmtrace_leak_count (mapping, segment, set, attachment)", leaked, 4);
    EXPECT_EQ("child exit status", in_child(child_of_inherit, &h), 0);
    shmtrace_stats after = stats();
    EXPECT(after.mappings == before.mappings && after.bytes_mapped == before.bytes_mapped &&
               after.attachments == before.attachments && after.segments == before.segments &&
               after.semaphore_sets == before.semaphore_sets,
           "parent: stats changed while the child ran");
    EXPECT_EQ("parent: shmtrace_leak_count after the child", leaks(), leaked);
    expect_inherited(__LINE__, h.map, 0);
    AGREE(h.map, 2);
    AGREE(h.att, 1);
    AGREE_ATTACHMENTS(h.shm, 1); /* the child's copy is gone */
    detach(h.att);
    unmap(h.map, 2);
    remove_shm(h.shm);
    remove_sem(h.sem);
}

static void child_removes(void *arg)
{
    struct held *h = arg;
    MUST(CALL_INT(NULL, shmctl, h->shm, IPC_RMID, NULL) == 0);
    MUST(CALL_INT(NULL, semctl, h->sem, 0, IPC_RMID) == 0);
    EXPECT_EQ("child: stats.segments", stats().segments, 0);
    EXPECT_EQ("child: shmtrace_leak_count", leaks(), 0);
}

/* The parent creates, the child removes: no leak in either process. With the parent still
 * attached, the segment lives on (SHM_DEST) until the parent's shmdt. */
static void parent_creates_child_removes(void)
{
    struct held h = {NULL, NULL, new_shm(P(1)), new_sem(1)};
    EXPECT_EQ("parent: shmtrace_leak_count before the fork", leaks(), 2);
    EXPECT_EQ("child exit status", in_child(child_removes, &h), 0);
    EXPECT_SHM_EXISTS(h.shm, 0);
    EXPECT_SEM_EXISTS(h.sem, 0);
    EXPECT_EQ("parent: shmtrace_leak_count (the kernel says both are gone)", leaks(), 0);
    forget_removed(&h);

    h.shm = new_shm(P(1));
    h.sem = new_sem(1);
    h.att = attach(h.shm, NULL, 0);
    EXPECT_EQ("child exit status", in_child(child_removes, &h), 0);
    struct shmid_ds ds = {0};
    EXPECT(kernel_shm_stat(h.shm, &ds) && (ds.shm_perm.mode & SHM_DEST),
           "segment %d removed while the parent is attached: mode %#o, no SHM_DEST", h.shm,
           (unsigned)ds.shm_perm.mode);
    EXPECT_EQ("parent: shmtrace_leak_count (only the attachment)", leaks(), 1);
    detach(h.att);
    EXPECT_SHM_EXISTS(h.shm, 0);
    EXPECT_EQ("parent: shmtrace_leak_count after shmdt", leaks(), 0);
    forget_removed(&h);
}

static int to_parent[2], to_child[2];

static void child_creates(void *arg)
{
    struct held h = {NULL, NULL, new_shm(P(1)), new_sem(1)};
    char go;
    (void)arg;
    EXPECT_EQ("child: shmtrace_leak_count before the parent removes", leaks(), 2);
    MUST(write(to_parent[1], &h, sizeof h) == sizeof h);
    MUST(read(to_child[0], &go, 1) == 1);
    EXPECT_SHM_EXISTS(h.shm, 0);
    EXPECT_SEM_EXISTS(h.sem, 0);
    EXPECT_EQ("child: shmtrace_leak_count (the kernel says both are gone)", leaks(), 0);
    forget_removed(&h);
}

/* The child creates, the parent removes (ids it never got from shmget/semget): no leak in
 * either process. */
static void child_creates_parent_removes(void)
{
    struct held h;
    shmtrace_stats before = stats();
    MUST(pipe(to_parent) == 0 && pipe(to_child) == 0);
    pid_t pid = fork();
    MUST(pid >= 0);
    if (pid == 0) { /* only its ends: if the parent dies, read() sees EOF */
        close(to_parent[0]);
        close(to_child[1]);
        child_creates(NULL);
        exit(lg_failures ? 1 : 0);
    }
    int status;
    close(to_parent[1]);
    close(to_child[0]);
    MUST(read(to_parent[0], &h, sizeof h) == sizeof h);
    struct shmid_ds ds;
    MUST(kernel_shm_stat(h.shm, &ds));
    EXPECT(ds.shm_cpid == pid, "segment %d: the kernel's shm_cpid is %d, expected the child %d",
           h.shm, (int)ds.shm_cpid, (int)pid);
    MUST(CALL_INT(NULL, shmctl, h.shm, IPC_RMID, NULL) == 0);
    MUST(CALL_INT(NULL, semctl, h.sem, 0, IPC_RMID) == 0);
    shmtrace_stats after = stats();
    EXPECT(after.segments == before.segments && after.semaphore_sets == before.semaphore_sets,
           "parent: the ledger counts the child's objects as created here");
    EXPECT_EQ("parent: shmtrace_leak_count", leaks(), 0);
    MUST(write(to_child[1], "g", 1) == 1);
    MUST(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit status %#x", status);
    close(to_parent[0]);
    close(to_child[1]);
}

/* A vfork child runs in its parent's memory: its calls must stay out of the (parent's)
 * ledger, and once it is gone the parent is traced as before. */
static void vfork_child(void)
{
    shmtrace_stats before = stats();
    pid_t pid = vfork();
    MUST(pid >= 0);
    if (pid == 0) {
        void *p = mmap(NULL, P(1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        _exit(p == MAP_FAILED ? 1 : 0);
    }
    int status;
    MUST(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "vfork child exit status %#x", status);
    shmtrace_stats after = stats();
    EXPECT_EQ("parent: mmap calls after the vfork child's mmap", after.calls[SHMTRACE_CALL_MMAP],
              before.calls[SHMTRACE_CALL_MMAP]);
    EXPECT_EQ("parent: mappings after the vfork child's mmap", after.mappings, before.mappings);
    char *mine = map(1, RW, MAP_PRIVATE);
    EXPECT_EQ("parent: its own mmap after the vfork is counted", stats().calls[SHMTRACE_CALL_MMAP],
              before.calls[SHMTRACE_CALL_MMAP] + 1);
    AGREE(mine, 1);
    unmap(mine, 1);
}

LEDGER_CASES(CASE(inherit), CASE(parent_creates_child_removes),
             CASE(child_creates_parent_removes), CASE(vfork_child))
