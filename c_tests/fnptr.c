/* fnptr: every hooked function called through a volatile function pointer, so the call can
 * neither be inlined nor devirtualized: the address taken must already be the shim's. */
#include "harness.h"

#include <time.h>

static int (*volatile p_shmget)(key_t, size_t, int) = shmget;
static void *(*volatile p_shmat)(int, const void *, int) = shmat;
static int (*volatile p_shmdt)(const void *) = shmdt;
static int (*volatile p_shmctl)(int, int, struct shmid_ds *) = shmctl;
static int (*volatile p_semget)(key_t, int, int) = semget;
static int (*volatile p_semop)(int, struct sembuf *, size_t) = semop;
static int (*volatile p_semtimedop)(int, struct sembuf *, size_t,
                                    const struct timespec *) = semtimedop;
static int (*volatile p_semctl)(int, int, int, ...) = semctl;
static void *(*volatile p_mmap)(void *, size_t, int, int, int, off_t) = mmap;
static void *(*volatile p_mmap64)(void *, size_t, int, int, int, off64_t) = mmap64;
static int (*volatile p_munmap)(void *, size_t) = munmap;
static void *(*volatile p_mremap)(void *, size_t, size_t, int, ...) = mremap;

int main(void)
{
    struct shmid_ds ds;
    int r;

    int shm = CALL_INT_AS("shmget", "shmget", p_shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    expect_ok("shmget", shm >= 0);
    void *at = CALL_PTR_AS("shmat", "shmat", p_shmat, shm, NULL, 0);
    expect_ok("shmat", at != (void *)-1);
    r = CALL_INT_AS("shmctl", "shmctl", p_shmctl, shm, IPC_STAT, &ds);
    expect_eq("shmctl IPC_STAT", r, 0);
    r = CALL_INT_AS("shmdt", "shmdt", p_shmdt, at);
    expect_eq("shmdt", r, 0);
    r = CALL_INT_AS("shmdt_bad", "shmdt", p_shmdt, at);
    expect_fail("shmdt again", r == -1, EINVAL);
    r = CALL_INT_AS("shmctl_rmid", "shmctl", p_shmctl, shm, IPC_RMID, NULL);
    expect_eq("shmctl IPC_RMID", r, 0);
    untrack(0, shm);

    int sem = CALL_INT_AS("semget", "semget", p_semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    expect_ok("semget", sem >= 0);
    r = CALL_INT_AS("semctl", "semctl", p_semctl, sem, 0, SETVAL, (union semun){.val = 2});
    expect_eq("semctl SETVAL", r, 0);
    struct sembuf op = {.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO};
    r = CALL_BLOCKING_AS("semop", "semop", p_semop, sem, &op, 1);
    expect_eq("semop", r, 0);
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 0};
    r = CALL_BLOCKING_AS("semtimedop", "semtimedop", p_semtimedop, sem, &op, 1, &ts);
    expect_eq("semtimedop", r, 0);
    op.sem_flg = IPC_NOWAIT;
    r = CALL_BLOCKING_AS("semop_again", "semop", p_semop, sem, &op, 1);
    expect_fail("semop on zero, IPC_NOWAIT", r == -1, EAGAIN);
    r = CALL_INT_AS("semctl_rmid", "semctl", p_semctl, sem, 0, IPC_RMID);
    expect_eq("semctl IPC_RMID", r, 0);
    untrack(1, sem);

    char *a = CALL_PTR_AS("mmap", "mmap", p_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("mmap", a != MAP_FAILED);
    char *b = CALL_PTR_AS("mmap64", "mmap64", p_mmap64, NULL, 4096, PROT_READ,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    expect_ok("mmap64", b != MAP_FAILED);
    void *bad = CALL_PTR_AS("mmap64_bad", "mmap64", p_mmap64, NULL, 0, PROT_READ,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    expect_fail("mmap64 length 0", bad == MAP_FAILED, EINVAL);
    a = CALL_PTR_AS("mremap", "mremap", p_mremap, a, 4096, 8192, MREMAP_MAYMOVE);
    expect_ok("mremap", a != MAP_FAILED);
    r = CALL_INT_AS("munmap", "munmap", p_munmap, a, 8192);
    expect_eq("munmap", r, 0);
    r = CALL_INT_AS("munmap64", "munmap", p_munmap, b, 4096);
    expect_eq("munmap", r, 0);
    return 0;
}
