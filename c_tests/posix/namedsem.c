/* POSIX named semaphores through the shim: sem_open, sem_wait/sem_post, sem_close,
 * sem_unlink.
 *
 *   namedsem MODE
 *
 * MODE says which release step to leave out ("clean": none) or which process shape to use.
 * Prints every result and errno, and nothing that differs between runs (names carry the pid
 * but are never printed, nor are addresses), so native, linked and preloaded runs print the
 * same. Every name is /shmtrace-namedsem-PID-TAG (the file /dev/shm/sem.shmtrace-namedsem-...);
 * the runner removes what a run leaves. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scenario.h"

static void name_of(char *out, size_t n, const char *tag) {
    snprintf(out, n, "/shmtrace-namedsem-%d-%s", (int)getpid(), tag);
}

/* sem_open's result as say() shows it: -1 for SEM_FAILED, 1 for a semaphore. */
static long opened(const sem_t *s) {
    return s == SEM_FAILED ? -1 : 1;
}

/* One semaphore's whole life, opened twice (glibc hands out one mapping per name and counts
 * the opens); `skip` names the release step left out: "close" leaves the first open, the
 * one at the O_CREAT|O_EXCL call, unclosed. */
static void cycle(const char *tag, const char *skip) {
    char name[64];
    name_of(name, sizeof name, tag);
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
    say("sem_open create", opened(s));
    if (s == SEM_FAILED)
        exit(1);
    sem_t *again = sem_open(name, 0);
    say("sem_open existing", opened(again));
    say("same semaphore", again == s ? 0 : -1);
    say("sem_open excl again", opened(sem_open(name, O_CREAT | O_EXCL, 0600, 0)));
    say("sem_wait", sem_wait(again));
    say("sem_post", sem_post(s));
    int value = -1;
    sem_getvalue(s, &value);
    printf("value %d\n", value);
    say("sem_close existing", sem_close(again));
    if (strcmp(skip, "close") != 0)
        say("sem_close", sem_close(s));
    if (strcmp(skip, "unlink") != 0) {
        say("sem_unlink", sem_unlink(name));
        say("sem_unlink again", sem_unlink(name));
        say("sem_open gone", opened(sem_open(name, 0)));
    }
}

/* O_CREAT without O_EXCL: creates a new name, opens an existing one (and ignores its value). */
static void creat_alone(void) {
    char name[64];
    name_of(name, sizeof name, "creat");
    sem_t *s = sem_open(name, O_CREAT, 0600, 2);
    say("sem_open creat new", opened(s));
    sem_t *t = sem_open(name, O_CREAT, 0600, 5);
    say("sem_open creat existing", opened(t));
    int value = -1;
    sem_getvalue(t, &value);
    printf("value %d\n", value);
    say("sem_close", sem_close(s));
    say("sem_close", sem_close(t));
    say("sem_unlink", sem_unlink(name));
}

static void *thread_cycles(void *arg) {
    char tag[16];
    for (int i = 0; i < 50; i++) {
        char name[64];
        snprintf(tag, sizeof tag, "t%ld-%d", (long)(size_t)arg, i);
        name_of(name, sizeof name, tag);
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
        if (s == SEM_FAILED || sem_wait(s) != 0 || sem_post(s) != 0 || sem_close(s) != 0 ||
            sem_unlink(name) != 0)
            return (void *)1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    alarm(20);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "clean";
    if (strcmp(mode, "clean") == 0 || strcmp(mode, "skip-close") == 0 ||
        strcmp(mode, "skip-unlink") == 0) {
        cycle("a", mode + (strncmp(mode, "skip-", 5) == 0 ? 5 : 0));
    } else if (strcmp(mode, "creat") == 0) {
        creat_alone();
    } else if (strcmp(mode, "fork") == 0) {
        /* The parent creates and closes, the child unlinks: no leak. */
        char name[64];
        name_of(name, sizeof name, "fork");
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
        say("sem_open create", opened(s));
        pid_t pid = fork();
        if (pid == 0) {
            /* The child inherited the open semaphore: it posts and closes its copy. */
            int ok = sem_post(s) == 0 && sem_close(s) == 0 && sem_unlink(name) == 0;
            _exit(ok ? 0 : 1);
        }
        say("sem_wait for the child", sem_wait(s));
        int status;
        waitpid(pid, &status, 0);
        say("child unlinked", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
        say("sem_close", sem_close(s));
    } else if (strcmp(mode, "fork-inherit") == 0) {
        /* The child inherits the open semaphore and never closes it: the parent's to close. */
        char name[64];
        name_of(name, sizeof name, "inherit");
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
        say("sem_open create", opened(s));
        pid_t pid = fork();
        if (pid == 0)
            _exit(sem_post(s) == 0 ? 0 : 1);
        int status;
        waitpid(pid, &status, 0);
        say("child posted", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
        say("sem_close", sem_close(s));
        say("sem_unlink", sem_unlink(name));
    } else if (strcmp(mode, "exec") == 0) {
        /* Created and closed before exec, unlinked by the new image. */
        char name[64];
        name_of(name, sizeof name, "exec");
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
        say("sem_open create", opened(s));
        say("sem_close", sem_close(s));
        execl("/proc/self/exe", argv[0], "exec-unlink", name, (char *)NULL);
        say("execl", -1);
        return 1;
    } else if (strcmp(mode, "exec-unlink") == 0 && argc > 2) {
        say("sem_unlink after exec", sem_unlink(argv[2]));
    } else if (strcmp(mode, "threads") == 0) {
        say_threads(thread_cycles);
    } else {
        fprintf(stderr, "namedsem: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
