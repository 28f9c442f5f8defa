/*
 * The reference client of the benchmarks: libremctl called from C, the
 * physical limit for any binding. Each mode is one workload of
 * bench/run.mjs; bench/node-client.mjs runs the same workloads through our
 * library. Prints one JSON object on standard output.
 *
 * usage:
 *   reference oneshot  HOST PORT PRINCIPAL COUNT WARMUP ARG...
 *   reference session  HOST PORT PRINCIPAL COUNT WARMUP EXTRA SIZE ARG...
 *   reference noop     HOST PORT PRINCIPAL COUNT WARMUP
 *   reference stream   HOST PORT PRINCIPAL ARG...
 *   reference buffered HOST PORT PRINCIPAL ARG...
 *   reference fanout   HOST PORT PRINCIPAL CALLS ARG...
 *   reference scale    HOST PORT PRINCIPAL CONNECTIONS
 *
 * scale opens CONNECTIONS connections one after another and keeps them
 * idle, then sends a noop on each at once, one thread per connection (the
 * threads started and waiting before the clock starts).
 * session sends EXTRA more arguments of SIZE bytes after ARG... with each
 * command. Latencies are in milliseconds, CPU is getrusage(RUSAGE_SELF)
 * user plus system time, and memory is the peak resident set above the
 * resident set at the start of the workload.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <remctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

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

static void die(const char *what, struct remctl *r) {
    fprintf(stderr, "reference: %s: %s\n", what, r ? remctl_error(r) : "out of memory");
    exit(1);
}

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *field) {
    FILE *file = fopen("/proc/self/status", "r");
    char line[256];
    long value = -1;
    size_t length = strlen(field);
    if (file == NULL) return -1;
    while (fgets(line, sizeof(line), file) != NULL) {
        if (strncmp(line, field, length) == 0 && line[length] == ':') {
            value = strtol(line + length + 1, NULL, 10);
            break;
        }
    }
    fclose(file);
    return value;
}

/*
 * Peak memory: the resident set now, and the high-water mark reset to it
 * (Linux: writing 5 to clear_refs), so that the peak read after the
 * workload is the workload's own. Where that is missing, ru_maxrss.
 */
struct memory {
    long start_kib;
    long baseline_maxrss_kib;
    int resettable;
};

static struct memory memory_start(void) {
    struct memory m;
    struct rusage usage;
    FILE *clear = fopen("/proc/self/clear_refs", "w");
    m.resettable = clear != NULL && fputs("5", clear) >= 0;
    if (clear != NULL && fclose(clear) != 0) m.resettable = 0;
    m.start_kib = status_kib("VmRSS");
    getrusage(RUSAGE_SELF, &usage);
    m.baseline_maxrss_kib = usage.ru_maxrss;
    return m;
}

static void memory_print(const struct memory *m) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    long peak = m->resettable ? status_kib("VmHWM") : -1;
    if (peak >= 0 && m->start_kib >= 0) {
        printf("\"rssGrowthKiB\":%ld,\"rssMethod\":\"VmHWM after clear_refs\",", peak - m->start_kib);
    } else {
        printf("\"rssGrowthKiB\":%ld,\"rssMethod\":\"ru_maxrss\",", usage.ru_maxrss - m->baseline_maxrss_kib);
    }
    printf("\"maxrssGrowthKiB\":%ld", usage.ru_maxrss - m->baseline_maxrss_kib);
}

static void print_latencies(const double *samples, int count) {
    printf("\"latenciesMs\":[");
    for (int i = 0; i < count; i++) printf(i ? ",%.4f" : "%.4f", samples[i]);
    printf("]");
}

static int one_shot(const char *host, int port, const char *principal, const char **command) {
    struct remctl_result *result = remctl(host, port, principal, command);
    int ok = result != NULL && result->error == NULL && result->status == 0;
    if (result != NULL && result->error != NULL) fprintf(stderr, "reference: %s\n", result->error);
    remctl_result_free(result);
    return ok;
}

static int mode_oneshot(const char *host, int port, const char *principal, int count, int warmup,
                        const char **command) {
    double *samples = calloc(count, sizeof(double));
    for (int i = 0; i < warmup; i++) {
        if (!one_shot(host, port, principal, command)) return 1;
    }
    double cpu_start = cpu_ms();
    for (int i = 0; i < count; i++) {
        double start = now_ms();
        if (!one_shot(host, port, principal, command)) return 1;
        samples[i] = now_ms() - start;
    }
    double cpu = cpu_ms() - cpu_start;
    printf("{");
    print_latencies(samples, count);
    printf(",\"cpuPerCallMs\":%.5f}\n", cpu / count);
    return 0;
}

/* Sends a command and reads its output to the end; returns the output bytes. */
static long long run_command(struct remctl *r, const struct iovec *args, size_t count) {
    long long bytes = 0;
    if (!remctl_commandv(r, args, count)) die("command", r);
    for (;;) {
        struct remctl_output *out = remctl_output(r);
        if (out == NULL) die("output", r);
        if (out->type == REMCTL_OUT_ERROR) {
            fprintf(stderr, "reference: error token: %.*s\n", (int) out->length, out->data);
            exit(1);
        }
        if (out->type != REMCTL_OUT_OUTPUT) return bytes;
        bytes += out->length;
    }
}

static struct iovec *to_iovecs(const char **command, int extra, int size, size_t *count) {
    int given = 0;
    while (command[given] != NULL) given++;
    struct iovec *args = calloc(given + extra, sizeof(struct iovec));
    char *filler = malloc(size > 0 ? size : 1);
    memset(filler, 'x', size);
    for (int i = 0; i < given; i++) {
        args[i].iov_base = (void *) command[i];
        args[i].iov_len = strlen(command[i]);
    }
    for (int i = 0; i < extra; i++) {
        args[given + i].iov_base = filler;
        args[given + i].iov_len = size;
    }
    *count = given + extra;
    return args;
}

static int mode_session(const char *host, int port, const char *principal, int count, int warmup,
                        int extra, int size, const char **command) {
    size_t nargs;
    struct iovec *args = to_iovecs(command, extra, size, &nargs);
    double *samples = calloc(count, sizeof(double));
    struct remctl *r = remctl_new();
    if (r == NULL || !remctl_open(r, host, port, principal)) die("open", r);
    for (int i = 0; i < warmup; i++) run_command(r, args, nargs);
    double cpu_start = cpu_ms();
    for (int i = 0; i < count; i++) {
        double start = now_ms();
        run_command(r, args, nargs);
        samples[i] = now_ms() - start;
    }
    double cpu = cpu_ms() - cpu_start;
    remctl_close(r);
    printf("{");
    print_latencies(samples, count);
    printf(",\"cpuPerCallMs\":%.5f}\n", cpu / count);
    return 0;
}

/* remctl_noop round trips: the protocol alone, nothing forked on the server. */
static int mode_noop(const char *host, int port, const char *principal, int count, int warmup) {
    double *samples = calloc(count, sizeof(double));
    struct remctl *r = remctl_new();
    if (r == NULL || !remctl_open(r, host, port, principal)) die("open", r);
    for (int i = 0; i < warmup; i++) {
        if (!remctl_noop(r)) die("noop", r);
    }
    double cpu_start = cpu_ms();
    for (int i = 0; i < count; i++) {
        double start = now_ms();
        if (!remctl_noop(r)) die("noop", r);
        samples[i] = now_ms() - start;
    }
    double cpu = cpu_ms() - cpu_start;
    remctl_close(r);
    printf("{");
    print_latencies(samples, count);
    printf(",\"cpuPerCallMs\":%.5f}\n", cpu / count);
    return 0;
}

static int mode_stream(const char *host, int port, const char *principal, const char **command) {
    size_t nargs;
    struct iovec *args = to_iovecs(command, 0, 0, &nargs);
    struct memory m = memory_start();
    double start = now_ms();
    double cpu_start = cpu_ms();
    struct remctl *r = remctl_new();
    if (r == NULL || !remctl_open(r, host, port, principal)) die("open", r);
    long long bytes = run_command(r, args, nargs);
    remctl_close(r);
    double elapsed = now_ms() - start;
    double cpu = cpu_ms() - cpu_start;
    printf("{\"bytes\":%lld,\"ms\":%.3f,\"cpuMs\":%.3f,", bytes, elapsed, cpu);
    memory_print(&m);
    printf("}\n");
    return 0;
}

static int mode_buffered(const char *host, int port, const char *principal, const char **command) {
    struct memory m = memory_start();
    double start = now_ms();
    double cpu_start = cpu_ms();
    struct remctl_result *result = remctl(host, port, principal, command);
    double elapsed = now_ms() - start;
    double cpu = cpu_ms() - cpu_start;
    if (result == NULL || result->error != NULL) {
        fprintf(stderr, "reference: %s\n", result ? result->error : "out of memory");
        return 1;
    }
    printf("{\"bytes\":%zu,\"ms\":%.3f,\"cpuMs\":%.3f,", result->stdout_len, elapsed, cpu);
    memory_print(&m);
    printf("}\n");
    remctl_result_free(result);
    return 0;
}

struct call {
    const char *host;
    int port;
    const char *principal;
    const char **command;
    int ok;
    double ms;
    char error[160];
};

static void *fanout_call(void *arg) {
    struct call *call = arg;
    double start = now_ms();
    struct remctl_result *result = remctl(call->host, call->port, call->principal, call->command);
    call->ms = now_ms() - start;
    if (result == NULL) {
        snprintf(call->error, sizeof(call->error), "out of memory");
    } else if (result->error != NULL) {
        snprintf(call->error, sizeof(call->error), "%s", result->error);
    } else {
        call->ok = result->status == 0;
        if (!call->ok) snprintf(call->error, sizeof(call->error), "exit status %d", result->status);
    }
    remctl_result_free(result);
    return NULL;
}

static void print_json_string(const char *text) {
    putchar('"');
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if ((unsigned char) *p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static int mode_fanout(const char *host, int port, const char *principal, int calls, const char **command) {
    struct call *all = calloc(calls, sizeof(struct call));
    pthread_t *threads = calloc(calls, sizeof(pthread_t));
    double start = now_ms();
    for (int i = 0; i < calls; i++) {
        all[i] = (struct call){host, port, principal, command, 0, 0, ""};
        if (pthread_create(&threads[i], NULL, fanout_call, &all[i]) != 0) {
            fprintf(stderr, "reference: cannot start thread %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < calls; i++) pthread_join(threads[i], NULL);
    double wall = now_ms() - start;
    int succeeded = 0;
    for (int i = 0; i < calls; i++) succeeded += all[i].ok;
    printf("{\"calls\":%d,\"succeeded\":%d,\"wallMs\":%.3f,\"callMs\":[", calls, succeeded, wall);
    for (int i = 0; i < calls; i++) printf(i ? ",%.3f" : "%.3f", all[i].ms);
    printf("],\"errors\":[");
    int first = 1;
    for (int i = 0; i < calls; i++) {
        if (all[i].ok) continue;
        if (!first) putchar(',');
        print_json_string(all[i].error);
        first = 0;
    }
    printf("]}\n");
    return 0;
}

struct idle_connection {
    struct remctl *r;
    pthread_barrier_t *start;
    int ok;
};

static void *scale_noop(void *arg) {
    struct idle_connection *c = arg;
    pthread_barrier_wait(c->start);
    c->ok = remctl_noop(c->r);
    return NULL;
}

static long count_fds(void) {
    char path[64];
    long count = 0;
    for (int fd = 0; fd < 65536; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0) count++;
    }
    return count;
}

static int mode_scale(const char *host, int port, const char *principal, int connections) {
    struct idle_connection *all = calloc(connections, sizeof(struct idle_connection));
    pthread_t *threads = calloc(connections, sizeof(pthread_t));
    pthread_barrier_t start;
    long rss_before = status_kib("VmRSS");
    long fds_before = count_fds();
    for (int i = 0; i < connections; i++) {
        all[i].r = remctl_new();
        if (all[i].r == NULL || !remctl_open(all[i].r, host, port, principal)) die("remctl_open", all[i].r);
        all[i].start = &start;
    }
    long rss_idle = status_kib("VmRSS");
    long fds_idle = count_fds();
    pthread_barrier_init(&start, NULL, connections + 1);
    for (int i = 0; i < connections; i++) {
        if (pthread_create(&threads[i], NULL, scale_noop, &all[i]) != 0) {
            fprintf(stderr, "reference: cannot start thread %d\n", i);
            return 1;
        }
    }
    double begin = now_ms();
    pthread_barrier_wait(&start);
    for (int i = 0; i < connections; i++) pthread_join(threads[i], NULL);
    double wall = now_ms() - begin;
    int succeeded = 0;
    for (int i = 0; i < connections; i++) succeeded += all[i].ok;
    printf("{\"connections\":%d,\"rssGrowthKiB\":%ld,\"fds\":%ld,\"threads\":%d,\"noopWallMs\":%.3f,\"succeeded\":%d}\n",
           connections, rss_idle - rss_before, fds_idle - fds_before, 0, wall, succeeded);
    for (int i = 0; i < connections; i++) remctl_close(all[i].r);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: reference MODE HOST PORT PRINCIPAL ... (see the source)\n");
        return 2;
    }
    const char *mode = argv[1];
    const char *host = argv[2];
    int port = atoi(argv[3]);
    const char *principal = argv[4][0] ? argv[4] : NULL;
    if (strcmp(mode, "oneshot") == 0 && argc >= 8) {
        return mode_oneshot(host, port, principal, atoi(argv[5]), atoi(argv[6]), (const char **) &argv[7]);
    }
    if (strcmp(mode, "session") == 0 && argc >= 10) {
        return mode_session(host, port, principal, atoi(argv[5]), atoi(argv[6]), atoi(argv[7]), atoi(argv[8]),
                            (const char **) &argv[9]);
    }
    if (strcmp(mode, "noop") == 0 && argc >= 7) {
        return mode_noop(host, port, principal, atoi(argv[5]), atoi(argv[6]));
    }
    if (strcmp(mode, "stream") == 0) return mode_stream(host, port, principal, (const char **) &argv[5]);
    if (strcmp(mode, "buffered") == 0) return mode_buffered(host, port, principal, (const char **) &argv[5]);
    if (strcmp(mode, "fanout") == 0 && argc >= 7) {
        return mode_fanout(host, port, principal, atoi(argv[5]), (const char **) &argv[6]);
    }
    if (strcmp(mode, "scale") == 0 && argc >= 6) return mode_scale(host, port, principal, atoi(argv[5]));
    fprintf(stderr, "reference: unknown mode or missing arguments: %s\n", mode);
    return 2;
}
