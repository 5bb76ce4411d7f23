/* Probe for NOTES.md "Round 11": a C program's switch, on libivy.so against libivy.a.
 *
 *   cargo build --release
 *   gcc -O2 -Wall -Wextra -Werror -Iinclude benches/compare/findings/c_switch_probe.c -o /tmp/sw_so -Ltarget/release -livy -Wl,-rpath,$PWD/target/release
 *   gcc -O2 -Wall -Wextra -Werror -Iinclude benches/compare/findings/c_switch_probe.c -o /tmp/sw_a target/release/libivy.a -lpthread -ldl -lm
 *   /tmp/sw_so [N]; /tmp/sw_a [N]      (or under valgrind --tool=callgrind, N and 2N)
 *
 * One worker; two tasks yield to each other N/2 times each, twice (the first round warms up).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ivy.h"
static long N = 2000000;
static void *yielder(void *arg) { (void)arg; for (long i = 0; i < N / 2; i++) ivy_task_yield(); return NULL; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static void *entry(void *arg) {
    (void)arg;
    for (int round = 0; round < 2; round++) {
        ivy_task_t t;
        double s = now();
        if (ivy_task_spawn(yielder, NULL, NULL, &t) != 0) { puts("spawn"); exit(1); }
        yielder(NULL);
        ivy_task_join(t, NULL, -1);
        double d = now() - s;
        if (round == 1) printf("%.1f ns/switch\n", d / N);
    }
    return NULL;
}
int main(int argc, char **argv) {
    if (argc > 1) N = atol(argv[1]);
    ivy_config_t c; memset(&c, 0, sizeof c); c.workers = 1;
    void *r;
    int e = ivy_runtime_run(&c, entry, NULL, &r);
    if (e) { printf("run: %d\n", e); return 1; }
    return 0;
}
