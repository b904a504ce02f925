/*
 * mapview.h - the one mapping view of the C tests: what the kernel maps (/proc/self/maps)
 * against what the shim's ledger says (shmtrace_mapping_at), page by page. Used by the
 * ledger programs (ledger.h, linked with the shim) and the hostile-host programs (hostile.h,
 * which find the C API with dlsym): each passes its own way to call shmtrace_mapping_at.
 *
 * /proc/self/maps is read with open/read into static buffers, so reading it maps nothing
 * (a malloc'd buffer could add or move the very mappings being compared).
 */
#ifndef MAPVIEW_H
#define MAPVIEW_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <shmtrace.h>

struct mapview {
    int mapped;
    uintptr_t start, end; /* the kernel's VMA, or the ledger's mapping */
    int prot;             /* PROT_READ | PROT_WRITE | PROT_EXEC */
    int shared;
    int kind;      /* SHMTRACE_MAPPING_* */
    int shmid;     /* -1 unless kind is SHMTRACE_MAPPING_SHM */
    int inherited; /* the ledger's flag; -1 for the kernel's view */
};

typedef shmtrace_result (*mapview_lookup)(const void *addr, shmtrace_mapping *out);

#define MAPVIEW_NONE {0, 0, 0, 0, 0, 0, -1, -1}

static char mapview_buf[4 << 20];
static struct mapview mapview_kmaps[65536];
static int mapview_nkmaps;

/* Reads a whole file into buf (NUL-terminated); its length, or -1 (unreadable, too big). */
static inline int mapview_slurp(const char *path, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    if (r < 0 || n >= size - 1)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

/* Takes the kernel's view (/proc/self/maps) for mapview_kernel_at; 0, or -1 on failure. */
static inline int mapview_load(void)
{
    if (mapview_slurp("/proc/self/maps", mapview_buf, sizeof mapview_buf) < 0)
        return -1;
    mapview_nkmaps = 0;
    for (char *line = mapview_buf, *next; *line; line = next) {
        char *p, *path;
        unsigned long inode;
        struct mapview *v = &mapview_kmaps[mapview_nkmaps];
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        if (mapview_nkmaps == (int)(sizeof mapview_kmaps / sizeof mapview_kmaps[0]))
            return -1;
        v->mapped = 1;
        v->inherited = -1;
        v->start = strtoul(line, &p, 16);
        v->end = strtoul(p + 1, &p, 16);
        p++; /* "rw-s" */
        v->prot = (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) |
                  (p[2] == 'x' ? PROT_EXEC : 0);
        v->shared = p[3] == 's';
        strtoul(p + 4, &p, 16); /* offset */
        p = strchr(p + 1, ' '); /* after the device */
        inode = strtoul(p, &p, 10);
        path = p + strspn(p, " ");
        if (strncmp(path, "/SYSV", 5) == 0) /* a SysV attachment: the inode is the shmid */
            v->kind = SHMTRACE_MAPPING_SHM;
        else if (!*path || strcmp(path, "/dev/zero (deleted)") == 0) /* MAP_SHARED anon */
            v->kind = SHMTRACE_MAPPING_ANONYMOUS;
        else
            v->kind = SHMTRACE_MAPPING_FILE;
        v->shmid = v->kind == SHMTRACE_MAPPING_SHM ? (int)inode : -1;
        mapview_nkmaps++;
    }
    return 0;
}

/* What the kernel maps at `a`, as of the last mapview_load(). */
static inline struct mapview mapview_kernel_at(uintptr_t a)
{
    struct mapview none = MAPVIEW_NONE;
    int lo = 0, hi = mapview_nkmaps - 1; /* /proc/self/maps is sorted */
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a < mapview_kmaps[mid].start)
            hi = mid - 1;
        else if (a >= mapview_kmaps[mid].end)
            lo = mid + 1;
        else
            return mapview_kmaps[mid];
    }
    return none;
}

/* What the ledger says is mapped at `a`; *result gets shmtrace_mapping_at's result. */
static inline struct mapview mapview_ledger_at(mapview_lookup lookup, uintptr_t a,
                                               shmtrace_result *result)
{
    struct mapview v = MAPVIEW_NONE;
    shmtrace_mapping m;
    *result = lookup((const void *)a, &m);
    if (*result != SHMTRACE_OK)
        return v;
    v.mapped = 1;
    v.start = m.start;
    v.end = m.end;
    v.prot = m.prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    v.shared = m.shared;
    v.kind = m.kind;
    v.shmid = m.kind == SHMTRACE_MAPPING_SHM ? m.shmid : -1;
    v.inherited = m.inherited;
    return v;
}

static inline const char *mapview_describe(struct mapview v, char *buf, size_t size)
{
    static const char *const kinds[] = {"anon", "file", "shm", "unknown"};
    if (!v.mapped)
        return "unmapped";
    snprintf(buf, size, "%c%c%c%c %s", v.prot & PROT_READ ? 'r' : '-',
             v.prot & PROT_WRITE ? 'w' : '-', v.prot & PROT_EXEC ? 'x' : '-',
             v.shared ? 's' : 'p', v.kind >= 0 && v.kind < 4 ? kinds[v.kind] : "kind?");
    if (v.kind == SHMTRACE_MAPPING_SHM)
        snprintf(buf + strlen(buf), size - strlen(buf), " shmid=%d", v.shmid);
    if (v.inherited >= 0)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s",
                 v.inherited ? " inherited" : " own");
    snprintf(buf + strlen(buf), size - strlen(buf), " [%#lx-%#lx)", (unsigned long)v.start,
             (unsigned long)v.end);
    return buf;
}

/* NULL if, on every page of [start, start + len), the kernel (as of the last mapview_load)
 * and the ledger agree: mapped or not, and if mapped its protection, shared or private, kind
 * and shmid; and, when `inherited` is 0 or 1, the ledger's inherited flag. Else the first
 * disagreement, both views described (static buffer). */
static inline const char *mapview_disagreement(mapview_lookup lookup, const void *start,
                                               size_t len, int inherited)
{
    static char msg[512];
    char k[192], l[192];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page) {
        uintptr_t a = (uintptr_t)start + off;
        shmtrace_result r;
        struct mapview kv = mapview_kernel_at(a), lv = mapview_ledger_at(lookup, a, &r);
        int same = kv.mapped == lv.mapped;
        if (r != SHMTRACE_OK && r != SHMTRACE_NOT_FOUND) {
            snprintf(msg, sizeof msg, "page %zu (%#lx): shmtrace_mapping_at failed (%d)",
                     off / page, (unsigned long)a, (int)r);
            return msg;
        }
        if (same && kv.mapped)
            same = kv.prot == lv.prot && kv.shared == lv.shared && kv.kind == lv.kind &&
                   kv.shmid == lv.shmid && (inherited < 0 || lv.inherited == inherited);
        if (!same) {
            snprintf(msg, sizeof msg, "page %zu (%#lx): kernel %s, ledger %s%s", off / page,
                     (unsigned long)a, mapview_describe(kv, k, sizeof k),
                     mapview_describe(lv, l, sizeof l),
                     inherited < 0 ? "" : inherited ? " (expected inherited)"
                                                    : " (expected own)");
            return msg;
        }
    }
    return NULL;
}

#endif
