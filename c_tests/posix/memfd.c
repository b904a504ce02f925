/* memfd_create through the shim, and mappings of shared memory objects named after them.
 *
 *   memfd MODE
 *
 * transparency  results and errno of good and bad calls, /proc/self/maps' names for them;
 *               prints nothing that differs between runs, so native, linked and preloaded
 *               runs print the same
 * maps          maps each case and prints `map LABEL ADDRESS PATH` with the path
 *               /proc/self/maps shows for the address (the oracle the log is compared with)
 * report        maps, then prints `now LABEL ADDRESS PATH` for each case as /proc/self/maps
 *               shows it now, then the shim's JSON report (shmtrace_write_report, found with
 *               dlsym: the program is not linked with the shim) on a line of its own
 * leak          one memfd mapping whose pointer is dropped (lost), one still referenced
 * fork          the child maps a memfd its parent created and leaves the mapping
 * exec          exec'd into exec-child, which creates a memfd and leaves its mapping
 * threads       4 threads create, map and release memfds (descriptor numbers reused
 *               across threads all the time); each thread leaves its last mapping
 *
 * Shared memory names are /shmtrace-posix-PID-TAG; the runner removes what a run leaves. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scenario.h"

#define SIZE 8192
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26) /* linux/memfd.h; glibc's headers lack it */
#endif

/* Still referenced at exit: a mapping reachable from here is not lost (not static, so the
 * stores into it stay). */
void *kept[8];

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* The path /proc/self/maps shows for the mapping at `addr` ("" for none). */
static void maps_path(const void *addr, char *out, size_t n) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int at = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &at) < 2)
            continue;
        if ((uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, n, "%s", at > 0 ? line + at : "");
            break;
        }
    }
    if (f)
        fclose(f);
}

static int new_memfd(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, SIZE) != 0)
        die("memfd_create");
    return fd;
}

static void *map(int fd) {
    void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void transparency(void) {
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    char longest[250];
    memset(longest, 'b', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    int fd = memfd_create("posix-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    say("memfd_create", fd);
    say("ftruncate", ftruncate(fd, SIZE));
    char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    say("mmap", p == MAP_FAILED ? -1 : 1);
    char path[512];
    maps_path(p, path, sizeof path);
    printf("maps: %s\n", path);
    say("seal", fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
    say("munmap", munmap(p, SIZE));
    close(fd);
    int empty = memfd_create("", 0);
    say("memfd_create empty name", empty);
    close(empty);
    int full = memfd_create(longest, 0);
    say("memfd_create 249 bytes", full);
    close(full);
    say("memfd_create NULL", memfd_create(NULL, 0));
    say("memfd_create too long", memfd_create(longname, 0));
    say("memfd_create bad flags", memfd_create("posix-bad", 0x100));
    say("memfd_create huge size without hugetlb", memfd_create("posix-bad", MFD_HUGE_2MB));
    say("memfd_create bad pointer", memfd_create((const char *)8, 0));
}

/* Every case mapped, for `report` to look at again. */
static struct {
    const char *label;
    const void *addr;
} mapped[16];
static int nmapped;

static void report_map(const char *label, const void *addr) {
    char path[512];
    maps_path(addr, path, sizeof path);
    printf("map %s %p %s\n", label, addr, path);
    if (nmapped < (int)(sizeof mapped / sizeof mapped[0])) {
        mapped[nmapped].label = label;
        mapped[nmapped++].addr = addr;
    }
}

static int open_shm(const char *tag) {
    char name[64];
    snprintf(name, sizeof name, "/shmtrace-posix-%d-%s", (int)getpid(), tag);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, SIZE) != 0)
        die("shm_open");
    return fd;
}

/* Every way a descriptor can come to be mapped: the log must name exactly what the kernel
 * shows, or nothing. */
static void maps(void) {
    int ring = new_memfd("posix-ring");
    report_map("memfd", map(ring));

    char name[64];
    snprintf(name, sizeof name, "/shmtrace-posix-%d-maps", (int)getpid());
    int shm = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (shm < 0 || ftruncate(shm, SIZE) != 0)
        die("shm_open");
    report_map("shm", map(shm));

    /* The number of a closed memfd, reused by a regular file. */
    int gone = new_memfd("posix-gone");
    close(gone);
    FILE *tmp = tmpfile();
    if (!tmp || fileno(tmp) != gone || ftruncate(fileno(tmp), SIZE) != 0)
        die("tmpfile at the memfd's number");
    report_map("reused-by-file", map(fileno(tmp)));

    /* dup2 puts another memfd at a marked number. */
    int a = new_memfd("posix-a");
    int b = new_memfd("posix-b");
    if (dup2(b, a) != a)
        die("dup2");
    report_map("dup2", map(a));

    /* dup2 puts another shm object at a number shm_open returned. */
    int marked = open_shm("maps-marked");
    int other = open_shm("maps-other");
    if (dup2(other, marked) != marked)
        die("dup2");
    report_map("dup2-shm", map(marked));

    /* Renamed after shm_open: the kernel shows the new name (a log, the one opened). */
    int renamed = open_shm("maps-renamed");
    char from[64], to[64];
    snprintf(from, sizeof from, "/dev/shm/shmtrace-posix-%d-maps-renamed", (int)getpid());
    snprintf(to, sizeof to, "/dev/shm/shmtrace-posix-%d-maps-renamed-to", (int)getpid());
    if (rename(from, to) != 0)
        die("rename");
    report_map("shm-renamed", map(renamed));

    /* A copy under a new number (dup is not hooked). */
    int copy = dup(ring);
    report_map("dup", map(copy));

    /* Unlinked before it is mapped. */
    if (shm_unlink(name) != 0)
        die("shm_unlink");
    report_map("shm-unlinked", map(shm));

    report_map("anonymous",
               mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    int file = open("/proc/self/exe", O_RDONLY);
    report_map("file", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, file, 0));
}

/* The cases as the kernel shows them now, then the shim's report of them. */
static void report(void) {
    maps();
    char path[512];
    for (int i = 0; i < nmapped; i++) {
        maps_path(mapped[i].addr, path, sizeof path);
        printf("now %s %p %s\n", mapped[i].label, mapped[i].addr, path);
    }
    int (*write_report)(int, int) =
        (int (*)(int, int))(uintptr_t)dlsym(RTLD_DEFAULT, "shmtrace_write_report");
    if (!write_report)
        die("shmtrace_write_report: not preloaded");
    fflush(stdout);
    if (write_report(1, 1 /* SHMTRACE_FORMAT_JSON */) != 0)
        die("shmtrace_write_report");
}

static void leak(void) {
    void *volatile lost = map(new_memfd("posix-lost"));
    kept[0] = map(new_memfd("posix-kept"));
    *(char *)lost = 1;
    lost = NULL;
}

static void *thread_main(void *arg) {
    long t = (long)arg;
    char name[32];
    void *last = NULL;
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "posix-t%ld-%d", t, i);
        int fd = new_memfd(name);
        void *p = map(fd);
        close(fd);
        if (i == 49)
            last = p;
        else if (munmap(p, SIZE) != 0)
            return (void *)1;
    }
    kept[1 + t] = last;
    return NULL;
}

int main(int argc, char **argv) {
    alarm(20);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "transparency";
    if (strcmp(mode, "transparency") == 0) {
        transparency();
    } else if (strcmp(mode, "maps") == 0) {
        maps();
    } else if (strcmp(mode, "report") == 0) {
        report();
    } else if (strcmp(mode, "leak") == 0) {
        leak();
    } else if (strcmp(mode, "fork") == 0) {
        int fd = new_memfd("posix-fork");
        pid_t pid = fork();
        if (pid == 0) {
            kept[0] = map(fd);
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        say("child", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
    } else if (strcmp(mode, "exec") == 0) {
        execl("/proc/self/exe", argv[0], "exec-child", (char *)NULL);
        die("execl");
    } else if (strcmp(mode, "exec-child") == 0) {
        kept[0] = map(new_memfd("posix-exec"));
    } else if (strcmp(mode, "threads") == 0) {
        say_threads(thread_main);
    } else {
        fprintf(stderr, "memfd: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
