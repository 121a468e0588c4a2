/* Reference solution of exercise jail in C: a jail that holds.

       solution ROOTFS COMMAND [ARG...]

   The steps, in the order the kernel needs them (pivot_root(2), NOTES):

   1. unshare(CLONE_NEWNS)          a mount table of our own
   2. make / private, recursively   no mount event of ours reaches the host,
                                    and pivot_root refuses shared mounts
   3. bind-mount ROOTFS on itself   pivot_root's new root must be a mount point
   4. mkdir ROOTFS/.oldroot, pivot_root(ROOTFS, ROOTFS/.oldroot)
   5. chdir("/")                    pivot_root moves no working directory
                                    but one that was the old root itself
   6. mount a fresh proc on /proc
   7. umount2("/.oldroot", MNT_DETACH), rmdir it: the old root, with every
      mount below it, is cut off; lazily, since it is still busy
   8. execvp(COMMAND): it replaces us, so its exit status is ours

   The C library has no pivot_root wrapper: syscall(SYS_pivot_root, ...). */

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OLD "/.oldroot"

static void die(const char *what)
{
    perror(what);
    exit(1);
}

int main(int argc, char *argv[])
{
    char rootfs[PATH_MAX], old[PATH_MAX + sizeof OLD];

    if (argc < 3) {
        fprintf(stderr, "usage: %s ROOTFS COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    if (realpath(argv[1], rootfs) == NULL)
        die(argv[1]);
    snprintf(old, sizeof old, "%s%s", rootfs, OLD);

    if (unshare(CLONE_NEWNS) == -1)                                   /* 1 */
        die("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)        /* 2 */
        die("mount --make-rprivate /");
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) == -1)      /* 3 */
        die("mount --bind ROOTFS ROOTFS");
    if (mkdir(old, 0700) == -1 && errno != EEXIST)                      /* 4 */
        die(old);
    if (syscall(SYS_pivot_root, rootfs, old) == -1)
        die("pivot_root");
    if (chdir("/") == -1)                                               /* 5 */
        die("chdir /");
    mkdir("/proc", 0555);                                               /* 6 */
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
        die("mount proc");
    if (umount2(OLD, MNT_DETACH) == -1)                                 /* 7 */
        die("umount2 " OLD);
    rmdir(OLD);

    execvp(argv[2], &argv[2]);                                          /* 8 */
    perror(argv[2]);
    return errno == ENOENT ? 127 : 126;
}
