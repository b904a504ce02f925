/*
 * late: hooked calls made late in the process's life. Every caller runs
 * late_calls (liblate.so), which calls every hook and prints each outcome; run.py compares the
 * output and exit status of the native, linked and preloaded runs, and checks in the JSON log
 * that the shim's report came before the calls made after its teardown.
 *
 * Callers, in the order they run:
 *   a worker thread's thread_local destructor (__cxa_thread_atexit_impl, what C++ thread_local
 *     uses) and pthread key destructor, at the thread's exit;
 *   the main thread's thread_local destructor (at exit, or at pthread_exit);
 *   an atexit handler of the program (before the shim's report);
 *   the program's destructor (before the shim's destructor);
 *   liblate's destructor, and its atexit handler (after the shim's destructor: the loader
 *     initialized liblate first);
 *   liblate's __cxa_atexit(.., NULL) handler, registered before anything else, which runs from
 *     exit() after every library destructor (the shim's teardown is over).
 *
 *   late return        main returns 5
 *   late exit          main calls exit(7)
 *   late late_exit     main returns 0; the very last handler ends the process with _exit(9)
 *   late pthread_exit  main calls pthread_exit (its key destructor runs then); the last thread
 *                      to end makes the process exit with status 0
 */
#include "../harness.h"
#include "edge.h"
#include "late.h"

int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;

static pthread_key_t key;

static void key_destructor(void *who)
{
    late_calls(who, strstr(who, "main") ? 9 : 1);
}

static void tls_destructor(void *who)
{
    late_calls(who, strstr(who, "main") ? 3 : 2);
}

static void main_atexit(void)
{
    late_calls("program atexit", 4);
}

__attribute__((destructor)) static void program_destructor(void)
{
    late_calls("program destructor", 8);
}

static void *worker(void *arg)
{
    (void)arg;
    CHECK(pthread_setspecific(key, "key destructor (worker)") == 0);
    CHECK(__cxa_thread_atexit_impl(tls_destructor, "thread_local destructor (worker)",
                                   &__dso_handle) == 0);
    return NULL;
}

static void *last_thread(void *arg)
{
    (void)arg;
    sleep_us(50000);
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    const char *mode = argv[1];
    CHECK(pthread_key_create(&key, key_destructor) == 0);
    CHECK(__cxa_thread_atexit_impl(tls_destructor, "thread_local destructor (main)",
                                   &__dso_handle) == 0);
    CHECK(atexit(main_atexit) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    puts("main: done");
    if (strcmp(mode, "return") == 0)
        return 5;
    if (strcmp(mode, "exit") == 0)
        exit(7);
    if (strcmp(mode, "late_exit") == 0) {
        late_exit_with(9);
        return 0;
    }
    CHECK(strcmp(mode, "pthread_exit") == 0);
    CHECK(pthread_setspecific(key, "key destructor (main)") == 0);
    CHECK(pthread_create(&t, NULL, last_thread, NULL) == 0);
    pthread_exit(NULL);
}
