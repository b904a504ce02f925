/* ledger_sysv: which segments and semaphore sets the ledger counts as created here
 * (stats.segments, stats.semaphore_sets, shmtrace_leak_count) against what the kernel says
 * exists (IPC_STAT, /proc/sysvipc) and who created it (shm_cpid). */
#include "harness.h"
#include "ledger.h"

/* The ledger counts `segs` segments and `sets` sets more than at `before` as created here. */
#define EXPECT_CREATED(before, segs, sets)                                                 \
    do {                                                                                   \
        shmtrace_stats now_ = stats();                                                     \
        EXPECT_EQ("stats.segments - before", now_.segments - (before).segments, (segs));   \
        EXPECT_EQ("stats.semaphore_sets - before",                                         \
                  now_.semaphore_sets - (before).semaphore_sets, (sets));                  \
    } while (0)

static void expect_creator(int line, int shmid, pid_t pid)
{
    struct shmid_ds ds;
    if (!kernel_shm_stat(shmid, &ds))
        lg_fail(line, "segment %d: IPC_STAT fails", shmid);
    else if (ds.shm_cpid != pid)
        lg_fail(line, "segment %d: the kernel's shm_cpid is %d, expected %d", shmid,
                (int)ds.shm_cpid, (int)pid);
}

/* Creates a segment and a set with these key and flags: both count as created here. */
static void expect_creates(key_t key, int flags)
{
    shmtrace_stats before = stats();
    long leaked = leaks();
    int shm = CALL_INT(NULL, shmget, key, P(1), flags);
    MUST(shm >= 0);
    expect_creator(__LINE__, shm, getpid());
    EXPECT_CREATED(before, 1, 0);
    EXPECT_EQ("shmtrace_leak_count - before, after shmget", leaks() - leaked, 1);
    int sem = CALL_INT(NULL, semget, key, 2, flags);
    MUST(sem >= 0);
    EXPECT_CREATED(before, 1, 1);
    EXPECT_EQ("shmtrace_leak_count - before, after semget", leaks() - leaked, 2);
    if (key != IPC_PRIVATE) { /* opening it again, even with IPC_CREAT, creates nothing */
        EXPECT(CALL_INT(NULL, shmget, key, P(1), IPC_CREAT | 0600) == shm, "shmget again");
        EXPECT(CALL_INT(NULL, semget, key, 2, IPC_CREAT | 0600) == sem, "semget again");
        EXPECT(shmget(key, P(1), IPC_CREAT | IPC_EXCL | 0600) == -1 && errno == EEXIST,
               "shmget IPC_EXCL of an existing key: %s", h_errname(errno));
        EXPECT_CREATED(before, 1, 1);
        EXPECT_EQ("shmtrace_leak_count - before, after opening again", leaks() - leaked, 2);
    }
    remove_sem(sem);
    EXPECT_SEM_EXISTS(sem, 0);
    EXPECT_CREATED(before, 1, 0);
    EXPECT_EQ("shmtrace_leak_count - before, after removing the set", leaks() - leaked, 1);
    remove_shm(shm);
    EXPECT_SHM_EXISTS(shm, 0);
    EXPECT_CREATED(before, 0, 0);
    EXPECT_EQ("shmtrace_leak_count - before, after removing the segment", leaks() - leaked, 0);
}

static void create_private(void)
{
    expect_creates(IPC_PRIVATE, IPC_CREAT | 0600);
}

static void create_excl(void)
{
    expect_creates(test_key(1), IPC_CREAT | IPC_EXCL | 0600);
}

static void create_fresh_key(void)
{
    key_t key = test_key(2);
    MUST(syscall(SYS_shmget, key, 0, 0) == -1 && errno == ENOENT);
    MUST(syscall(SYS_semget, key, 0, 0) == -1 && errno == ENOENT);
    expect_creates(key, IPC_CREAT | 0600);
}

/* Made by another process (raw syscalls in a child: the ledger never sees them), then
 * opened here with IPC_CREAT: not created here, not a leak of this process. */
static void make_elsewhere(void *key)
{
    if (syscall(SYS_shmget, *(key_t *)key, P(1), IPC_CREAT | IPC_EXCL | 0600) < 0 ||
        syscall(SYS_semget, *(key_t *)key, 2, IPC_CREAT | IPC_EXCL | 0600) < 0)
        lg_fail(__LINE__, "child: raw shmget/semget: %s", h_errname(errno));
}

static void open_existing(void)
{
    key_t key = test_key(3);
    shmtrace_stats before = stats();
    long leaked = leaks();
    int status = in_child(make_elsewhere, &key);
    int shm = CALL_INT(NULL, shmget, key, P(1), IPC_CREAT | 0600); /* harness cleans up */
    int sem = CALL_INT(NULL, semget, key, 2, IPC_CREAT | 0600);
    MUST(status == 0 && shm >= 0 && sem >= 0);
    struct shmid_ds ds;
    MUST(kernel_shm_stat(shm, &ds));
    EXPECT(ds.shm_cpid != getpid(), "the kernel says this process created segment %d", shm);
    EXPECT_CREATED(before, 0, 0);
    EXPECT_EQ("shmtrace_leak_count - before, after opening", leaks() - leaked, 0);
    remove_sem(sem);
    remove_shm(shm);
    EXPECT_CREATED(before, 0, 0);
    EXPECT_SHM_EXISTS(shm, 0);
    EXPECT_SEM_EXISTS(sem, 0);
}

/* IPC_RMID on a segment still attached: the ledger stops counting it as created, the kernel
 * keeps it (marked SHM_DEST) until the last shmdt. */
static void rmid_attached(void)
{
    shmtrace_stats before = stats();
    long leaked = leaks();
    int id = new_shm(P(2));
    char *a = attach(id, NULL, 0);
    EXPECT_EQ("shmtrace_leak_count - before (segment, attachment)", leaks() - leaked, 2);
    remove_shm(id);
    EXPECT_CREATED(before, 0, 0);
    EXPECT_EQ("shmtrace_leak_count - before, after IPC_RMID (the attachment)",
              leaks() - leaked, 1);
    struct shmid_ds ds = {0};
    EXPECT(kernel_shm_stat(id, &ds) && (ds.shm_perm.mode & SHM_DEST),
           "segment %d after IPC_RMID while attached: IPC_STAT mode %#o, no SHM_DEST", id,
           (unsigned)ds.shm_perm.mode);
    EXPECT_SHM_EXISTS(id, 1);
    AGREE_ATTACHMENTS(id, 1);
    AGREE(a, 2);
    detach(a);
    EXPECT_SHM_EXISTS(id, 0);
    EXPECT_EQ("shmtrace_attachments_of after the last shmdt", shmtrace_attachments_of(id), 0);
    EXPECT_EQ("shmtrace_leak_count - before, after the last shmdt", leaks() - leaked, 0);
    AGREE(a, 2);
}

/* IPC_RMID on a semaphore set is immediate. */
static void sem_rmid(void)
{
    shmtrace_stats before = stats();
    int id = new_sem(1);
    struct sembuf up = {0, 1, SEM_UNDO};
    MUST(semop(id, &up, 1) == 0);
    EXPECT_CREATED(before, 0, 1);
    remove_sem(id);
    EXPECT_SEM_EXISTS(id, 0);
    EXPECT(semop(id, &up, 1) == -1 && (errno == EINVAL || errno == EIDRM),
           "semop on a removed set: %s", h_errname(errno));
    EXPECT_CREATED(before, 0, 0);
}

/* shmtrace_leak_count follows what the program holds, step by step. */
static void leak_steps(void)
{
    long base = leaks();
    int shm = new_shm(P(4));
    EXPECT_EQ("leaks after shmget", leaks() - base, 1);
    int sem = new_sem(1);
    EXPECT_EQ("leaks after semget", leaks() - base, 2);
    char *a = attach(shm, NULL, 0);
    EXPECT_EQ("leaks after shmat", leaks() - base, 3);
    char *m = map(3, RW, MAP_PRIVATE);
    EXPECT_EQ("leaks after mmap", leaks() - base, 4);
    unmap(m + P(1), 1);
    EXPECT_EQ("leaks after munmap of the middle page (two mappings left)", leaks() - base, 5);
    unmap(a + P(1), 1);
    EXPECT_EQ("leaks after munmap of an attachment's middle page (one attachment)",
              leaks() - base, 5);
    unmap(m, 3);
    EXPECT_EQ("leaks after munmap of the rest", leaks() - base, 3);
    detach(a);
    EXPECT_EQ("leaks after shmdt", leaks() - base, 2);
    remove_sem(sem);
    EXPECT_EQ("leaks after semctl IPC_RMID", leaks() - base, 1);
    remove_shm(shm);
    EXPECT_EQ("leaks after shmctl IPC_RMID", leaks() - base, 0);
}

LEDGER_CASES(CASE(create_private), CASE(create_excl), CASE(create_fresh_key),
             CASE(open_existing), CASE(rmid_attached), CASE(sem_rmid), CASE(leak_steps))
