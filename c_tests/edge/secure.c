/*
 * secure: a small program for the log-destination checks. It says whether the
 * kernel put it in secure-execution mode (AT_SECURE: setuid/setgid, or file capabilities gained
 * by a non-root user), then makes a few hooked calls so that there is something to log.
 * run.py runs copies of secure.linked with a file capability, setuid, or plain, with
 * SHMTRACE_LOG pointing at files, symlinks and unopenable paths.
 */
#include "../harness.h"
#include "edge.h"

int main(void)
{
    printf("AT_SECURE=%lu\n", getauxval(AT_SECURE));
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(munmap(p, 4096) == 0);
    errno = 0;
    CHECK(munmap((char *)p + 1, 4096) == -1 && errno == EINVAL);
    int id = CALL_INT("semget", semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    CHECK(id >= 0);
    CHECK(rmid_sem("rmid", id) == 0);
    puts("secure: done");
    return 0;
}
