/* SHM012 foreign-creator (needs root): a segment opened by key that another user (uid 65534)
 * created. Fixed: the segment opened by key was created by this user. Prints "skip" when not
 * root. The creating process removes nothing: the parent removes the segment it identified. */
#include "findings.h"

int main(void)
{
    if (geteuid() != 0) {
        printf("skip\n");
        return 0;
    }
    start_tracking();
    key_t key = unique_key(3);
#ifdef FIXED
    int made = track_shm(shmget(key, page(), IPC_CREAT | IPC_EXCL | 0640));
    check(made >= 0, "shmget create");
#else
    pid_t child = fork();
    check(child >= 0, "fork");
    if (child == 0) {
        if (setuid(65534) != 0)
            _exit(2);
        int id = (int)syscall(SYS_shmget, key, page(), IPC_CREAT | IPC_EXCL | 0640);
        _exit(id >= 0 ? 0 : 3);
    }
    int status;
    check(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0, "child created the segment");
#endif
    int shmid = track_shm(shmget(key, 0, 0));
    check(shmid >= 0, "shmget open");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    return 0;
}
