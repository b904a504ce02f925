/* fork: parent and child both call hooks; the child writes through its own attach. */
#include "harness.h"

#include <sys/wait.h>

int main(void)
{
    int shm = CALL_INT("parent_shmget", shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    expect_ok("parent: shmget", shm >= 0);
    char *mine = CALL_PTR("parent_shmat", shmat, shm, NULL, 0);
    expect_ok("parent: shmat", mine != (void *)-1);

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        char *p = CALL_PTR("child_shmat", shmat, shm, NULL, 0);
        expect_ok("child: shmat", p != (void *)-1);
        strcpy(p, "from the child");
        expect_eq("child: shmdt", CALL_INT("child_shmdt", shmdt, p), 0);
        void *m = CALL_PTR("child_mmap", mmap, NULL, 4096, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        expect_ok("child: mmap", m != MAP_FAILED);
        expect_eq("child: munmap", CALL_INT("child_munmap", munmap, m, 4096), 0);
        int r = CALL_INT("child_shmdt_bad", shmdt, (char *)m + 1);
        expect_fail("child: shmdt bad address", r == -1, EINVAL);
        exit(0);
    }

    int status;
    CHECK(waitpid(child, &status, 0) == child);
    expect_eq("parent: child exit status", WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    printf("parent: segment says \"%s\"\n", mine);
    expect_eq("parent: shmdt", CALL_INT("parent_shmdt", shmdt, mine), 0);
    expect_eq("parent: shmctl IPC_RMID", rmid_shm("parent_rmid", shm), 0);
    return 0;
}
