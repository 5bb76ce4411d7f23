/* hello: spawn tasks, let them sleep concurrently, join them in order.
 *
 *   cc hello.c $(pkg-config --cflags --libs ivy) && ./a.out
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ivy.h"

static void *greeter(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    char name[32];
    int rc = ivy_time_sleep((int64_t)(30 - 10 * i)); /* the last one wakes first */
    if (rc != 0) return NULL;
    if (ivy_task_current_name(name, sizeof name, NULL) != 0) return NULL;
    printf("hello from %s\n", name);
    return (void *)(i * i);
}

static void *main_task(void *arg) {
    ivy_task_t tasks[3];
    uintptr_t i, sum = 0;
    (void)arg;
    for (i = 0; i < 3; i++) {
        char name[16];
        ivy_spawn_opts_t opts;
        memset(&opts, 0, sizeof opts);
        snprintf(name, sizeof name, "greeter-%u", (unsigned)i);
        opts.name = name; /* copied by ivy_task_spawn */
        int rc = ivy_task_spawn(greeter, (void *)i, &opts, &tasks[i]);
        if (rc != 0) {
            fprintf(stderr, "spawn: %s\n", ivy_strerror(rc));
            return (void *)1;
        }
    }
    for (i = 0; i < 3; i++) {
        void *result;
        int rc = ivy_task_join(tasks[i], &result, ivy_time_now() + 5000);
        if (rc != 0) {
            fprintf(stderr, "join: %s\n", ivy_strerror(rc));
            return (void *)1;
        }
        sum += (uintptr_t)result;
    }
    printf("sum of squares: %u\n", (unsigned)sum);
    return (void *)(uintptr_t)(sum == 0 + 1 + 4 ? 0 : 1);
}

int main(void) {
    void *status;
    int rc = ivy_runtime_run(NULL, main_task, NULL, &status);
    if (rc != 0) {
        fprintf(stderr, "ivy_runtime_run: %s\n", ivy_strerror(rc));
        return 1;
    }
    return (int)(uintptr_t)status;
}
