/* shm: shmget / shmat / shmdt / shmctl, success and failure paths. */
#include "harness.h"

int main(void)
{
    struct shmid_ds ds;
    int r;

    /* shmget */
    int id = CALL_INT("private", shmget, IPC_PRIVATE, 4096, IPC_CREAT | IPC_EXCL | 0600);
    expect_ok("shmget IPC_PRIVATE", id >= 0);

    key_t key = test_key(1), missing = test_key(2);
    journal_value("key", (unsigned long)key);
    journal_value("missing", (unsigned long)missing);
    int kid = CALL_INT("keyed", shmget, key, 8192, IPC_CREAT | IPC_EXCL | 0640);
    expect_ok("shmget key IPC_CREAT|IPC_EXCL", kid >= 0);
    r = CALL_INT("exists", shmget, key, 8192, IPC_CREAT | IPC_EXCL | 0640);
    expect_fail("shmget existing key IPC_CREAT|IPC_EXCL", r == -1, EEXIST);
    r = CALL_INT("lookup", shmget, key, 0, 0);
    expect_ok("shmget existing key lookup", r == kid);
    r = CALL_INT("missing", shmget, missing, 4096, 0600);
    expect_fail("shmget missing key", r == -1, ENOENT);
    r = CALL_INT("huge", shmget, IPC_PRIVATE, SIZE_MAX, IPC_CREAT | 0600);
    expect_fail("shmget huge size", r == -1, EINVAL);

    /* shmat */
    char *rw = CALL_PTR("attach", shmat, id, NULL, 0);
    expect_ok("shmat", rw != (void *)-1);
    strcpy(rw, "hello");
    char *ro = CALL_PTR("attach_ro", shmat, id, NULL, SHM_RDONLY);
    expect_ok("shmat SHM_RDONLY", ro != (void *)-1);
    expect_eq("read through read-only attach", strcmp(ro, "hello"), 0);
    void *bad = CALL_PTR("attach_badid", shmat, -1, NULL, 0);
    expect_fail("shmat bad id", bad == (void *)-1, EINVAL);
    bad = CALL_PTR("attach_misaligned", shmat, id, (void *)0x10001, 0);
    expect_fail("shmat misaligned address", bad == (void *)-1, EINVAL);

    /* shmctl */
    r = CALL_INT("stat", shmctl, id, IPC_STAT, &ds);
    expect_eq("shmctl IPC_STAT", r, 0);
    expect_eq("shm_segsz", (long)ds.shm_segsz, 4096);
    expect_eq("shm_nattch", (long)ds.shm_nattch, 2);
    r = CALL_INT("stat_badid", shmctl, -1, IPC_STAT, &ds);
    expect_fail("shmctl IPC_STAT bad id", r == -1, EINVAL);
    r = CALL_INT("stat_null", shmctl, id, IPC_STAT, NULL);
    expect_fail("shmctl IPC_STAT NULL buf", r == -1, EFAULT);
    ds.shm_perm.mode = 0640;
    r = CALL_INT("set", shmctl, id, IPC_SET, &ds);
    expect_eq("shmctl IPC_SET", r, 0);
    r = CALL_INT("stat2", shmctl, id, IPC_STAT, &ds);
    expect_eq("mode after IPC_SET", ds.shm_perm.mode & 0777, 0640);
    r = CALL_INT("badcmd", shmctl, id, 9999, &ds);
    expect_fail("shmctl unknown cmd", r == -1, EINVAL);

    /* shmdt */
    r = CALL_INT("detach_bad", shmdt, ro + 1);
    expect_fail("shmdt misaligned address", r == -1, EINVAL);
    r = CALL_INT("detach_ro", shmdt, ro);
    expect_eq("shmdt read-only", r, 0);
    r = CALL_INT("detach", shmdt, rw);
    expect_eq("shmdt", r, 0);
    r = CALL_INT("detach_again", shmdt, rw);
    expect_fail("shmdt not attached", r == -1, EINVAL);

    r = rmid_shm("rmid", id);
    expect_eq("shmctl IPC_RMID", r, 0);
    r = rmid_shm("rmid_keyed", kid);
    expect_eq("shmctl IPC_RMID keyed", r, 0);
    r = CALL_INT("rmid_again", shmctl, kid, IPC_RMID, NULL);
    expect_fail("shmctl IPC_RMID removed id", r == -1, EINVAL);
    return 0;
}
