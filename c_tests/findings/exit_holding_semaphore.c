/* SHM009 exit-holding-semaphore: a child takes a lock (semaphore at 1) without SEM_UNDO and
 * exits holding it. Fixed: SEM_UNDO, so the kernel gives it back at exit. The parent waits,
 * checks the value natively (0 or 1), then removes the set. */
#include "findings.h"

#ifdef FIXED
#define FLG SEM_UNDO
#else
#define FLG 0
#endif

int main(void)
{
    start_tracking();
    int semid = track_sem(semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    check(semid >= 0, "semget");
    union semun arg = {.val = 1};
    check(semctl(semid, 0, SETVAL, arg) == 0, "SETVAL");
    pid_t child = fork();
    check(child >= 0, "fork");
    if (child == 0) {
        struct sembuf take = {0, -1, FLG};
        if (semop(semid, &take, 1) != 0)
            _exit(2);
        exit(0);
    }
    int status;
    check(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0, "child");
    int v = semctl(semid, 0, GETVAL);
#ifdef FIXED
    check(v == 1, "value given back at exit");
#else
    check(v == 0, "value still taken");
#endif
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    return 0;
}
