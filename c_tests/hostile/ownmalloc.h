/*
 * ownmalloc.h - the program's own malloc (included by alloc.c built with -DOWN_MALLOC): every
 * allocation of the process, glibc's internal ones included, comes from here, and here from
 * mmap through the PLT (so through the shim), with the allocator's lock HELD across the call,
 * as jemalloc and tcmalloc do. Blocks of BIG bytes or more (and over-aligned ones) are mapped
 * one by one and unmapped by free; smaller ones come from 1 MiB chunks, by power-of-two class,
 * and are reused. The lock is taken across fork (pthread_atfork, registered at the first
 * malloc, like jemalloc).
 *
 * Every mmap / munmap the allocator makes is counted (own_calls), so the program can require
 * the shim's counts to match exactly. own_from_shim counts malloc-family calls whose return
 * address lies inside libshmtrace.so: the shim must never call the host's allocator from a
 * hook.
 */
#ifndef OWNMALLOC_H
#define OWNMALLOC_H

#include <malloc.h>
#include <sched.h>

#define OM_CHUNK (1 << 20)
#define OM_BIG (64 << 10)
#define OM_CLASSES 12 /* 32 .. 64 KiB */
#define OM_HDR 32

struct om_hdr {
    size_t size;  /* what the caller asked for */
    char *base;   /* the mapping of a big block, else NULL */
    size_t len;   /* its length */
    size_t class; /* the size class of a small block */
};

static atomic_flag om_lock = ATOMIC_FLAG_INIT;
static char *om_bump, *om_bump_end;
static void *om_free_list[OM_CLASSES];
static atomic_int om_atfork; /* 0 not yet, 1 registering, 2 done */
static atomic_ulong om_calls[NFN];   /* mmap / munmap calls made by the allocator */
static atomic_ulong own_from_shim;  /* malloc-family calls made from inside the shim */
static uintptr_t om_shim_lo, om_shim_hi;

static void om_take(void)
{
    while (atomic_flag_test_and_set_explicit(&om_lock, memory_order_acquire))
        sched_yield();
}

static void om_give(void)
{
    atomic_flag_clear_explicit(&om_lock, memory_order_release);
}

static void om_register_atfork(void)
{
    int none = 0;
    if (atomic_load(&om_atfork) == 2 || !atomic_compare_exchange_strong(&om_atfork, &none, 1))
        return;
    pthread_atfork(om_take, om_give, om_give); /* may itself call malloc */
    atomic_store(&om_atfork, 2);
}

static inline void om_note_caller(void *ret)
{
    if ((uintptr_t)ret >= om_shim_lo && (uintptr_t)ret < om_shim_hi)
        atomic_fetch_add(&own_from_shim, 1);
}

/* With the lock held. */
static void *om_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    atomic_fetch_add(&om_calls[SHMTRACE_CALL_MMAP], 1);
    return p == MAP_FAILED ? NULL : p;
}

static void *om_alloc(size_t size, size_t align)
{
    struct om_hdr *h;
    char *ret;
    om_register_atfork();
    if (size >= OM_BIG || align > 16) {
        size_t len = (size + OM_HDR + align + (size_t)4095) & ~(size_t)4095;
        om_take();
        char *base = om_map(len);
        om_give();
        if (!base)
            return NULL;
        ret = (char *)(((uintptr_t)base + OM_HDR + align - 1) & ~(uintptr_t)(align - 1));
        h = (struct om_hdr *)(ret - OM_HDR);
        h->size = size;
        h->base = base;
        h->len = len;
        h->class = 0;
        return ret;
    }
    size_t class = 0;
    while (((size_t)32 << class) < size + OM_HDR)
        class++;
    size_t block = (size_t)32 << class;
    om_take();
    if (om_free_list[class]) {
        ret = om_free_list[class];
        om_free_list[class] = *(void **)ret;
    } else {
        if (!om_bump || (size_t)(om_bump_end - om_bump) < block) {
            om_bump = om_map(OM_CHUNK);
            if (!om_bump) {
                om_give();
                return NULL;
            }
            om_bump_end = om_bump + OM_CHUNK;
        }
        ret = om_bump;
        om_bump += block;
    }
    om_give();
    h = (struct om_hdr *)ret;
    h->size = size;
    h->base = NULL;
    h->len = 0;
    h->class = class;
    return ret + OM_HDR;
}

static void om_release(void *p)
{
    if (!p)
        return;
    struct om_hdr *h = (struct om_hdr *)((char *)p - OM_HDR);
    om_take();
    if (h->base) {
        munmap(h->base, h->len);
        atomic_fetch_add(&om_calls[SHMTRACE_CALL_MUNMAP], 1);
    } else {
        *(void **)h = om_free_list[h->class];
        om_free_list[h->class] = h;
    }
    om_give();
}

void *malloc(size_t size)
{
    om_note_caller(__builtin_return_address(0));
    return om_alloc(size, 16);
}

void free(void *p)
{
    om_note_caller(__builtin_return_address(0));
    om_release(p);
}

void *calloc(size_t n, size_t size)
{
    om_note_caller(__builtin_return_address(0));
    if (size && n > (size_t)-1 / size)
        return NULL;
    void *p = om_alloc(n * size, 16);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *old, size_t size)
{
    om_note_caller(__builtin_return_address(0));
    if (!old)
        return om_alloc(size, 16);
    size_t had = ((struct om_hdr *)((char *)old - OM_HDR))->size;
    void *p = om_alloc(size, 16);
    if (p) {
        memcpy(p, old, had < size ? had : size);
        om_release(old);
    }
    return p;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    om_note_caller(__builtin_return_address(0));
    void *p = om_alloc(size, align < 16 ? 16 : align);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
    om_note_caller(__builtin_return_address(0));
    return om_alloc(size, align < 16 ? 16 : align);
}

void *memalign(size_t align, size_t size)
{
    om_note_caller(__builtin_return_address(0));
    return om_alloc(size, align < 16 ? 16 : align);
}

void *valloc(size_t size)
{
    return om_alloc(size, 4096);
}

void *pvalloc(size_t size)
{
    return om_alloc((size + 4095) & ~(size_t)4095, 4096);
}

size_t malloc_usable_size(void *p)
{
    return p ? ((struct om_hdr *)((char *)p - OM_HDR))->size : 0;
}

/* The shim's code range, for own_from_shim (call once the API is found). */
static int om_find_shim(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t base = (uintptr_t)data;
    if (info->dlpi_addr != base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            om_shim_lo = info->dlpi_addr + ph->p_vaddr;
            om_shim_hi = om_shim_lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

static void om_locate_shim(void)
{
    Dl_info di;
    if (hz_api.present && dladdr((void *)hz_api.get_stats, &di) && di.dli_fbase)
        dl_iterate_phdr(om_find_shim, di.dli_fbase);
}

#endif
