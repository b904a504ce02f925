/* SHM010 semop-blocked (run with SHMTRACE_BLOCK_WARN_MS=100 and SHMTRACE_LOG=FILE): a child's
 * semop waits on a semaphore at 0; the parent waits until the log shows the finding (so it was
 * logged while the child was still blocked), then releases it. Fixed: semtimedop with a 50 ms
 * timeout (shorter than the threshold) and an IPC_NOWAIT semop: both fail with EAGAIN, as
 * natively, and nothing is reported. Without a log file the parent waits 300 ms instead. */
#include "findings.h"
#include <time.h>

static inline int log_shows(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

int main(void)
{
    start_tracking();
    int semid = track_sem(semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    check(semid >= 0, "semget");
#ifdef FIXED
    struct sembuf take = {0, -1, 0};
    struct timespec t = {0, 50 * 1000 * 1000};
    errno = 0;
    check(semtimedop(semid, &take, 1, &t) == -1 && errno == EAGAIN, "semtimedop times out");
    struct sembuf nowait = {0, -1, IPC_NOWAIT};
    check(semop(semid, &nowait, 1) == -1 && errno == EAGAIN, "IPC_NOWAIT fails at once");
    errno = 1234;
    struct sembuf give = {0, 1, 0};
    check(semop(semid, &give, 1) == 0 && errno == 1234, "success keeps errno");
    printf("ok\n");
#else
    pid_t child = fork();
    check(child >= 0, "fork");
    if (child == 0) {
        /* SEM_UNDO: this test is about the wait, not about exiting with the semaphore. */
        struct sembuf take = {0, -1, SEM_UNDO};
        errno = 1234;
        int r = semop(semid, &take, 1);
        _exit(r == 0 && errno == 1234 ? 0 : 3);
    }
    const char *log = getenv("SHMTRACE_LOG");
    if (log && log[0] == '/') {
        /* Bounded (60 s), so a broken shim fails the test instead of hanging it. */
        for (int i = 0; i < 6000 && !log_shows(log, "SHM010"); i++)
            usleep(10 * 1000);
    } else {
        usleep(300 * 1000);
    }
    struct sembuf give = {0, 1, 0};
    check(semop(semid, &give, 1) == 0, "semop give");
    int status;
    check(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0, "child's semop returned 0 with errno kept");
#endif
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    return 0;
}
