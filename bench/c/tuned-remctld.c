/*
 * LD_PRELOAD shim that turns a stock remctld into the "tuned" server of the
 * benchmarks: TCP_NODELAY on every accepted socket (remctld leaves Nagle on,
 * which holds its second small token of each reply until the client's
 * delayed ACK) and a listen backlog of BACKLOG instead of remctld's 5 (which
 * drops connections in a burst). Nothing else of remctld changes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#define BACKLOG 1024

static void nodelay(int fd) {
    int on = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (real == NULL) real = dlsym(RTLD_NEXT, "accept");
    int client = real(fd, addr, len);
    nodelay(client);
    return client;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (real == NULL) real = dlsym(RTLD_NEXT, "accept4");
    int client = real(fd, addr, len, flags);
    nodelay(client);
    return client;
}

int listen(int fd, int backlog) {
    static int (*real)(int, int);
    if (real == NULL) real = dlsym(RTLD_NEXT, "listen");
    fprintf(stderr, "tuned-remctld: listen backlog %d instead of %d, TCP_NODELAY on accepted sockets\n",
            BACKLOG, backlog);
    return real(fd, backlog > BACKLOG ? backlog : BACKLOG);
}

/* Once loaded here, stay out of the commands remctld runs. */
__attribute__((constructor)) static void forget(void) {
    unsetenv("LD_PRELOAD");
}
