/* The ledger against the kernel, page by page, from inside the process under test.
 *
 * The kernel's view is /proc/self/maps (a SysV attachment shows as /SYSV<key> with the shmid as
 * its inode) and IPC_STAT through the raw system call, so that checking is invisible to the
 * shim. The ledger's view is the C API, found with dlsym so that the same program runs without
 * the shim (and then checks nothing). */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmtrace.h"

#define PAGE 4096UL
#define MAX_VMAS 4096

struct vma {
    uintptr_t start, end;
    int prot;
    int shmid; /* -1 unless a SysV attachment */
};

static struct vma vmas[MAX_VMAS];
static int nvmas;

static void read_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[4096];
    nvmas = 0;
    while (f && fgets(line, sizeof line, f) && nvmas < MAX_VMAS) {
        unsigned long s, e, off, ino;
        char perms[8], dev[32], path[2048] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %31s %lu %2047s", &s, &e, perms, &off, dev, &ino, path) < 6)
            continue;
        struct vma *v = &vmas[nvmas++];
        v->start = s;
        v->end = e;
        v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                  (perms[2] == 'x' ? PROT_EXEC : 0);
        v->shmid = strncmp(path, "/SYSV", 5) == 0 ? (int)ino : -1;
    }
    if (f)
        fclose(f);
}

static const struct vma *kernel_at(uintptr_t a)
{
    int lo = 0, hi = nvmas;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (vmas[mid].end <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nvmas && vmas[lo].start <= a ? &vmas[lo] : NULL;
}

typedef enum shmtrace_result (*mapping_at_fn)(const void *, struct shmtrace_mapping *);

static mapping_at_fn ledger_mapping_at(void)
{
    static int looked;
    static mapping_at_fn fn;
    if (!looked) {
        fn = (mapping_at_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "shmtrace_mapping_at");
        looked = 1;
    }
    return fn;
}

/* Compares [start, end) page by page; writes the first difference to `why` and returns 0. */
static int check_range(uintptr_t start, uintptr_t end, char *why, size_t n)
{
    mapping_at_fn at = ledger_mapping_at();
    if (!at)
        return 1;
    for (uintptr_t a = start; a < end; a += PAGE) {
        const struct vma *k = kernel_at(a);
        struct shmtrace_mapping m;
        int found = at((const void *)a, &m) == SHMTRACE_OK;
        if (!k != !found) {
            snprintf(why, n, "page %#lx: kernel %s, ledger %s", (unsigned long)a,
                     k ? "mapped" : "unmapped", found ? "mapped" : "unmapped");
            return 0;
        }
        if (!k)
            continue;
        int ledger_shm = m.kind == SHMTRACE_MAPPING_SHM ? m.shmid : -1;
        if (m.kind != SHMTRACE_MAPPING_UNKNOWN && ledger_shm != k->shmid) {
            snprintf(why, n, "page %#lx: kernel shmid %d, ledger %d (kind %d)", (unsigned long)a,
                     k->shmid, ledger_shm, m.kind);
            return 0;
        }
        if (k->shmid >= 0 && (m.start != k->start || m.end != k->end)) {
            snprintf(why, n, "attachment piece %#lx-%#lx: ledger %#lx-%#lx", (unsigned long)k->start,
                     (unsigned long)k->end, (unsigned long)m.start, (unsigned long)m.end);
            return 0;
        }
        if (m.kind != SHMTRACE_MAPPING_UNKNOWN && m.prot != k->prot) {
            snprintf(why, n, "page %#lx: kernel prot %d, ledger %d", (unsigned long)a, k->prot,
                     m.prot);
            return 0;
        }
    }
    return 1;
}

/* shm_nattch (raw IPC_STAT) against the attachment pieces the kernel shows: each piece is
 * one VMA, and the per-page check above already tied the ledger's pieces to those. */
static int check_nattch(int shmid, char *why, size_t n)
{
    struct shmid_ds ds;
    if (!ledger_mapping_at() || syscall(SYS_shmctl, shmid, IPC_STAT, &ds) != 0)
        return 1;
    unsigned long pieces = 0;
    for (int i = 0; i < nvmas; i++)
        pieces += vmas[i].shmid == shmid;
    if (pieces != ds.shm_nattch) {
        snprintf(why, n, "segment %d: shm_nattch %lu, pieces mapped %lu", shmid,
                 (unsigned long)ds.shm_nattch, pieces);
        return 0;
    }
    return 1;
}

#endif
