/*
 * The reference: libremctl called from C, the physical limit for any
 * binding. Opens one connection and runs COUNT commands on it, printing
 * each command's latency in milliseconds, one per line, then the client CPU
 * time per command.
 *
 * usage: session HOST PORT PRINCIPAL COUNT ARG...
 */
#include <remctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec * 1e3 + usage.ru_utime.tv_usec / 1e3
         + usage.ru_stime.tv_sec * 1e3 + usage.ru_stime.tv_usec / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: session HOST PORT PRINCIPAL COUNT ARG...\n");
        return 2;
    }
    struct remctl *r = remctl_new();
    if (r == NULL || !remctl_open(r, argv[1], atoi(argv[2]), argv[3])) {
        fprintf(stderr, "open: %s\n", r ? remctl_error(r) : "no memory");
        return 1;
    }
    int count = atoi(argv[4]);
    const char **command = (const char **) &argv[5];
    double cpu_start = cpu_ms();
    for (int i = 0; i < count; i++) {
        double start = now_ms();
        if (!remctl_command(r, command)) {
            fprintf(stderr, "command: %s\n", remctl_error(r));
            return 1;
        }
        struct remctl_output *out;
        do {
            out = remctl_output(r);
            if (out == NULL) {
                fprintf(stderr, "output: %s\n", remctl_error(r));
                return 1;
            }
        } while (out->type == REMCTL_OUT_OUTPUT);
        printf("%.4f\n", now_ms() - start);
    }
    printf("cpu %.4f\n", (cpu_ms() - cpu_start) / count);
    remctl_close(r);
    return 0;
}
