/* clone_bench.c: the kernel's floor for "a child in new namespaces".
 *
 * Usage: clone_bench FLAGS ITERATIONS [exec]
 *
 * Does ITERATIONS times: clone3(2) with FLAGS (a CLONE_NEW* mask such as
 * 0x04000000), the child exits at once (or, with "exec", execs /bin/true),
 * and the parent reaps it with waitpid(2).  Prints the time of each
 * iteration in nanoseconds, one per line, for bench/ns_ops.py to read,
 * then "faults N": the minor page faults of parent and children together,
 * in all measured iterations (getrusage(2)).
 *
 * Why clone3 and not unshare: clone3 puts the child straight into the new
 * namespaces, PID and time ones included, so one process is enough.  A
 * Python program cannot do that (CPython has no safe way to run Python code
 * in a raw clone child), so it forks, unshares in the child, and forks once
 * more for PID and time namespaces; that is the gap this program shows.
 * clone(2) cannot take CLONE_NEWTIME (its value 0x80 overlaps the exit
 * signal byte of clone's flags); clone3 has a field for the exit signal and
 * accepts it since the fix "fork: allow CLONE_NEWTIME in clone3 flags"
 * (Linux 6.3, backported to stable kernels).  On an older kernel clone3
 * fails with EINVAL for "time" and the bench shows the C column as n/a.
 *
 * The child calls _exit(2), not exit(3): it shares nothing with stdio
 * buffers it did not fill, and the floor should not include atexit work.
 * The first iteration is a warm-up and is not printed.
 *
 * See clone(2), namespaces(7).  bench/ns_ops.py compiles this file with gcc
 * into a temporary directory on every run; no binary is ever committed.
 */
#define _GNU_SOURCE
#include <linux/sched.h>   /* struct clone_args, CLONE_NEW* */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define errExit(msg) do { perror(msg); exit(EXIT_FAILURE); } while (0)

/* Minor page faults so far: ours, and those of the children we reaped. */
static long minor_faults(void)
{
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return self.ru_minflt + children.ru_minflt;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One child in new namespaces, run and reaped.  Returns its wait status. */
static int clone_and_reap(uint64_t flags, int do_exec)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = SIGCHLD;   /* so that plain waitpid() reaps it */

    /* glibc 2.36 has no clone3() wrapper: call the system call itself. */
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == -1)
        errExit("clone3");
    if (pid == 0) {               /* the child, already in the new namespaces */
        if (do_exec) {
            execl("/bin/true", "true", (char *) NULL);
            _exit(127);
        }
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) == -1)
        errExit("waitpid");
    return status;
}

int main(int argc, char *argv[])
{
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "exec") != 0)) {
        fprintf(stderr, "usage: %s FLAGS ITERATIONS [exec]\n", argv[0]);
        exit(EXIT_FAILURE);
    }
    uint64_t flags = strtoull(argv[1], NULL, 0);
    long iterations = strtol(argv[2], NULL, 0);
    int do_exec = argc == 4;

    long faults = 0;
    for (long i = -1; i < iterations; i++) {   /* i == -1: the warm-up */
        if (i == 0)
            faults = minor_faults();
        long long start = now_ns();
        int status = clone_and_reap(flags, do_exec);
        long long elapsed = now_ns() - start;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "clone_bench: child failed (wait status %#x)\n", status);
            exit(EXIT_FAILURE);
        }
        if (i >= 0)
            printf("%lld\n", elapsed);
    }
    printf("faults %ld\n", minor_faults() - faults);
    return 0;
}
