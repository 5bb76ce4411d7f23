/* producer_consumer: producers and consumers over a bounded ivy queue, with
 * back-pressure, task_done/join, and close to stop the consumers.
 *
 *   cc producer_consumer.c $(pkg-config --cflags --libs ivy) && ./a.out
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ivy.h"

enum { PRODUCERS = 3, CONSUMERS = 4, ITEMS = 1000, CAPACITY = 16 };

static ivy_queue_t queue;

static void *producer(void *arg) {
    uintptr_t id = (uintptr_t)arg, i;
    for (i = 0; i < ITEMS; i++) {
        uintptr_t *item = malloc(sizeof *item); /* ownership passes through the queue */
        if (item == NULL) return (void *)1;
        *item = id * ITEMS + i + 1;
        int rc = ivy_queue_put(queue, item, IVY_FOREVER); /* waits while the queue is full */
        if (rc != 0) {
            fprintf(stderr, "put: %s\n", ivy_strerror(rc));
            free(item);
            return (void *)1;
        }
    }
    return NULL;
}

static void *consumer(void *arg) {
    uintptr_t *sum = arg;
    void *item;
    int rc;
    while ((rc = ivy_queue_get(queue, &item, IVY_FOREVER)) == 0) {
        *sum += *(uintptr_t *)item;
        free(item);
        ivy_queue_task_done(queue);
    }
    return (void *)(uintptr_t)(rc == IVY_ECLOSED ? 0 : 1); /* closed and drained: done */
}

static void *main_task(void *arg) {
    ivy_task_t producers[PRODUCERS], consumers[CONSUMERS];
    uintptr_t sums[CONSUMERS] = {0}, total = 0, expected;
    void *results[CONSUMERS];
    int codes[CONSUMERS], i;
    (void)arg;
    if (ivy_queue_new(CAPACITY, &queue) != 0) return (void *)1;
    for (i = 0; i < CONSUMERS; i++) ivy_task_spawn(consumer, &sums[i], NULL, &consumers[i]);
    for (i = 0; i < PRODUCERS; i++) ivy_task_spawn(producer, (void *)(uintptr_t)i, NULL, &producers[i]);
    ivy_task_join_all(producers, PRODUCERS, NULL, NULL, IVY_FOREVER);
    ivy_queue_join(queue, IVY_FOREVER); /* every item consumed */
    ivy_queue_close(queue);              /* consumers see IVY_ECLOSED and return */
    ivy_task_join_all(consumers, CONSUMERS, results, codes, IVY_FOREVER);
    ivy_queue_free(queue);
    for (i = 0; i < CONSUMERS; i++) {
        printf("consumer %d: sum %lu\n", i, (unsigned long)sums[i]);
        total += sums[i];
        if (codes[i] != 0 || results[i] != NULL) return (void *)1;
    }
    expected = (uintptr_t)PRODUCERS * ITEMS * (PRODUCERS * ITEMS + 1) / 2;
    printf("total %lu (expected %lu)\n", (unsigned long)total, (unsigned long)expected);
    return (void *)(uintptr_t)(total == expected ? 0 : 1);
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
