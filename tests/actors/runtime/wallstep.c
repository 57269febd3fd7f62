/* A wall clock that steps, for the processes it is preloaded into (LD_PRELOAD).

   Row 17 of the fault matrix: a machine's wall clock jumps (an NTP step, a
   hand-set date) while the platform runs. This library adds an offset to
   every reading of the wall clock (CLOCK_REALTIME and its coarse twin,
   gettimeofday, time) and leaves the monotonic clocks alone, as a real step
   does. A wait until a wall-clock deadline (a timed wait on a condition
   variable, semaphore or mutex, an absolute sleep) has its deadline taken
   back by the offset: the kernel measures it on the true clock, and it was
   computed on the stepped one. So such a wait lasts as long as it would after
   a real step; one already waiting as the clock steps is not moved, as the
   kernel would move it. The offset, in nanoseconds, is the first eight bytes
   of the file named by WALLSTEP_FILE, mapped shared: a test writes it and
   every process steps at once. Without the variable or the file, the offset
   stays zero and a line on stderr says so.

   libfaketime cannot do this: left alone it moves the monotonic clock with the
   wall clock, which no step does; told not to, it breaks Python's sleep. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const int64_t zero;
static const volatile int64_t *offset_ns = &zero;

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static int (*real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *,
                                  const struct timespec *);
static int (*real_cond_clockwait)(pthread_cond_t *, pthread_mutex_t *, clockid_t,
                                  const struct timespec *);
static int (*real_sem_timedwait)(sem_t *, const struct timespec *);
static int (*real_sem_clockwait)(sem_t *, clockid_t, const struct timespec *);
static int (*real_mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *,
                                   struct timespec *);

static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

__attribute__((constructor)) static void wallstep_init(void) {
    real_clock_gettime = next("clock_gettime");
    real_gettimeofday = next("gettimeofday");
    /* The condition variables of glibc 2.3.2 on, which every program built
       since links against (an unversioned lookup may find the older ones). */
    real_cond_timedwait = dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    real_cond_clockwait = next("pthread_cond_clockwait");
    real_sem_timedwait = next("sem_timedwait");
    real_sem_clockwait = next("sem_clockwait");
    real_mutex_timedlock = next("pthread_mutex_timedlock");
    real_clock_nanosleep = next("clock_nanosleep");
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

/* ``ts`` moved by ``sign`` times the offset. */
static struct timespec shifted(const struct timespec *ts, int sign) {
    int64_t ns = (int64_t)ts->tv_nsec + sign * __atomic_load_n(offset_ns, __ATOMIC_RELAXED);
    int64_t seconds = ns / 1000000000;
    ns %= 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        seconds -= 1;
    }
    struct timespec moved = {ts->tv_sec + seconds, ns};
    return moved;
}

static int is_wall(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE;
}

/* -- readings: forward by the offset ------------------------------------- */

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (real_clock_gettime == NULL) {
        /* Called before the constructor ran (another library's). */
        real_clock_gettime = next("clock_gettime");
    }
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && is_wall(clock)) {
        *ts = shifted(ts, 1);
    }
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    if (real_gettimeofday == NULL) {
        real_gettimeofday = next("gettimeofday");
    }
    int result = real_gettimeofday(tv, tz);
    if (result == 0) {
        struct timespec ts = {tv->tv_sec, tv->tv_usec * 1000};
        ts = shifted(&ts, 1);
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return (time_t)-1;
    }
    if (out != NULL) {
        *out = ts.tv_sec;
    }
    return ts.tv_sec;
}

/* -- waits until a wall-clock deadline: back by the offset --------------- */

/* glibc keeps a condition variable's clock in bit 1 of __wrefs (since 2.25):
   0 is CLOCK_REALTIME, 1 CLOCK_MONOTONIC (pthread_condattr_setclock). */
static int waits_on_wall(const pthread_cond_t *cond) {
    return (cond->__data.__wrefs & 2) == 0;
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                           const struct timespec *deadline) {
    if (!waits_on_wall(cond)) {
        return real_cond_timedwait(cond, mutex, deadline);
    }
    struct timespec true_deadline = shifted(deadline, -1);
    return real_cond_timedwait(cond, mutex, &true_deadline);
}

int pthread_cond_clockwait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                           clockid_t clock, const struct timespec *deadline) {
    struct timespec true_deadline = is_wall(clock) ? shifted(deadline, -1) : *deadline;
    return real_cond_clockwait(cond, mutex, clock, &true_deadline);
}

int sem_timedwait(sem_t *sem, const struct timespec *deadline) {
    struct timespec true_deadline = shifted(deadline, -1);
    return real_sem_timedwait(sem, &true_deadline);
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *deadline) {
    struct timespec true_deadline = is_wall(clock) ? shifted(deadline, -1) : *deadline;
    return real_sem_clockwait(sem, clock, &true_deadline);
}

int pthread_mutex_timedlock(pthread_mutex_t *mutex, const struct timespec *deadline) {
    struct timespec true_deadline = shifted(deadline, -1);
    return real_mutex_timedlock(mutex, &true_deadline);
}

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request,
                    struct timespec *remain) {
    if (!(flags & TIMER_ABSTIME) || !is_wall(clock)) {
        return real_clock_nanosleep(clock, flags, request, remain);
    }
    struct timespec true_deadline = shifted(request, -1);
    return real_clock_nanosleep(clock, flags, &true_deadline, remain);
}
