/*
 * The floor under any client, without remctl: a TCP round trip of the same
 * sizes as a `test test` command (89 bytes out, 84 + 68 back) against
 * echo-server.mjs, timed from C. Prints the client's CPU per round trip.
 *
 * usage: pingpong PORT COUNT
 */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static double cpu_ms(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
           (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int count = atoi(argv[2]);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons(atoi(argv[1]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *) &address, sizeof(address)) != 0) return 1;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buffer[256] = {0};
    double start = 0;
    for (int i = 0; i < count + 200; i++) {
        if (i == 200) start = cpu_ms();
        if (write(s, buffer, 89) != 89) return 1;
        for (int got = 0; got < 152;) {
            ssize_t n = read(s, buffer, sizeof(buffer));
            if (n <= 0) return 1;
            got += n;
        }
    }
    printf("{\"cpuPerRoundTripMs\":%.5f}\n", (cpu_ms() - start) / count);
    return 0;
}
