/* SHM016 msg-blocked (run with SHMTRACE_BLOCK_WARN_MS=100): a msgrcv waits 300 ms for a child's
 * message; msgrcv has no timed form, so the finding is logged when it returns. Fixed: the
 * receiver polls with IPC_NOWAIT (ENOMSG at once, as natively) and receives only what is
 * there, so nothing waits. */
#include "findings.h"

struct msg {
    long mtype;
    char text[8];
};

int main(void)
{
    start_tracking();
    int msqid = track_msg(msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    check(msqid >= 0, "msgget");
    struct msg m = {1, "late"};
#ifdef FIXED
    errno = 0;
    check(msgrcv(msqid, &m, sizeof m.text, 0, IPC_NOWAIT) == -1 && errno == ENOMSG,
          "IPC_NOWAIT fails at once");
    check(msgsnd(msqid, &m, 4, 0) == 0, "msgsnd");
    errno = 1234;
    check(msgrcv(msqid, &m, sizeof m.text, 0, 0) == 4 && errno == 1234, "success keeps errno");
#else
    pid_t child = fork();
    check(child >= 0, "fork");
    if (child == 0) {
        usleep(300 * 1000);
        _exit(msgsnd(msqid, &m, 4, 0) == 0 ? 0 : 3);
    }
    errno = 1234;
    check(msgrcv(msqid, &m, sizeof m.text, 0, 0) == 4 && errno == 1234,
          "msgrcv waits for the message, errno kept");
    int status;
    check(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0, "child's msgsnd");
#endif
    check(msgctl(msqid, IPC_RMID, NULL) == 0, "msgctl IPC_RMID");
    printf("ok\n");
    return 0;
}
