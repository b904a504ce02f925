/* exit: hooks, then _Exit (in a child) and _exit (the main process): no atexit handlers, no
 * stdio flush, no destructors run, yet every call made before must be in the log. */
#include "harness.h"

#include <sys/wait.h>

static void calls(const char *who)
{
    char label[64];
    int shm = CALL_INT(NULL, shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    snprintf(label, sizeof label, "%s: shmget", who);
    expect_ok(label, shm >= 0);
    snprintf(label, sizeof label, "%s: shmctl IPC_RMID", who);
    expect_eq(label, rmid_shm(NULL, shm), 0); /* atexit cleanup will not run */
    void *m = CALL_PTR(NULL, mmap, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    snprintf(label, sizeof label, "%s: mmap", who);
    expect_ok(label, m != MAP_FAILED);
    int r = CALL_INT(NULL, munmap, (char *)m + 1, 4096);
    snprintf(label, sizeof label, "%s: munmap misaligned", who);
    expect_fail(label, r == -1, EINVAL);
    /* the last call before exiting: leaves the mapping in place */
    m = CALL_PTR("last", mmap, NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    snprintf(label, sizeof label, "%s: last mmap", who);
    expect_ok(label, m != MAP_FAILED);
}

int main(void)
{
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        calls("child");
        _Exit(0);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    expect_eq("child exit status", WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    calls("parent");
    _exit(0);
}
