/* exec: the program re-executes itself (/proc/self/exe); the new image calls hooks too. */
#include "harness.h"

static int second_image(void)
{
    int shm = CALL_INT("after_shmget", shmget, IPC_PRIVATE, 8192, IPC_CREAT | 0600);
    expect_ok("after exec: shmget", shm >= 0);
    expect_eq("after exec: shmctl IPC_RMID", rmid_shm("after_rmid", shm), 0);
    void *m = CALL_PTR("after_mmap", mmap, NULL, 8192, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("after exec: mmap", m != MAP_FAILED);
    expect_eq("after exec: munmap", CALL_INT("after_munmap", munmap, m, 8192), 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "again") == 0)
        return second_image();

    int shm = CALL_INT("before_shmget", shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    expect_ok("before exec: shmget", shm >= 0);
    expect_eq("before exec: shmctl IPC_RMID", rmid_shm("before_rmid", shm), 0);
    void *m = CALL_PTR("before_mmap", mmap, NULL, 4096, PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("before exec: mmap", m != MAP_FAILED);

    execl("/proc/self/exe", argv[0], "again", (char *)NULL);
    perror("execl");
    return 1;
}
