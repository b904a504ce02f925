/*
 * badinput: every hook with bad input.
 *
 * Invalid ids, NULL and wild pointers ((void *)1, an unmapped page, a PROT_NONE page, a
 * read-only page, an array or timespec running into an unmapped page) for sops, buf, array,
 * shmaddr and timeout; nsops 0, huge (1<<20, SIZE_MAX) and above 32 bits (the kernel takes
 * nsops as an unsigned int: 1<<32 reaches it as 0, (1<<32)+1 as 1); misaligned and zero-length
 * munmap; unknown flags and commands; IPC_STAT/GETALL/IPC_INFO into unmapped or read-only
 * memory; memfd_create with NULL, unmapped and too long names and refused flags;
 * _exit/_Exit with out-of-range statuses, in fork and vfork children. Each call
 * prints its outcome (edge.h): run.py compares the lines of the native, linked and preloaded
 * runs, and checks the JSON log against the journal. `badinput SECTION` runs one section.
 *
 * The bad pages sit at fixed low addresses (MAP_FIXED_NOREPLACE), where the kernel never puts
 * a mapping of its own choosing, so "unmapped" stays unmapped while the program runs.
 */
#include "../harness.h"
#include "edge.h"

#include <limits.h>
#include <semaphore.h>
#include <sys/wait.h>

#define PG 4096UL
#define AREA ((char *)0x200000UL)
static char *P0; /* read-write page; the page after it is unmapped */
static char *U;  /* unmapped page */
static char *PN; /* PROT_NONE page */
static char *RO; /* read-only page */
#define WILD ((void *)1)

static void layout(void)
{
    CHECK(sysconf(_SC_PAGESIZE) == (long)PG);
    P0 = AREA;
    U = AREA + PG;
    PN = AREA + 3 * PG;
    RO = AREA + 5 * PG;
    unsigned char v;
    for (int i = 0; i < 7; i++) /* the whole area must be free */
        CHECK(mincore(AREA + i * PG, PG, &v) == -1 && errno == ENOMEM);
    long fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    CHECK(syscall(SYS_mmap, P0, PG, PROT_READ | PROT_WRITE, fl, -1, 0) == (long)P0);
    CHECK(syscall(SYS_mmap, PN, PG, PROT_NONE, fl, -1, 0) == (long)PN);
    CHECK(syscall(SYS_mmap, RO, PG, PROT_READ, fl, -1, 0) == (long)RO);
}

static void unmap_if(void *p, size_t len)
{
    if (p != MAP_FAILED)
        raw_munmap(p, len);
}

static void shm_cases(void)
{
    struct shmid_ds ds;
    key_t key = test_key(1);

    puts("-- shmget");
    T_ID("shmget_size0", shmget, IPC_PRIVATE, 0, IPC_CREAT | 0600);
    T_ID("shmget_sizemax", shmget, IPC_PRIVATE, SIZE_MAX, IPC_CREAT | 0600);
    T_ID("shmget_size_2to62", shmget, IPC_PRIVATE, 1UL << 62, IPC_CREAT | 0600);
    T_ID("shmget_nokey", shmget, key, PG, 0600);
    int huge = T_ID("shmget_hugetlb", shmget, IPC_PRIVATE, PG, IPC_CREAT | SHM_HUGETLB | 0600);
    if (huge >= 0)
        raw_rm_shm(huge);
    int id = T_ID("shmget_key", shmget, key, PG, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    T_ID("shmget_excl_exists", shmget, key, PG, IPC_CREAT | IPC_EXCL | 0600);
    T_ID("shmget_bigger_than_existing", shmget, key, 2 * PG, 0600);
    int odd = T_ID("shmget_unknown_flags", shmget, IPC_PRIVATE, PG, IPC_CREAT | 0600 | 0x00f00000);
    if (odd >= 0)
        raw_rm_shm(odd);
    T_ID("shmget_negative_key_nocreat", shmget, (key_t)-2, PG, 0);

    puts("-- shmat");
        T_PTR("shmat_bad_id", shmat, -1, NULL, 0);
    T_PTR("shmat_unknown_id", shmat, 0x7ffffffe, NULL, 0);
    T_PTR("shmat_wild_addr", shmat, id, WILD, 0);
    T_PTR("shmat_misaligned", shmat, id, P0 + 8, 0);
    T_PTR("shmat_on_prot_none", shmat, id, PN, 0);
    T_PTR("shmat_on_readonly", shmat, id, RO, 0);
    T_PTR("shmat_remap_null", shmat, id, NULL, SHM_REMAP);
    T_PTR("shmat_high_addr", shmat, id, (void *)0xffff800000000000UL, 0);
    T_PTR("shmat_kernel_end", shmat, id, (void *)(~0UL & ~(PG - 1)), SHM_RND);
    void *a = T_PTR("shmat_unmapped_page", shmat, id, U, 0);
    if (a != (void *)-1)
        CHECK(syscall(SYS_shmdt, a) == 0);
    a = T_PTR("shmat_wild_rnd", shmat, id, WILD, SHM_RND);
    if (a != (void *)-1)
        CHECK(syscall(SYS_shmdt, a) == 0);
    a = T_PTR("shmat_unknown_flags", shmat, id, NULL, 0x7fff0000);
    if (a != (void *)-1)
        CHECK(syscall(SYS_shmdt, a) == 0);

    puts("-- shmdt");
    T_INT("shmdt_null", shmdt, NULL);
    T_INT("shmdt_wild", shmdt, WILD);
    T_INT("shmdt_unmapped", shmdt, U);
    T_INT("shmdt_prot_none", shmdt, PN);
    T_INT("shmdt_not_shm", shmdt, P0);
    T_INT("shmdt_high", shmdt, (void *)0xffff800000000000UL);

    puts("-- shmctl");
    T_INT("shmctl_stat_bad_id", shmctl, -1, IPC_STAT, &ds);
    T_INT("shmctl_stat_unknown_id", shmctl, 0x7ffffffe, IPC_STAT, &ds);
    T_INT("shmctl_stat_null", shmctl, id, IPC_STAT, NULL);
    T_INT("shmctl_stat_wild", shmctl, id, IPC_STAT, WILD);
    T_INT("shmctl_stat_unmapped", shmctl, id, IPC_STAT, (struct shmid_ds *)U);
    T_INT("shmctl_stat_prot_none", shmctl, id, IPC_STAT, (struct shmid_ds *)PN);
    T_INT("shmctl_stat_readonly", shmctl, id, IPC_STAT, (struct shmid_ds *)RO);
    T_INT("shmctl_stat_straddle", shmctl, id, IPC_STAT, (struct shmid_ds *)(U - 16));
    T_INT("shmctl_set_null", shmctl, id, IPC_SET, NULL);
    T_INT("shmctl_set_wild", shmctl, id, IPC_SET, WILD);
    T_INT("shmctl_set_unmapped", shmctl, id, IPC_SET, (struct shmid_ds *)U);
    T_INT("shmctl_set_prot_none", shmctl, id, IPC_SET, (struct shmid_ds *)PN);
    T_INT("shmctl_info_wild", shmctl, id, IPC_INFO, WILD);
    T_INT("shmctl_info_unmapped", shmctl, 0, IPC_INFO, (struct shmid_ds *)U);
    T_INT("shmctl_shminfo_readonly", shmctl, 0, SHM_INFO, (struct shmid_ds *)RO);
    T_INT("shmctl_shmstat_bad_index", shmctl, 0x7ffffffe, SHM_STAT, &ds);
    T_INT("shmctl_cmd99", shmctl, id, 99, &ds);
    T_INT("shmctl_cmd_minus1", shmctl, id, -1, NULL);
    T_INT("shmctl_cmd_huge", shmctl, id, 0x7fffffff, WILD);
    T_INT("shmctl_stat_ok", shmctl, id, IPC_STAT, &ds);
    T_INT("shmctl_rmid_wild_buf", shmctl, id, IPC_RMID, WILD);
    untrack(0, id);
    T_INT("shmctl_rmid_again", shmctl, id, IPC_RMID, NULL);
}

static void sem_cases(void)
{
    key_t key = test_key(2);
    struct sembuf one = {0, 0, IPC_NOWAIT};
    struct sembuf many[9];
    for (int i = 0; i < 9; i++)
        many[i] = (struct sembuf){(unsigned short)(i % 2), 0, IPC_NOWAIT};
    /* one valid sembuf, the last thing on its page: the next byte is unmapped */
    struct sembuf *edge_op = (struct sembuf *)(U - sizeof(struct sembuf));
    *edge_op = one;
    /* a timespec that runs into the unmapped page */
    struct timespec *edge_ts = (struct timespec *)(U - 8);
    struct timespec t_ok = {0, 1000000}, t_nsec = {0, 2000000000L}, t_neg = {-1, 0};

    puts("-- semget");
    T_ID("semget_nsems_neg", semget, IPC_PRIVATE, -1, IPC_CREAT | 0600);
    T_ID("semget_nsems_huge", semget, IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600);
    T_ID("semget_nsems0_create", semget, IPC_PRIVATE, 0, IPC_CREAT | 0600);
    T_ID("semget_nokey", semget, key, 1, 0600);
    int id = T_ID("semget_key", semget, key, 2, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    T_ID("semget_excl_exists", semget, key, 2, IPC_CREAT | IPC_EXCL | 0600);
    T_ID("semget_more_than_existing", semget, key, 3, 0600);
    T_ID("semget_existing_nsems0", semget, key, 0, 0);
    int odd = T_ID("semget_unknown_flags", semget, IPC_PRIVATE, 1, IPC_CREAT | 0600 | 0x7ff00000);
    if (odd >= 0)
        raw_rm_sem(odd);

    puts("-- semop");
    T_BLOCKING("semop_bad_id", semop, -1, &one, 1);
    T_BLOCKING("semop_unknown_id", semop, 0x7ffffffe, &one, 1);
    T_BLOCKING("semop_null", semop, id, NULL, 1);
    T_BLOCKING("semop_wild", semop, id, WILD, 1);
    T_BLOCKING("semop_unmapped", semop, id, (struct sembuf *)U, 1);
    T_BLOCKING("semop_prot_none", semop, id, (struct sembuf *)PN, 1);
    T_BLOCKING("semop_straddle", semop, id, edge_op, 2);
    T_BLOCKING("semop_nsops0", semop, id, &one, 0);
    T_BLOCKING("semop_nsops0_null", semop, id, NULL, 0);
    T_BLOCKING("semop_nsops0_wild", semop, id, WILD, 0);
    T_BLOCKING("semop_nsops_2to20", semop, id, &one, 1UL << 20);
    T_BLOCKING("semop_nsops_sizemax", semop, id, &one, SIZE_MAX);
    T_BLOCKING("semop_nsops_sizemax_wild", semop, id, WILD, SIZE_MAX);
    T_BLOCKING("semop_nsops_501", semop, id, many, 501);
    T_BLOCKING("semop_edge_ok", semop, id, edge_op, 1);
    T_BLOCKING("semop_9_ok", semop, id, many, 9);
    T_BLOCKING("semop_semnum_99", semop, id, (&(struct sembuf){99, 0, IPC_NOWAIT}), 1);
    T_BLOCKING("semop_eagain", semop, id, (&(struct sembuf){0, -1, IPC_NOWAIT}), 1);
    T_BLOCKING("semop_unknown_flg", semop, id, (&(struct sembuf){0, 0, 0x7000 | IPC_NOWAIT}), 1);
    T_BLOCKING("semop_to_semvmx", semop, id, (&(struct sembuf){0, 32767, 0}), 1);
    T_BLOCKING("semop_erange", semop, id, (&(struct sembuf){0, 32767, 0}), 1);
    T_BLOCKING("semop_back_to_0", semop, id, (&(struct sembuf){0, -32767, 0}), 1);

    puts("-- semtimedop");
    T_BLOCKING("semtimedop_null_timeout", semtimedop, id, &one, 1, NULL);
    T_BLOCKING("semtimedop_wild_timeout", semtimedop, id, &one, 1, WILD);
    T_BLOCKING("semtimedop_unmapped_timeout", semtimedop, id, &one, 1, (struct timespec *)U);
    T_BLOCKING("semtimedop_prot_none_timeout", semtimedop, id, &one, 1, (struct timespec *)PN);
    T_BLOCKING("semtimedop_straddle_timeout", semtimedop, id, &one, 1, edge_ts);
    T_BLOCKING("semtimedop_nsec_2e9", semtimedop, id, (&(struct sembuf){0, -1, 0}), 1, &t_nsec);
    T_BLOCKING("semtimedop_sec_neg", semtimedop, id, (&(struct sembuf){0, -1, 0}), 1, &t_neg);
    T_BLOCKING("semtimedop_nsec_2e9_nowait", semtimedop, id, &one, 1, &t_nsec);
    T_BLOCKING("semtimedop_times_out", semtimedop, id, (&(struct sembuf){0, -1, 0}), 1, &t_ok);
    T_BLOCKING("semtimedop_wild_sops", semtimedop, id, WILD, 1, &t_ok);
    T_BLOCKING("semtimedop_wild_both", semtimedop, id, WILD, 1, WILD);
    T_BLOCKING("semtimedop_nsops0_wild_timeout", semtimedop, id, &one, 0, WILD);
    T_BLOCKING("semtimedop_nsops0", semtimedop, id, &one, 0, &t_ok);
    T_BLOCKING("semtimedop_nsops_2to20", semtimedop, id, &one, 1UL << 20, &t_ok);
    T_BLOCKING("semtimedop_nsops_sizemax", semtimedop, id, WILD, SIZE_MAX, &t_ok);
    T_BLOCKING("semtimedop_bad_id_wild", semtimedop, -1, WILD, 1, WILD);
    T_BLOCKING("semtimedop_ok", semtimedop, id, many, 9, &t_ok);

    puts("-- semctl");
    T_INT("semctl_getval_bad_id", semctl, -1, 0, GETVAL);
    T_INT("semctl_getval_unknown_id", semctl, 0x7ffffffe, 0, GETVAL);
    T_INT("semctl_getval_semnum_99", semctl, id, 99, GETVAL);
    T_INT("semctl_getval_semnum_neg", semctl, id, -1, GETVAL);
    T_INT("semctl_setval_erange", semctl, id, 0, SETVAL, (union semun){.val = 40000});
    T_INT("semctl_setval_neg", semctl, id, 0, SETVAL, (union semun){.val = -1});
    T_INT("semctl_setval_semnum_neg", semctl, id, -1, SETVAL, (union semun){.val = 1});
    T_INT("semctl_getall_null", semctl, id, 0, GETALL, (union semun){.array = NULL});
    T_INT("semctl_getall_wild", semctl, id, 0, GETALL, (union semun){.array = WILD});
    T_INT("semctl_getall_unmapped", semctl, id, 0, GETALL, (union semun){.array = (void *)U});
    T_INT("semctl_getall_prot_none", semctl, id, 0, GETALL, (union semun){.array = (void *)PN});
    T_INT("semctl_getall_readonly", semctl, id, 0, GETALL, (union semun){.array = (void *)RO});
    T_INT("semctl_getall_straddle", semctl, id, 0, GETALL, (union semun){.array = (void *)(U - 2)});
    T_INT("semctl_setall_null", semctl, id, 0, SETALL, (union semun){.array = NULL});
    T_INT("semctl_setall_wild", semctl, id, 0, SETALL, (union semun){.array = WILD});
    T_INT("semctl_setall_unmapped", semctl, id, 0, SETALL, (union semun){.array = (void *)U});
    T_INT("semctl_setall_prot_none", semctl, id, 0, SETALL, (union semun){.array = (void *)PN});
    T_INT("semctl_setall_straddle", semctl, id, 0, SETALL, (union semun){.array = (void *)(U - 2)});
    unsigned short big[2] = {40000, 1};
    T_INT("semctl_setall_erange", semctl, id, 0, SETALL, (union semun){.array = big});
    T_INT("semctl_stat_null", semctl, id, 0, IPC_STAT, (union semun){.buf = NULL});
    T_INT("semctl_stat_wild", semctl, id, 0, IPC_STAT, (union semun){.buf = WILD});
    T_INT("semctl_stat_unmapped", semctl, id, 0, IPC_STAT, (union semun){.buf = (void *)U});
    T_INT("semctl_stat_prot_none", semctl, id, 0, IPC_STAT, (union semun){.buf = (void *)PN});
    T_INT("semctl_stat_readonly", semctl, id, 0, IPC_STAT, (union semun){.buf = (void *)RO});
    T_INT("semctl_set_null", semctl, id, 0, IPC_SET, (union semun){.buf = NULL});
    T_INT("semctl_set_wild", semctl, id, 0, IPC_SET, (union semun){.buf = WILD});
    T_INT("semctl_set_unmapped", semctl, id, 0, IPC_SET, (union semun){.buf = (void *)U});
    T_INT("semctl_set_prot_none", semctl, id, 0, IPC_SET, (union semun){.buf = (void *)PN});
    T_INT("semctl_info_wild", semctl, id, 0, IPC_INFO, (union semun){.__buf = WILD});
    T_INT("semctl_info_unmapped", semctl, 0, 0, IPC_INFO, (union semun){.__buf = (void *)U});
    T_INT("semctl_seminfo_readonly", semctl, 0, 0, SEM_INFO, (union semun){.__buf = (void *)RO});
    T_INT("semctl_semstat_bad_index", semctl, 0x7ffffffe, 0, SEM_STAT, (union semun){.buf = WILD});
    T_INT("semctl_cmd99", semctl, id, 0, 99);
    T_INT("semctl_cmd99_arg", semctl, id, 0, 99, (union semun){.buf = WILD});
    T_INT("semctl_cmd_minus1", semctl, id, 0, -1);
    T_INT("semctl_getncnt_semnum_99", semctl, id, 99, GETNCNT);
    T_INT("semctl_getval_ok", semctl, id, 1, GETVAL);
    T_INT("semctl_rmid_garbage_arg", semctl, id, 0, IPC_RMID, (union semun){.buf = WILD});
    untrack(1, id);
    T_INT("semctl_rmid_again", semctl, id, 0, IPC_RMID);
    T_BLOCKING("semop_removed", semop, id, &one, 1);
}

/* nsops above 32 bits: the kernel takes nsops as an unsigned int, so 1<<32 reaches it as 0
 * (EINVAL, sops never read) and (1<<32)+1 as 1 (only the first sembuf read). Two sections, so
 * a crash in the first does not hide the second. */
static int nsops32_set(void)
{
    int id = CALL_INT("nsops32_semget", semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    CHECK(id >= 0);
    return id;
}

static void nsops32_cases(void)
{
    struct timespec t_ok = {0, 1000000};
    int id = nsops32_set();
    puts("-- nsops 1<<32: the kernel sees 0");
    T_BLOCKING("semop_nsops_2to32_wild", semop, id, WILD, 1UL << 32);
    T_BLOCKING("semop_nsops_2to32_unmapped", semop, id, (struct sembuf *)U, 1UL << 32);
    T_BLOCKING("semtimedop_nsops_2to32_wild", semtimedop, id, WILD, 1UL << 32, &t_ok);
    CHECK(rmid_sem("nsops32_rmid", id) == 0);
}

/* The same, on memory that is readable past what the kernel read: no crash possible, but the
 * log must not show more operations than the kernel took. */
static void nsops32_readable_cases(void)
{
    struct sembuf many[9];
    struct timespec t_ok = {0, 1000000};
    for (int i = 0; i < 9; i++)
        many[i] = (struct sembuf){0, 0, IPC_NOWAIT};
    int id = nsops32_set();
    puts("-- nsops (1<<32)+1 on a readable array of 9: the kernel sees 1");
    T_BLOCKING("semop_nsops_2to32_plus1_readable", semop, id, many, (1UL << 32) + 1);
    T_BLOCKING("semtimedop_nsops_2to32_plus2_readable", semtimedop, id, many, (1UL << 32) + 2,
               &t_ok);
    CHECK(rmid_sem("nsops32_rmid", id) == 0);
}

static void nsops32_plus1_cases(void)
{
    struct sembuf *edge_op = (struct sembuf *)(U - sizeof(struct sembuf));
    struct timespec t_ok = {0, 1000000};
    *edge_op = (struct sembuf){0, 0, IPC_NOWAIT};
    int id = nsops32_set();
    puts("-- nsops (1<<32)+1: the kernel sees 1 (the only sembuf, the last on its page)");
    T_BLOCKING("semop_nsops_2to32_plus1_edge", semop, id, edge_op, (1UL << 32) + 1);
    T_BLOCKING("semop_nsops_2to33_plus1_edge", semop, id, edge_op, (1UL << 33) + 1);
    T_BLOCKING("semtimedop_nsops_2to32_plus1_edge", semtimedop, id, edge_op, (1UL << 32) + 1,
               &t_ok);
    CHECK(rmid_sem("nsops32_rmid", id) == 0);
}

static void mmap_cases(void)
{
    int fd = CALL_INT("mmap_memfd", memfd_create, "edge", 0);
    CHECK(fd >= 0 && ftruncate(fd, 2 * PG) == 0);
    const int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
    void *p;

    puts("-- mmap");
    p = T_PTR("mmap_len0", mmap, NULL, 0, rw, pa, -1, 0);
    unmap_if(p, 0);
    p = T_PTR("mmap_len_sizemax", mmap, NULL, SIZE_MAX, rw, pa, -1, 0);
    unmap_if(p, SIZE_MAX);
    p = T_PTR("mmap_len_2to62", mmap, NULL, 1UL << 62, rw, pa, -1, 0);
    unmap_if(p, 1UL << 62);
    p = T_PTR("mmap_fd_minus1_no_anon", mmap, NULL, PG, rw, MAP_PRIVATE, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_bad_fd", mmap, NULL, PG, rw, MAP_SHARED, 9999, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_offset_misaligned", mmap, NULL, PG, rw, MAP_SHARED, fd, 100);
    unmap_if(p, PG);
    p = T_PTR("mmap_offset_negative", mmap, NULL, PG, rw, MAP_SHARED, fd, -4096);
    unmap_if(p, PG);
    p = T_PTR("mmap_flags0", mmap, NULL, PG, rw, 0, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_flags_ffff", mmap, NULL, PG, rw, 0xffff, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_flags_ffff_fd", mmap, NULL, PG, rw, 0xffff, fd, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_validate_unknown", mmap, NULL, PG, rw,
              MAP_SHARED_VALIDATE | MAP_ANONYMOUS | 0x800000, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_fixed_wild", mmap, WILD, PG, rw, pa | MAP_FIXED, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_fixed_null", mmap, NULL, PG, rw, pa | MAP_FIXED, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_noreplace_taken", mmap, P0, PG, rw, pa | MAP_FIXED_NOREPLACE, -1, 0);
    unmap_if(p, PG);
    /* Succeeds only while huge pages are reserved; its length is then a whole huge page. */
    p = T_PTR("mmap_hugetlb", mmap, NULL, PG, rw, pa | MAP_HUGETLB, -1, 0);
    unmap_if(p, 2UL << 20);
    p = T_PTR("mmap_fd_7fff", mmap, NULL, PG, rw, MAP_SHARED, 0x7fff, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_prot_ff", mmap, NULL, PG, 0xff, pa, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_prot_growsdown", mmap, NULL, PG, rw | PROT_GROWSDOWN, pa, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_unknown_legacy_flags", mmap, NULL, PG, rw, pa | 0x800000, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_wild_hint", mmap, WILD, PG, rw, pa, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap_len1", mmap, NULL, 1, rw, pa, -1, 0);
    unmap_if(p, PG);

    puts("-- mmap64");
    p = T_PTR("mmap64_len0", mmap64, NULL, 0, rw, pa, -1, 0);
    unmap_if(p, 0);
    p = T_PTR("mmap64_len_sizemax", mmap64, NULL, SIZE_MAX, rw, pa, -1, 0);
    unmap_if(p, SIZE_MAX);
    p = T_PTR("mmap64_bad_fd", mmap64, NULL, PG, rw, MAP_SHARED, 9999, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap64_offset_misaligned", mmap64, NULL, PG, rw, MAP_SHARED, fd, 1);
    unmap_if(p, PG);
    p = T_PTR("mmap64_offset_huge", mmap64, NULL, PG, rw, MAP_SHARED, fd, (off64_t)1 << 62);
    unmap_if(p, PG);
    p = T_PTR("mmap64_offset_negative", mmap64, NULL, PG, rw, MAP_SHARED, fd, -(off64_t)PG);
    unmap_if(p, PG);
    p = T_PTR("mmap64_flags_ffff", mmap64, NULL, PG, rw, 0xffff, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap64_fixed_wild", mmap64, WILD, PG, rw, pa | MAP_FIXED, -1, 0);
    unmap_if(p, PG);
    p = T_PTR("mmap64_past_eof", mmap64, NULL, PG, PROT_READ, MAP_SHARED, fd, 16 * PG);
    unmap_if(p, PG);

    puts("-- munmap");
    T_INT("munmap_null", munmap, NULL, PG);
    T_INT("munmap_wild", munmap, WILD, PG);
    T_INT("munmap_misaligned", munmap, P0 + 1, PG);
    T_INT("munmap_len0", munmap, P0, 0);
    T_INT("munmap_len0_wild", munmap, WILD, 0);
    T_INT("munmap_unmapped", munmap, U, PG);
    T_INT("munmap_len_sizemax", munmap, U, SIZE_MAX);
    T_INT("munmap_len_overflow", munmap, (void *)(~0UL & ~(PG - 1)), 2 * PG);
    T_INT("munmap_high", munmap, (void *)0xffff800000000000UL, PG);
    T_INT("munmap_noncanonical", munmap, (void *)0x0000800000000000UL, PG);
    p = raw_mmap(NULL, 2 * PG, PROT_NONE, pa);
    T_INT("munmap_prot_none_len1", munmap, p, 1);
    T_INT("munmap_twice", munmap, p, 1);
    raw_munmap(p, 2 * PG);

    puts("-- mremap");
    T_PTR("mremap_misaligned", mremap, P0 + 1, PG, 2 * PG, 0, NULL);
    T_PTR("mremap_unmapped", mremap, U, PG, 2 * PG, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_wild", mremap, WILD, PG, 2 * PG, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_null", mremap, NULL, PG, 2 * PG, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_new0", mremap, P0, PG, 0, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_flags_ff", mremap, P0, PG, 2 * PG, 0xff, NULL);
    T_PTR("mremap_flags_ff_wild", mremap, P0, PG, 2 * PG, 0xff, WILD);
    T_PTR("mremap_flags_unknown_high", mremap, P0, PG, PG, 0x100, NULL);
    T_PTR("mremap_fixed_no_maymove", mremap, P0, PG, PG, MREMAP_FIXED, U);
    T_PTR("mremap_fixed_wild", mremap, P0, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, WILD);
    T_PTR("mremap_fixed_overlap", mremap, P0, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, P0);
    T_PTR("mremap_fixed_high", mremap, P0, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED,
          (void *)0xffff800000000000UL);
    T_PTR("mremap_huge", mremap, P0, PG, 1UL << 62, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_sizemax", mremap, P0, PG, SIZE_MAX, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_old0_private", mremap, P0, 0, PG, MREMAP_MAYMOVE, NULL);
    T_PTR("mremap_dontunmap_grow", mremap, P0, PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    T_PTR("mremap_dontunmap_no_maymove", mremap, P0, PG, PG, MREMAP_DONTUNMAP, NULL);
    T_PTR("mremap_old_size_too_big", mremap, P0, 3 * PG, 3 * PG, 0, NULL);
    T_PTR("mremap_prot_none_same", mremap, PN, PG, PG, 0, NULL);
    T_PTR("mremap_grow_in_place_blocked", mremap, PN, PG, 3 * PG, 0, NULL);
    close(fd);
}

/* shm_open and shm_unlink with names libc refuses or cannot find, and flags the kernel
 * refuses: nothing is created (a NULL name faults inside libc itself, so it is left out). */
static void posix_cases(void)
{
    static char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    puts("-- shm_open, shm_unlink");
    T_INT("shm_open_empty", shm_open, "", O_RDWR, 0);
    T_INT("shm_open_slash", shm_open, "/", O_RDWR | O_CREAT, 0600);
    T_INT("shm_open_slashes", shm_open, "///", O_RDWR, 0);
    T_INT("shm_open_inner_slash", shm_open, "/a/b", O_RDWR | O_CREAT, 0600);
    T_INT("shm_open_too_long", shm_open, longname, O_RDWR | O_CREAT, 0600);
    T_INT("shm_open_254", shm_open, longname + sizeof longname - 256, O_RDWR, 0);
    T_INT("shm_open_missing", shm_open, "/shmtrace-badinput-missing", O_RDWR, 0);
    T_INT("shm_open_directory", shm_open, "/shmtrace-badinput-missing", O_RDWR | O_CREAT | O_DIRECTORY, 0600);
    T_INT("shm_open_accmode_3", shm_open, "/shmtrace-badinput-missing", O_ACCMODE, 0);
    T_INT("shm_open_all_flags", shm_open, "/shmtrace-badinput-missing", -1 & ~O_CREAT, 07777);
    T_INT("shm_unlink_empty", shm_unlink, "");
    T_INT("shm_unlink_slash", shm_unlink, "/");
    T_INT("shm_unlink_inner_slash", shm_unlink, "/a/b");
    T_INT("shm_unlink_too_long", shm_unlink, longname);
    T_INT("shm_unlink_missing", shm_unlink, "/shmtrace-badinput-missing");
}

/* memfd_create with names and flags the kernel refuses (glibc's wrapper is the system call):
 * a NULL or unmapped name, one longer than 249 bytes, unknown flags, a huge page size without
 * MFD_HUGETLB, MFD_EXEC with MFD_NOEXEC_SEAL. */
static void memfd_cases(void)
{
    static char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    puts("-- memfd_create");
    T_INT("memfd_create_null", memfd_create, NULL, 0);
    T_INT("memfd_create_wild", memfd_create, (const char *)WILD, 0);
    T_INT("memfd_create_unmapped", memfd_create, (const char *)U, MFD_CLOEXEC);
    T_INT("memfd_create_too_long", memfd_create, longname, 0);
    T_INT("memfd_create_flags_unknown", memfd_create, "shmtrace-badinput", 0x100);
    T_INT("memfd_create_flags_all", memfd_create, "shmtrace-badinput", ~0U);
    T_INT("memfd_create_huge_size_alone", memfd_create, "shmtrace-badinput", 21U << 26);
    T_INT("memfd_create_exec_and_noexec", memfd_create, "shmtrace-badinput", 0x8 | 0x10);
}

/* sem_open, sem_close and sem_unlink with names libc refuses or cannot find, a value above
 * SEM_VALUE_MAX, and addresses sem_open never returned. glibc's sem_close only compares its
 * argument with the semaphores it opened, so NULL, wild and unmapped pointers get EINVAL
 * natively too; a NULL name faults inside libc itself and is left out. One semaphore is made
 * and released to show EEXIST, a second sem_close and a second sem_unlink. */
static void named_sem_cases(void)
{
    static char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    const char *n253 = longname + sizeof longname - 254; /* 253 bytes: sem.NAME is too long */
    sem_t *volatile none = NULL;                         /* past sem_close's nonnull */
    sem_t local;
    char name[64];
    snprintf(name, sizeof name, "/shmtrace-badinput-sem-%d", (int)getpid());
    puts("-- sem_open, sem_close, sem_unlink");
    T_PTR("sem_open_empty", sem_open, "", O_CREAT, 0600, 1u);
    T_PTR("sem_open_slash", sem_open, "/", O_CREAT, 0600, 1u);
    T_PTR("sem_open_slashes", sem_open, "///", 0);
    T_PTR("sem_open_inner_slash", sem_open, "/a/b", O_CREAT, 0600, 1u);
    T_PTR("sem_open_too_long", sem_open, longname, O_CREAT, 0600, 1u);
    T_PTR("sem_open_253", sem_open, n253, O_CREAT | O_EXCL, 0600, 1u);
    T_PTR("sem_open_253_existing", sem_open, n253, 0);
    T_PTR("sem_open_missing", sem_open, "/shmtrace-badinput-missing", 0);
    T_PTR("sem_open_excl_alone", sem_open, "/shmtrace-badinput-missing", O_EXCL);
    T_PTR("sem_open_value_too_big", sem_open, "/shmtrace-badinput-missing", O_CREAT | O_EXCL,
          0600, (unsigned)SEM_VALUE_MAX + 1u);
    T_INT("sem_close_null", sem_close, none);
    T_INT("sem_close_wild", sem_close, (sem_t *)WILD);
    T_INT("sem_close_unmapped", sem_close, (sem_t *)U);
    T_INT("sem_close_never_opened", sem_close, &local);
    sem_t *s = T_PTR("sem_open_create", sem_open, name, O_CREAT | O_EXCL, 0600, 0u);
    T_PTR("sem_open_eexist", sem_open, name, O_CREAT | O_EXCL, 0600, 0u);
    T_INT("sem_close", sem_close, s);
    T_INT("sem_close_again", sem_close, s);
    T_INT("sem_unlink", sem_unlink, name);
    T_INT("sem_unlink_again", sem_unlink, name);
    T_INT("sem_unlink_empty", sem_unlink, "");
    T_INT("sem_unlink_slash", sem_unlink, "/");
    T_INT("sem_unlink_inner_slash", sem_unlink, "/a/b");
    T_INT("sem_unlink_too_long", sem_unlink, longname);
    T_INT("sem_unlink_253", sem_unlink, n253);
    T_INT("sem_unlink_missing", sem_unlink, "/shmtrace-badinput-missing");
}

/* _exit and _Exit (hooked: they write the report) with out-of-range statuses, in fork and
 * vfork children: the parent sees the status the kernel keeps (its low 8 bits). */
static void exit_cases(void)
{
    static const int statuses[] = {-1, 256, 300, 0x7fffffff};
    puts("-- _exit, _Exit, vfork");
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        for (int how = 0; how < 3; how++) {
            pid_t pid = how == 2 ? vfork() : fork();
            if (pid == 0) {
                if (how == 1)
                    _Exit(statuses[i]);
                _exit(statuses[i]);
            }
            CHECK(pid > 0);
            int st;
            CHECK(waitpid(pid, &st, 0) == pid);
            printf("%s(%d) in a %s child: %s %d\n", how == 1 ? "_Exit" : "_exit", statuses[i],
                   how == 2 ? "vfork" : "fork", WIFEXITED(st) ? "exit status" : "signal",
                   WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
    }
}

static const struct {
    const char *name;
    void (*run)(void);
} sections[] = {{"shm", shm_cases}, {"sem", sem_cases}, {"nsops32", nsops32_cases},
                {"nsops32_readable", nsops32_readable_cases},
                {"nsops32_plus1", nsops32_plus1_cases}, {"mmap", mmap_cases},
                {"posix", posix_cases}, {"memfd", memfd_cases}, {"named_sem", named_sem_cases},
                {"exit", exit_cases}};

/* badinput SECTION...: runs those sections (each run.py run takes one, so a crash in one
 * section hides nothing of the others); --list names them. */
int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
            puts(sections[i].name);
        return 0;
    }
    layout();
    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < sizeof sections / sizeof sections[0] && strcmp(sections[i].name, argv[a]))
            i++;
        CHECK(i < sizeof sections / sizeof sections[0]);
        sections[i].run();
    }
    puts("badinput: done");
    return 0;
}
