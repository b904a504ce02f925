/* POSIX shared memory through the shim: shm_open, ftruncate, mmap, munmap, shm_unlink.
 *
 *   posix MODE
 *
 * MODE says which release step to leave out ("clean": none) or which process shape to use.
 * Prints every result and errno, and nothing that differs between runs (names carry the pid
 * but are never printed), so native, linked and preloaded runs print the same. Every name is
 * /shmtrace-posix-PID-TAG; the runner removes what a run leaves. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scenario.h"

#define SIZE 8192

static void name_of(char *out, size_t n, const char *tag) {
    snprintf(out, n, "/shmtrace-posix-%d-%s", (int)getpid(), tag);
}

/* One object's whole life; `skip` names the release step left out. */
static void cycle(const char *tag, const char *skip) {
    char name[64];
    name_of(name, sizeof name, tag);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    say("shm_open create", fd);
    if (fd < 0)
        exit(1);
    say("ftruncate", ftruncate(fd, SIZE));
    char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    say("mmap", p == MAP_FAILED ? -1 : 1);
    strcpy(p, "hello");
    int again = shm_open(name, O_RDONLY, 0);
    say("shm_open existing", again);
    char *q = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, again, 0);
    say("mmap existing", q == MAP_FAILED ? -1 : 1);
    printf("shared: %s\n", q);
    say("munmap existing", munmap(q, SIZE));
    close(again);
    say("shm_open excl again", shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600));
    if (strcmp(skip, "munmap") != 0)
        say("munmap", munmap(p, SIZE));
    close(fd);
    if (strcmp(skip, "unlink") != 0) {
        say("shm_unlink", shm_unlink(name));
        say("shm_unlink again", shm_unlink(name));
        say("shm_open gone", shm_open(name, O_RDWR, 0));
    }
}

/* O_CREAT without O_EXCL: creates a new name, opens an existing one. */
static void creat_alone(void) {
    char name[64];
    name_of(name, sizeof name, "creat");
    int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    say("shm_open creat new", fd);
    int fd2 = shm_open(name, O_RDWR | O_CREAT, 0600);
    say("shm_open creat existing", fd2);
    close(fd);
    close(fd2);
    say("shm_unlink", shm_unlink(name));
}

/* Names libc refuses, and libc's answer. */
static void bad_input(void) {
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = 0;
    say("shm_open empty", shm_open("", O_RDWR, 0));
    say("shm_open slash", shm_open("/", O_RDWR, 0));
    say("shm_open inner slash", shm_open("/a/b", O_RDWR | O_CREAT, 0600));
    say("shm_open too long", shm_open(longname, O_RDWR | O_CREAT, 0600));
    say("shm_open bad flags", shm_open("/shmtrace-posix-never", O_RDWR | O_CREAT | O_EXCL | O_DIRECTORY, 0600));
    say("shm_unlink empty", shm_unlink(""));
    say("shm_unlink missing", shm_unlink("/shmtrace-posix-never"));
}

static void *thread_cycles(void *arg) {
    char tag[16];
    for (int i = 0; i < 50; i++) {
        char name[64];
        snprintf(tag, sizeof tag, "t%ld-%d", (long)(size_t)arg, i);
        name_of(name, sizeof name, tag);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            return (void *)1;
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || munmap(p, 4096) != 0 || close(fd) != 0 || shm_unlink(name) != 0)
            return (void *)1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    alarm(20);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "clean";
    if (strcmp(mode, "clean") == 0 || strcmp(mode, "skip-unlink") == 0 ||
        strcmp(mode, "skip-munmap") == 0) {
        cycle("a", mode + (strncmp(mode, "skip-", 5) == 0 ? 5 : 0));
        creat_alone();
    } else if (strcmp(mode, "bad-input") == 0) {
        bad_input();
    } else if (strcmp(mode, "fork") == 0) {
        /* The parent creates, the child unlinks: no leak. */
        char name[64];
        name_of(name, sizeof name, "fork");
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        say("shm_open create", fd);
        close(fd);
        pid_t pid = fork();
        if (pid == 0)
            _exit(shm_unlink(name) == 0 ? 0 : 1);
        int status;
        waitpid(pid, &status, 0);
        say("child unlinked", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
    } else if (strcmp(mode, "exec") == 0) {
        /* Created before exec, unlinked by the new image. */
        char name[64];
        name_of(name, sizeof name, "exec");
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        say("shm_open create", fd);
        close(fd);
        execl("/proc/self/exe", argv[0], "exec-unlink", name, (char *)NULL);
        say("execl", -1);
        return 1;
    } else if (strcmp(mode, "exec-unlink") == 0 && argc > 2) {
        say("shm_unlink after exec", shm_unlink(argv[2]));
    } else if (strcmp(mode, "threads") == 0) {
        say_threads(thread_cycles);
    } else {
        fprintf(stderr, "posix: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
