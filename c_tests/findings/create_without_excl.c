/* SHM002 create-without-excl: IPC_CREAT alone on a fixed key, O_CREAT alone on a fixed
 * POSIX shared memory name and on a fixed semaphore name. Fixed: IPC_CREAT|IPC_EXCL,
 * O_CREAT|O_EXCL. */
#include "findings.h"

#ifdef FIXED
#define FLAGS (IPC_CREAT | IPC_EXCL | 0600)
#define OFLAG (O_RDWR | O_CREAT | O_EXCL)
#else
#define FLAGS (IPC_CREAT | 0600)
#define OFLAG (O_RDWR | O_CREAT)
#endif

int main(void)
{
    start_tracking();
    int shmid = track_shm(shmget(unique_key(1), page(), FLAGS));
    check(shmid >= 0, "shmget");
    int semid = track_sem(semget(unique_key(2), 1, FLAGS));
    check(semid >= 0, "semget");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    const char *name = tracked_shm_name();
    int fd = shm_open(name, OFLAG, 0600);
    check(fd >= 0, "shm_open");
    check(close(fd) == 0 && shm_unlink(name) == 0, "shm_unlink");
    const char *sem_name = tracked_sem_name();
    sem_t *sem = sem_open(sem_name, OFLAG & ~O_RDWR, 0600, 1);
    check(sem != SEM_FAILED, "sem_open");
    check(sem_close(sem) == 0 && sem_unlink(sem_name) == 0, "sem_unlink");
    return 0;
}
