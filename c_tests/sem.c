/* sem: semget / semop / semtimedop / semctl, success and failure paths. */
#include "harness.h"

#include <time.h>

int main(void)
{
    struct sembuf op[10];
    struct semid_ds ds;
    struct seminfo info;
    unsigned short vals[3];
    int r;

    /* semget */
    int id = CALL_INT("private", semget, IPC_PRIVATE, 3, IPC_CREAT | 0600);
    expect_ok("semget IPC_PRIVATE", id >= 0);
    key_t key = test_key(3), missing = test_key(4);
    journal_value("key", (unsigned long)key);
    journal_value("missing", (unsigned long)missing);
    int kid = CALL_INT("keyed", semget, key, 2, IPC_CREAT | IPC_EXCL | 0600);
    expect_ok("semget key IPC_CREAT|IPC_EXCL", kid >= 0);
    r = CALL_INT("exists", semget, key, 2, IPC_CREAT | IPC_EXCL | 0600);
    expect_fail("semget existing key IPC_CREAT|IPC_EXCL", r == -1, EEXIST);
    r = CALL_INT("toomany", semget, key, 5, 0);
    expect_fail("semget existing key, more sems than it has", r == -1, EINVAL);
    r = CALL_INT("missing", semget, missing, 1, 0600);
    expect_fail("semget missing key", r == -1, ENOENT);
    r = CALL_INT("huge", semget, IPC_PRIVATE, 1000000, IPC_CREAT | 0600);
    expect_fail("semget nsems too large", r == -1, EINVAL);

    /* semctl: values */
    r = CALL_INT("setval", semctl, id, 0, SETVAL, (union semun){.val = 1});
    expect_eq("semctl SETVAL", r, 0);
    r = CALL_INT("getval", semctl, id, 0, GETVAL);
    expect_eq("semctl GETVAL", r, 1);
    vals[0] = 1, vals[1] = 0, vals[2] = 7;
    r = CALL_INT("setall", semctl, id, 0, SETALL, (union semun){.array = vals});
    expect_eq("semctl SETALL", r, 0);
    memset(vals, 0, sizeof vals);
    r = CALL_INT("getall", semctl, id, 0, GETALL, (union semun){.array = vals});
    expect_eq("semctl GETALL", r, 0);
    printf("values: %u %u %u\n", vals[0], vals[1], vals[2]);

    /* semop */
    op[0] = (struct sembuf){.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO};
    r = CALL_BLOCKING("p", semop, id, op, 1);
    expect_eq("semop P (SEM_UNDO)", r, 0);
    op[0] = (struct sembuf){.sem_num = 0, .sem_op = -1, .sem_flg = IPC_NOWAIT};
    r = CALL_BLOCKING("nowait", semop, id, op, 1);
    expect_fail("semop P IPC_NOWAIT on zero", r == -1, EAGAIN);
    op[0] = (struct sembuf){.sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO};
    op[1] = (struct sembuf){.sem_num = 2, .sem_op = -2, .sem_flg = 0};
    r = CALL_BLOCKING("v2", semop, id, op, 2);
    expect_eq("semop V and P together", r, 0);
    r = CALL_INT("getpid", semctl, id, 0, GETPID);
    expect_eq("semctl GETPID is our pid", r == getpid(), 1);
    for (int i = 0; i < 10; i++)
        op[i] = (struct sembuf){.sem_num = 1, .sem_op = 1, .sem_flg = 0};
    r = CALL_BLOCKING("ten", semop, id, op, 10);
    expect_eq("semop 10 operations", r, 0);
    r = CALL_BLOCKING("badid", semop, -1, op, 1);
    expect_fail("semop bad id", r == -1, EINVAL);
    r = CALL_BLOCKING("nsops0", semop, id, op, 0);
    expect_fail("semop nsops 0", r == -1, EINVAL);
    op[0] = (struct sembuf){.sem_num = 3, .sem_op = 1, .sem_flg = 0};
    r = CALL_BLOCKING("efbig", semop, id, op, 1);
    expect_fail("semop sem_num out of range", r == -1, EFBIG);
    r = CALL_BLOCKING("efault", semop, id, NULL, 1);
    expect_fail("semop NULL sops", r == -1, EFAULT);
    r = CALL_BLOCKING("e2big", semop, id, op, 100000);
    expect_fail("semop too many operations", r == -1, E2BIG);

    /* semtimedop */
    struct timespec ts = {.tv_sec = 1, .tv_nsec = 500000000};
    op[0] = (struct sembuf){.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO};
    r = CALL_BLOCKING("timed_ok", semtimedop, id, op, 1, &ts);
    expect_eq("semtimedop available", r, 0);
    ts = (struct timespec){.tv_sec = 0, .tv_nsec = 10000000};
    r = CALL_BLOCKING("timed_out", semtimedop, id, op, 1, &ts);
    expect_fail("semtimedop timing out", r == -1, EAGAIN);
    ts = (struct timespec){.tv_sec = 0, .tv_nsec = 1000000000};
    r = CALL_BLOCKING("timed_bad", semtimedop, id, op, 1, &ts);
    expect_fail("semtimedop invalid timeout", r == -1, EINVAL);
    op[0] = (struct sembuf){.sem_num = 2, .sem_op = 1, .sem_flg = 0};
    r = CALL_BLOCKING("timed_null", semtimedop, id, op, 1, NULL);
    expect_eq("semtimedop NULL timeout", r, 0);

    /* semctl: counters, status, info */
    r = CALL_INT("getncnt", semctl, id, 0, GETNCNT);
    expect_eq("semctl GETNCNT", r, 0);
    r = CALL_INT("getzcnt", semctl, id, 0, GETZCNT);
    expect_eq("semctl GETZCNT", r, 0);
    r = CALL_INT("stat", semctl, id, 0, IPC_STAT, (union semun){.buf = &ds});
    expect_eq("semctl IPC_STAT", r, 0);
    expect_eq("sem_nsems", (long)ds.sem_nsems, 3);
    ds.sem_perm.mode = 0640;
    r = CALL_INT("set", semctl, id, 0, IPC_SET, (union semun){.buf = &ds});
    expect_eq("semctl IPC_SET", r, 0);
    r = CALL_INT("stat2", semctl, id, 0, IPC_STAT, (union semun){.buf = &ds});
    expect_eq("mode after IPC_SET is 0640", (ds.sem_perm.mode & 0777) == 0640, 1);
    r = CALL_INT("ipcinfo", semctl, id, 0, IPC_INFO, (union semun){.__buf = &info});
    expect_ok("semctl IPC_INFO", r >= 0);
    r = CALL_INT("seminfo", semctl, id, 0, SEM_INFO, (union semun){.__buf = &info});
    expect_ok("semctl SEM_INFO", r >= 0);
    r = CALL_INT("badcmd", semctl, id, 0, 9999);
    expect_fail("semctl unknown cmd", r == -1, EINVAL);
    r = CALL_INT("getval_badid", semctl, -1, 0, GETVAL);
    expect_fail("semctl bad id", r == -1, EINVAL);

    r = rmid_sem("rmid", id);
    expect_eq("semctl IPC_RMID", r, 0);
    r = rmid_sem("rmid_keyed", kid);
    expect_eq("semctl IPC_RMID keyed", r, 0);
    r = CALL_INT("rmid_again", semctl, kid, 0, IPC_RMID);
    expect_fail("semctl IPC_RMID removed id", r == -1, EINVAL);
    return 0;
}
