/* block: a child blocks in semop on a zero semaphore and is killed with SIGKILL while
 * waiting. Its log must hold the "enter" record of that semop and no "call" record for it. */
#include "harness.h"

#include <sys/wait.h>
#include <time.h>

int main(void)
{
    int sem = CALL_INT("semget", semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    expect_ok("semget", sem >= 0);

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        struct sembuf op = {.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO};
        CALL_BLOCKING("blocked", semop, sem, &op, 1); /* never returns */
        _exit(3);
    }

    /* wait until the child is asleep in the kernel (at most ~5 s) */
    int waiting = 0;
    for (int i = 0; i < 5000 && waiting != 1; i++) {
        waiting = CALL_INT(NULL, semctl, sem, 0, GETNCNT);
        if (waiting != 1)
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    expect_eq("processes waiting on the semaphore", waiting, 1);

    CHECK(kill(child, SIGKILL) == 0);
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    expect_eq("child killed by SIGKILL", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, 1);
    expect_eq("nobody waiting any more", CALL_INT("after", semctl, sem, 0, GETNCNT), 0);
    expect_eq("semctl IPC_RMID", rmid_sem("rmid", sem), 0);
    return 0;
}
