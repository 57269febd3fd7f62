/* A wall clock that steps, for the processes it is preloaded into (LD_PRELOAD).

   Row 17 of the fault matrix: a machine's wall clock jumps (an NTP step, a
   hand-set date) while the platform runs. This library adds an offset to
   every reading of the wall clock (CLOCK_REALTIME and its coarse twin,
   gettimeofday, time) and leaves the monotonic clocks, sleeps and timed waits
   alone, as a real step does. The offset, in nanoseconds, is the first eight
   bytes of the file named by WALLSTEP_FILE, mapped shared: a test writes it
   and every process steps at once. Without the variable or the file, the
   offset stays zero and a line on stderr says so.

   libfaketime cannot do this: left alone it moves the monotonic clock with the
   wall clock, which no step does; told not to, it breaks Python's sleep. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static const int64_t zero;
static const volatile int64_t *offset_ns = &zero;

__attribute__((constructor)) static void wallstep_init(void) {
    real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("WALLSTEP_FILE");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        fprintf(stderr, "wallstep: WALLSTEP_FILE %s cannot be opened; no offset\n",
                path ? path : "(unset)");
        return;
    }
    void *mapped = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (mapped == MAP_FAILED) {
        fprintf(stderr, "wallstep: cannot map %s; no offset\n", path);
        return;
    }
    offset_ns = (const volatile int64_t *)mapped;
}

static void shift(struct timespec *ts) {
    int64_t ns = (int64_t)ts->tv_nsec + __atomic_load_n(offset_ns, __ATOMIC_RELAXED);
    int64_t seconds = ns / 1000000000;
    ns %= 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        seconds -= 1;
    }
    ts->tv_sec += seconds;
    ts->tv_nsec = ns;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (real_clock_gettime == NULL) {
        /* Called before the constructor ran (another library's). */
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    }
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        shift(ts);
    }
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz; /* obsolete: Linux keeps no time zone here */
    struct timespec ts;
    int result = clock_gettime(CLOCK_REALTIME, &ts);
    if (result == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) {
        *out = ts.tv_sec;
    }
    return ts.tv_sec;
}
