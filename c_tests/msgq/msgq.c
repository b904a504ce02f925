/* System V message queues through the shim: msgget, msgsnd, msgrcv, msgctl.
 *
 *   msgq MODE [ARG]
 *
 * MODE is a whole life of a queue ("clean"), one with a release step left out ("skip-rmid":
 * three messages left in it; "skip-rmid-empty"), careless uses ("misuse"), or a process shape ("blocked": a child's
 * msgrcv waits until the parent sends; "signal": EINTR; "removed": EIDRM; "threads"; "fork";
 * "exec", which re-runs itself as "rmid ID"; "blocked-long": a receive that waits 300 ms;
 * "raw-leak": a queue made and filled with raw system calls, which the shim cannot see).
 * Prints every result, errno and received text, and nothing that differs between runs (ids
 * are never printed), so native, linked and preloaded runs print the same. Queues are
 * IPC_PRIVATE or keyed by the pid; the runner removes what a run leaves. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct msg {
    long mtype;
    char text[64];
};

static void say(const char *what, long ret) {
    printf("%s = %ld", what, ret < 0 ? -1L : ret);
    if (ret < 0)
        printf(" errno=%s", strerrorname_np(errno));
    printf("\n");
    fflush(stdout);
}

/* Ids differ between runs: 1 for any id. */
static int id_said(const char *what, int id) {
    say(what, id < 0 ? id : 1);
    return id;
}

static void send(int q, long type, const char *text, int flags) {
    struct msg m = {type, ""};
    strcpy(m.text, text);
    say("msgsnd", msgsnd(q, &m, strlen(text), flags));
}

static void receive(int q, long type, size_t size, int flags) {
    struct msg m;
    memset(&m, 0, sizeof m);
    ssize_t n = msgrcv(q, &m, size, type, flags);
    say("msgrcv", n);
    if (n >= 0)
        printf("  type %ld text \"%.*s\"\n", m.mtype, (int)n, m.text);
    fflush(stdout);
}

static void stat_queue(int q) {
    struct msqid_ds ds;
    int rc = msgctl(q, IPC_STAT, &ds);
    say("msgctl IPC_STAT", rc);
    if (rc == 0)
        printf("  qnum %lu cbytes %lu\n", (unsigned long)ds.msg_qnum,
               (unsigned long)ds.__msg_cbytes);
}

/* Waits until thread `tid` of `pid` sleeps in msgrcv/msgsnd (its wchan names the kernel
 * function; "0" while it runs), at most 2 s; 50 ms where wchan cannot be read. */
static void wait_sleeping(pid_t pid, pid_t tid) {
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/wchan", pid, tid);
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (strstr(buf, "msg"))
            return;
        if (n == 0) {
            usleep(50000);
            return;
        }
        usleep(1000);
    }
}

/* A queue's whole life, and everything a careful program meets on the way. */
static void life(const char *skip) {
    int q = id_said("msgget private", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    if (q < 0)
        exit(1);
    send(q, 1, "one", 0);
    send(q, 2, "two!", 0);
    send(q, 3, "three", IPC_NOWAIT);
    stat_queue(q);
    if (strcmp(skip, "rmid") == 0)
        return; /* three messages, 12 bytes, left in it */
    receive(q, 2, sizeof(struct msg) - sizeof(long), 0);
    receive(q, 3, 2, IPC_NOWAIT);                  /* E2BIG */
    receive(q, 3, 2, IPC_NOWAIT | MSG_NOERROR);    /* "th" */
    receive(q, 1, 64, IPC_NOWAIT | MSG_EXCEPT);    /* none but type 1 */
    receive(q, 0, 64, 0);                          /* "one" */
    receive(q, 0, 64, IPC_NOWAIT);                 /* ENOMSG */
    stat_queue(q);

    key_t key = 0x4d530000 + (getpid() & 0xffff);
    int k = id_said("msgget key excl", msgget(key, IPC_CREAT | IPC_EXCL | 0600));
    id_said("msgget key excl again", msgget(key, IPC_CREAT | IPC_EXCL | 0600));
    id_said("msgget key open", msgget(key, 0));
    say("msgctl IPC_RMID key", msgctl(k, IPC_RMID, NULL));
    struct msginfo info;
    say("msgctl IPC_INFO", msgctl(0, IPC_INFO, (struct msqid_ds *)&info) >= 0 ? 0 : -1);
    if (strcmp(skip, "rmid-empty") == 0)
        return;
    say("msgctl IPC_RMID", msgctl(q, IPC_RMID, NULL));
}

/* What a careless program does: IPC_CREAT alone on a fixed key (creates, then opens), IPC_RMID
 * twice, a send to the removed queue, a removal that discards a message. */
static void misuse(void) {
    key_t key = 0x4d540000 + (getpid() & 0xffff);
    int k = id_said("msgget key creat", msgget(key, IPC_CREAT | 0600));
    id_said("msgget key creat existing", msgget(key, IPC_CREAT | 0600));
    send(k, 1, "lost", 0);
    say("msgctl IPC_RMID", msgctl(k, IPC_RMID, NULL));
    say("msgctl IPC_RMID again", msgctl(k, IPC_RMID, NULL));
    send(k, 1, "late", IPC_NOWAIT);
}

static void on_signal(int sig) {
    (void)sig;
}

/* A child's msgrcv waits until the parent sends; `how` says what releases it. */
static void across_processes(const char *how) {
    int q = id_said("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    pid_t child = fork();
    if (child == 0) {
        if (strcmp(how, "signal") == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sa.sa_flags = SA_RESTART; /* msgrcv is never restarted: EINTR all the same */
            sigaction(SIGUSR1, &sa, NULL);
        }
        receive(q, 5, 64, 0);
        _exit(0);
    }
    wait_sleeping(child, child);
    /* Said only once the child has said its part, so that the output is always in order. */
    const char *what = "kill";
    long rc;
    if (strcmp(how, "signal") == 0) {
        rc = kill(child, SIGUSR1);
    } else if (strcmp(how, "removed") == 0) {
        what = "msgctl IPC_RMID";
        rc = msgctl(q, IPC_RMID, NULL);
    } else {
        struct msg m = {5, "wake up"};
        what = "msgsnd";
        rc = msgsnd(q, &m, 7, 0);
    }
    int st;
    waitpid(child, &st, 0);
    say(what, rc);
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (strcmp(how, "removed") != 0)
        say("msgctl IPC_RMID", msgctl(q, IPC_RMID, NULL));
}

static int thread_q;
static pid_t receiver_tid;

static void *receiver(void *arg) {
    (void)arg;
    receiver_tid = gettid();
    receive(thread_q, 0, 64, 0);
    return NULL;
}

static void threads(void) {
    thread_q = id_said("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    pthread_t t;
    pthread_create(&t, NULL, receiver, NULL);
    while (!__atomic_load_n(&receiver_tid, __ATOMIC_SEQ_CST))
        usleep(1000);
    wait_sleeping(getpid(), receiver_tid);
    struct msg m = {9, "from a thread"};
    long rc = msgsnd(thread_q, &m, strlen(m.text), 0);
    pthread_join(t, NULL);
    say("msgsnd", rc);
    say("msgctl IPC_RMID", msgctl(thread_q, IPC_RMID, NULL));
}

/* Created here, filled, removed by a child (fork) or a new image (exec). */
static void elsewhere(const char *self, int exec) {
    int q = id_said("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    send(q, 1, "left for the child", 0);
    pid_t child = fork();
    if (child == 0) {
        if (exec) {
            char id[16];
            snprintf(id, sizeof id, "%d", q);
            execl(self, self, "rmid", id, (char *)NULL);
            _exit(127);
        }
        receive(q, 0, 64, 0);
        say("msgctl IPC_RMID in child", msgctl(q, IPC_RMID, NULL));
        _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* A receive that waits about 300 ms for a child's message. */
static void blocked_long(void) {
    int q = id_said("msgget", msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    pid_t child = fork();
    if (child == 0) {
        struct msg m = {1, "late"};
        usleep(300000);
        _exit(msgsnd(q, &m, 4, 0) == 0 ? 0 : 1);
    }
    receive(q, 0, 64, 0);
    int st;
    waitpid(child, &st, 0);
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    say("msgctl IPC_RMID", msgctl(q, IPC_RMID, NULL));
}

/* A queue made and filled with raw system calls, out of the shim's sight, and left. */
static void raw_leak(void) {
    struct msg m = {1, "unseen"};
    long q = syscall(SYS_msgget, IPC_PRIVATE, IPC_CREAT | 0600);
    say("raw msgget", q < 0 ? q : 1);
    say("raw msgsnd", syscall(SYS_msgsnd, q, &m, 6, 0));
}

int main(int argc, char **argv) {
    alarm(20);
    const char *mode = argc > 1 ? argv[1] : "clean";
    if (strcmp(mode, "clean") == 0)
        life("");
    else if (strcmp(mode, "misuse") == 0)
        misuse();
    else if (strcmp(mode, "skip-rmid") == 0)
        life("rmid");
    else if (strcmp(mode, "skip-rmid-empty") == 0)
        life("rmid-empty");
    else if (strcmp(mode, "blocked") == 0 || strcmp(mode, "signal") == 0 ||
             strcmp(mode, "removed") == 0)
        across_processes(mode);
    else if (strcmp(mode, "threads") == 0)
        threads();
    else if (strcmp(mode, "fork") == 0 || strcmp(mode, "exec") == 0)
        elsewhere(argv[0], strcmp(mode, "exec") == 0);
    else if (strcmp(mode, "rmid") == 0 && argc > 2) {
        int q = atoi(argv[2]);
        receive(q, 0, 64, 0);
        say("msgctl IPC_RMID after exec", msgctl(q, IPC_RMID, NULL));
    } else if (strcmp(mode, "blocked-long") == 0)
        blocked_long();
    else if (strcmp(mode, "raw-leak") == 0)
        raw_leak();
    else
        return 2;
    return 0;
}
