/* What a process inside a container tries against its host, for the escape tests; built
 * static by support::probe, since the test rootfs has no C library.
 *
 *   probe tiocsti TEXT  push TEXT and a newline into the terminal on fd 0, then into
 *                       /dev/tty; says what each attempt gave
 *   probe keyread ID    read key ID (KEYCTL_READ); prints key=CONTENT or key-errno=N
 *   probe keyctl        look up its session keyring; prints keyctl=ok or keyctl-errno=N
 *   probe userfaultfd   make a user-mode userfaultfd, which needs no privilege but every
 *                       default seccomp profile refuses; prints uffd=ok or uffd-errno=N
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_READ 11
#define KEY_SPEC_SESSION_KEYRING -3

/* Pushes TEXT and a newline into terminal FD; 0, or the errno of the first refusal. */
static int push(int fd, const char *text) {
    for (const char *c = text; *c; c++)
        if (ioctl(fd, TIOCSTI, c) < 0)
            return errno;
    if (ioctl(fd, TIOCSTI, "\n") < 0)
        return errno;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "tiocsti") == 0) {
        printf("fd0-errno=%d\n", push(0, argv[2]));
        int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
        if (tty < 0)
            printf("devtty-errno=%d\n", errno);
        else
            printf("devtty-push-errno=%d\n", push(tty, argv[2]));
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "keyread") == 0) {
        char buf[256];
        long n = syscall(SYS_keyctl, KEYCTL_READ, atol(argv[2]), buf, sizeof buf - 1);
        if (n < 0) {
            printf("key-errno=%d\n", errno);
        } else {
            buf[n < (long)sizeof buf - 1 ? n : (long)sizeof buf - 1] = 0;
            printf("key=%s\n", buf);
        }
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "keyctl") == 0) {
        if (syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) < 0)
            printf("keyctl-errno=%d\n", errno);
        else
            printf("keyctl=ok\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "userfaultfd") == 0) {
        /* O_CLOEXEC | UFFD_USER_MODE_ONLY (1) */
        if (syscall(SYS_userfaultfd, O_CLOEXEC | 1) < 0)
            printf("uffd-errno=%d\n", errno);
        else
            printf("uffd=ok\n");
        return 0;
    }
    fprintf(stderr, "usage: probe tiocsti TEXT | keyread ID | keyctl | userfaultfd\n");
    return 2;
}
