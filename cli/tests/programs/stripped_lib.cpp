/* stripped_lib.cpp: the C++ version of stripped_lib.c: the segment is created inside a
 * namespaced function, whose mangled name the report must demangle. */
#include <sys/ipc.h>
#include <sys/shm.h>

namespace store {
int make_segment(int size)
{
    return shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
}
} // namespace store

extern "C" int stripped_make_segment(void)
{
    return store::make_segment(4096);
}
