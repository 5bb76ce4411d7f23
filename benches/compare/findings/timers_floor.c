/* The `timers` row with no runtime: what giving each started task a guarded stack page of its
 * own costs by itself (NOTES.md, round 19).
 *
 * The row's schedule exactly: task i sleeps 1 + splitmix64(42 + i) % 1000 ms from the moment it
 * starts. W threads start the tasks in index order, claiming 256 at a time from a shared counter
 * (perfect balance, no spawner, no task object, no switch). Starting a task takes a stack slot
 * the way ivy's pool does: a slot freed earlier (its page still resident, LIFO per thread), else
 * a fresh one carved from a MAP_NORESERVE slab of 272 KiB slots (256 KiB + 16 KiB guard), with
 * guards installed 64 slots per process_madvise(MADV_GUARD_INSTALL) call; then the slot's top
 * page is written once (the fault a task's first frames take). The task's deadline goes into a
 * per-thread binary heap; between claims, and after the last one, each thread frees the slots of
 * the tasks whose deadline has passed, sleeping until the next deadline once all are started.
 * Reported: total ms, total minus the longest sleep (the row's "overhead" metric), the number of
 * fresh slots carved, and the peak resident set.
 *
 *   gcc -O2 -Wall -Wextra -Werror -pthread -o /tmp/timers_floor timers_floor.c
 *   /tmp/timers_floor [n=1000000] [threads=2] [mode=3]
 *
 * mode is a bit set: 1 writes each fresh slot's page, 2 installs the guards. So 3 is ivy's
 * design, 1 a runtime with unguarded stacks (`Builder::unguarded_stacks`), 0 the heap and the
 * schedule alone. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define GUARD_INSTALL 102
#define STRIDE (272u << 10)
#define GUARD (16u << 10)
#define CLAIM 256
#define BATCH 64
#define MAX_MS 1000

static uint64_t n_tasks;
static int mode = 3;
static char *slab;
static int pidfd;
static atomic_ulong next_task;
static atomic_ulong next_slot;
static atomic_ulong fresh;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t sleep_ms(uint64_t i) { return 1 + splitmix64(42 + i) % MAX_MS; }

struct entry {
  uint64_t deadline;
  char *slot;
};

struct worker {
  struct entry *heap;
  size_t len;
  char **free_slots;
  size_t nfree;
  char *carved[BATCH];
  size_t ncarved;
};

static void heap_push(struct worker *w, struct entry e) {
  size_t i = w->len++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (w->heap[p].deadline <= e.deadline) break;
    w->heap[i] = w->heap[p];
    i = p;
  }
  w->heap[i] = e;
}

static struct entry heap_pop(struct worker *w) {
  struct entry top = w->heap[0], last = w->heap[--w->len];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= w->len) break;
    if (c + 1 < w->len && w->heap[c + 1].deadline < w->heap[c].deadline) c++;
    if (last.deadline <= w->heap[c].deadline) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (w->len > 0) w->heap[i] = last;
  return top;
}

static char *take_slot(struct worker *w) {
  if (w->nfree > 0) return w->free_slots[--w->nfree];
  if (w->ncarved == 0) {
    unsigned long first = atomic_fetch_add(&next_slot, BATCH);
    struct iovec iov[BATCH];
    for (int k = 0; k < BATCH; k++) {
      w->carved[BATCH - 1 - k] = slab + (first + k) * STRIDE;
      iov[k].iov_base = slab + (first + k) * STRIDE;
      iov[k].iov_len = GUARD;
    }
    if ((mode & 2) && syscall(SYS_process_madvise, pidfd, iov, BATCH, GUARD_INSTALL, 0) < 0) {
      perror("process_madvise(MADV_GUARD_INSTALL)");
      exit(1);
    }
    w->ncarved = BATCH;
    atomic_fetch_add(&fresh, BATCH);
  }
  return w->carved[--w->ncarved];
}

static void expire(struct worker *w, uint64_t now) {
  while (w->len > 0 && w->heap[0].deadline <= now) w->free_slots[w->nfree++] = heap_pop(w).slot;
}

static void *run(void *arg) {
  (void)arg;
  struct worker w = {0};
  w.heap = malloc(n_tasks * sizeof *w.heap);
  w.free_slots = malloc(n_tasks * sizeof *w.free_slots);
  if (!w.heap || !w.free_slots) {
    perror("malloc");
    exit(1);
  }
  for (;;) {
    uint64_t first = atomic_fetch_add(&next_task, CLAIM);
    if (first >= n_tasks) break;
    uint64_t end = first + CLAIM < n_tasks ? first + CLAIM : n_tasks;
    for (uint64_t i = first; i < end; i++) {
      char *slot = take_slot(&w);
      if (mode & 1) *(volatile char *)(slot + STRIDE - 8) = 1;
      heap_push(&w, (struct entry){now_ns() + sleep_ms(i) * 1000000u, slot});
    }
    expire(&w, now_ns());
  }
  while (w.len > 0) {
    uint64_t d = w.heap[0].deadline;
    struct timespec t = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    expire(&w, now_ns());
  }
  free(w.heap);
  free(w.free_slots);
  return NULL;
}

static long peak_rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kib = atol(line + 6);
  if (f) fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  n_tasks = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  mode = argc > 3 ? atoi(argv[3]) : 3;
  if (threads < 1 || threads > 64 || n_tasks == 0 || mode < 0 || mode > 3) {
    fprintf(stderr, "usage: timers_floor [n] [threads 1..64] [mode 0..3]\n");
    return 2;
  }
  size_t bytes = (size_t)(n_tasks + (uint64_t)threads * BATCH) * STRIDE;
  slab = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
              -1, 0);
  if (slab == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  madvise(slab, bytes, MADV_NOHUGEPAGE);
  pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  uint64_t longest = 0;
  for (uint64_t i = 0; i < n_tasks; i++) {
    uint64_t ms = sleep_ms(i);
    if (ms > longest) longest = ms;
  }
  pthread_t tid[64];
  uint64_t t0 = now_ns();
  for (int k = 0; k < threads; k++) pthread_create(&tid[k], NULL, run, NULL);
  for (int k = 0; k < threads; k++) pthread_join(tid[k], NULL);
  double total = (double)(now_ns() - t0) / 1e6;
  printf("RESULT workload=timers system=floor n=%llu threads=%d mode=%d total_ms=%.1f "
         "overhead_ms=%.1f fresh_slots=%lu peak_rss_mib=%.1f\n",
         (unsigned long long)n_tasks, threads, mode, total, total - (double)longest,
         atomic_load(&fresh), (double)peak_rss_kib() / 1024);
  return 0;
}
