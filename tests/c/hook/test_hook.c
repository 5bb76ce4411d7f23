/* The hook layer from C: plain libc calls (usleep, nanosleep, read, write,
 * poll, connect, accept, recv, send) made inside ivy tasks park the task, not
 * the worker. Run by tests/hook/run.sh twice: with LD_PRELOAD of
 * libivy_hook.so, and linked with -livy_hook -livy. Each test first checks
 * that the hook is really in the process (ivy_hook_version resolves). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void) {
    /* /proc/self/fd through the real syscalls is fine: outside tasks the hook
     * passes through. */
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            n++;
        }
    }
    return n;
}

static void test_hook_loaded(void) {
    CHECK(dlsym(RTLD_DEFAULT, "ivy_hook_version") != NULL);
}

/* 200 tasks each usleep(50 ms) on 2 workers: about 50 ms, not 200 * 50 / 2. */
#define SLEEPERS 200
static int slept;

static void *sleeper(void *arg) {
    (void)arg;
    if (usleep(50 * 1000) == 0) {
        H_ATOMIC_ADD(&slept, 1);
    }
    return NULL;
}

static void *sleep_main(void *arg) {
    (void)arg;
    ivy_task_t tasks[SLEEPERS];
    int64_t t0 = now_ms();
    for (int i = 0; i < SLEEPERS; i++) {
        OK(ivy_task_spawn(sleeper, NULL, NULL, &tasks[i]));
    }
    for (int i = 0; i < SLEEPERS; i++) {
        OK(ivy_task_join(tasks[i], NULL, -1));
    }
    int64_t took = now_ms() - t0;
    CHECK_EQ(H_ATOMIC_LOAD(&slept), SLEEPERS);
    /* Sequential on 2 workers would be 5000 ms. */
    if (took > 1500) {
        fprintf(stderr, "  sleep concurrency: took %lld ms\n", (long long)took);
    }
    CHECK(took < 1500);
    CHECK(took >= 50);
    return NULL;
}

static void test_sleep_concurrency(void) {
    h_run(2, sleep_main, NULL);
}

/* nanosleep of 0 yields; a passed clock_nanosleep TIMER_ABSTIME returns 0;
 * nanosleep reports EINVAL for a bad timespec as libc does. */
static void *nanosleep_main(void *arg) {
    (void)arg;
    struct timespec zero = {0, 0}, bad = {0, 2000000000L}, rem;
    CHECK_EQ(nanosleep(&zero, NULL), 0);
    errno = 0;
    CHECK_EQ(nanosleep(&bad, &rem), -1);
    CHECK_EQ(errno, EINVAL);
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    int64_t t0 = now_ms();
    abs.tv_nsec += 30 * 1000000L;
    if (abs.tv_nsec >= 1000000000L) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000L;
    }
    CHECK_EQ(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL), 0);
    CHECK(now_ms() - t0 >= 29);
    return NULL;
}

static void test_nanosleep(void) {
    h_run(1, nanosleep_main, NULL);
}

/* Ping-pong over two pipes between two tasks on ONE worker: only possible if
 * a read on an empty pipe parks the task. */
#define ROUNDS 1000
static int ping[2], pong[2];

static void *ponger(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int v;
        if (read(ping[0], &v, sizeof v) != (ssize_t)sizeof v) {
            return (void *)1;
        }
        v++;
        if (write(pong[1], &v, sizeof v) != (ssize_t)sizeof v) {
            return (void *)2;
        }
    }
    return NULL;
}

static void *pipe_main(void *arg) {
    (void)arg;
    ivy_task_t t;
    OK(ivy_task_spawn(ponger, NULL, NULL, &t));
    int sum = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int v = i;
        CHECK_EQ(write(ping[1], &v, sizeof v), (ssize_t)sizeof v);
        CHECK_EQ(read(pong[0], &v, sizeof v), (ssize_t)sizeof v);
        sum += v - i;
    }
    void *r = (void *)9;
    OK(ivy_task_join(t, &r, -1));
    CHECK(r == NULL);
    CHECK_EQ(sum, ROUNDS);
    return NULL;
}

static void test_pipe_ping_pong(void) {
    int before = count_fds();
    CHECK_EQ(pipe(ping), 0);
    CHECK_EQ(pipe(pong), 0);
    h_run(1, pipe_main, NULL);
    /* The pipes stayed blocking in the user's view, and really. */
    CHECK_EQ(fcntl(ping[0], F_GETFL) & O_NONBLOCK, 0);
    close(ping[0]);
    close(ping[1]);
    close(pong[0]);
    close(pong[1]);
    CHECK_EQ(count_fds(), before);
}

/* poll() on a pipe with a timeout parks; another task on the same worker runs
 * meanwhile and writes; poll with nothing ready times out with 0. */
static int pp[2];

static void *poll_writer(void *arg) {
    (void)arg;
    usleep(20 * 1000);
    char c = 'x';
    CHECK_EQ(write(pp[1], &c, 1), 1);
    return NULL;
}

static void *poll_main(void *arg) {
    (void)arg;
    struct pollfd pfd = {pp[0], POLLIN, 0};
    int64_t t0 = now_ms();
    CHECK_EQ(poll(&pfd, 1, 30), 0);
    CHECK(now_ms() - t0 >= 29);
    CHECK_EQ(pfd.revents, 0);
    ivy_task_t t;
    OK(ivy_task_spawn(poll_writer, NULL, NULL, &t));
    CHECK_EQ(poll(&pfd, 1, 5000), 1);
    CHECK_EQ(pfd.revents, POLLIN);
    OK(ivy_task_join(t, NULL, -1));
    /* select: readable now. */
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(pp[0], &rs);
    struct timeval tv = {1, 0};
    CHECK_EQ(select(pp[0] + 1, &rs, NULL, NULL, &tv), 1);
    CHECK(FD_ISSET(pp[0], &rs));
    char c;
    CHECK_EQ(read(pp[0], &c, 1), 1);
    /* select times out with the sets cleared. */
    FD_ZERO(&rs);
    FD_SET(pp[0], &rs);
    tv.tv_sec = 0;
    tv.tv_usec = 20 * 1000;
    CHECK_EQ(select(pp[0] + 1, &rs, NULL, NULL, &tv), 0);
    CHECK(!FD_ISSET(pp[0], &rs));
    return NULL;
}

static void test_poll_select(void) {
    CHECK_EQ(pipe(pp), 0);
    h_run(1, poll_main, NULL);
    close(pp[0]);
    close(pp[1]);
}

/* A loopback listener and 50 client tasks on one worker: connect, send,
 * recv through plain socket calls; the acceptor task echoes. */
#define CLIENTS 50
static int listener;
static int echoed;

static void *echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        CHECK_EQ(send(fd, buf, (size_t)n, 0), n);
    }
    close(fd);
    return NULL;
}

static void *acceptor(void *arg) {
    (void)arg;
    ivy_task_t conns[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        int fd = accept(listener, NULL, NULL);
        CHECK(fd >= 0);
        /* The user's view: blocking, as accept made it. */
        CHECK_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
        OK(ivy_task_spawn(echo_conn, (void *)(intptr_t)fd, NULL, &conns[i]));
    }
    for (int i = 0; i < CLIENTS; i++) {
        OK(ivy_task_join(conns[i], NULL, -1));
    }
    return NULL;
}

static struct sockaddr_in bound;

static void *client(void *arg) {
    int i = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&bound, sizeof bound), 0);
    char msg[32], back[32];
    int len = snprintf(msg, sizeof msg, "hello %d", i);
    CHECK_EQ(send(fd, msg, (size_t)len, 0), len);
    ssize_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, back + got, sizeof back - (size_t)got, 0);
        CHECK(n > 0);
        if (n <= 0) {
            break;
        }
        got += n;
    }
    if (got == len && memcmp(msg, back, (size_t)len) == 0) {
        H_ATOMIC_ADD(&echoed, 1);
    }
    close(fd);
    return NULL;
}

static void *echo_main(void *arg) {
    (void)arg;
    ivy_task_t acc, clients[CLIENTS];
    OK(ivy_task_spawn(acceptor, NULL, NULL, &acc));
    for (int i = 0; i < CLIENTS; i++) {
        OK(ivy_task_spawn(client, (void *)(intptr_t)i, NULL, &clients[i]));
    }
    for (int i = 0; i < CLIENTS; i++) {
        OK(ivy_task_join(clients[i], NULL, -1));
    }
    OK(ivy_task_join(acc, NULL, -1));
    return NULL;
}

static void test_loopback_echo(void) {
    int before = count_fds();
    listener = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listener >= 0);
    memset(&bound, 0, sizeof bound);
    bound.sin_family = AF_INET;
    bound.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(bind(listener, (struct sockaddr *)&bound, sizeof bound), 0);
    socklen_t blen = sizeof bound;
    CHECK_EQ(getsockname(listener, (struct sockaddr *)&bound, &blen), 0);
    CHECK_EQ(listen(listener, 128), 0);
    h_run(1, echo_main, NULL);
    CHECK_EQ(H_ATOMIC_LOAD(&echoed), CLIENTS);
    close(listener);
    CHECK_EQ(count_fds(), before);
}

/* A task blocked in read() on an empty pipe is cancelled: -1 / ECANCELED. A
 * read under an ivy deadline scope: -1 / ETIMEDOUT. */
static int cp[2];

static void *cancel_reader(void *arg) {
    (void)arg;
    char c;
    errno = 0;
    ssize_t r = read(cp[0], &c, 1);
    return (void *)(intptr_t)(r == -1 && errno == ECANCELED ? 1 : 100 + errno);
}

static void *cancel_main(void *arg) {
    (void)arg;
    ivy_task_t t;
    OK(ivy_task_spawn(cancel_reader, NULL, NULL, &t));
    usleep(20 * 1000); /* parks this task: the reader runs and blocks */
    OK(ivy_task_cancel(t));
    void *r = NULL;
    int rc = ivy_task_join(t, &r, -1);
    /* A C task that returns normally after its cancellation: joined as
     * cancelled or with its result, depending on the ABI; the errno it saw is
     * what matters. */
    if (rc == 0) {
        CHECK_EQ((intptr_t)r, 1);
    } else {
        CHECK_EQ(rc, IVY_ECANCELED);
    }
    /* Deadline scope. */
    ivy_deadline_scope_t scope;
    OK(ivy_deadline_push(ivy_time_now() + 30, &scope));
    char c;
    errno = 0;
    CHECK_EQ(read(cp[0], &c, 1), -1);
    CHECK_EQ(errno, ETIMEDOUT);
    ivy_deadline_pop(scope);
    return NULL;
}

static void test_cancel_and_deadline(void) {
    CHECK_EQ(pipe(cp), 0);
    h_run(1, cancel_main, NULL);
    close(cp[0]);
    close(cp[1]);
}

/* fork and vfork from a task. A vfork child shares the parent's memory: its
 * close() of an fd a parent task waits on must neither wake that task nor
 * touch the parent's fd table. A forked child sees plain libc (the hook is
 * detached there): a sleep really sleeps, a read on a pipe with data reads. */
static int fp[2];

static void *fork_reader(void *arg) {
    (void)arg;
    char c = 0;
    ssize_t n = read(fp[0], &c, 1);
    return (void *)(intptr_t)(n == 1 && c == 'v' ? 1 : 100 + errno);
}

static void *fork_main(void *arg) {
    (void)arg;
    ivy_task_t t;
    OK(ivy_task_spawn(fork_reader, NULL, NULL, &t));
    usleep(10 * 1000); /* the reader parks in read() */
    pid_t pid = vfork();
    if (pid == 0) {
        close(fp[0]);
        _exit(7);
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
    usleep(10 * 1000); /* had the child's close woken the reader, it ends now */
    CHECK_EQ(write(fp[1], "v", 1), 1);
    void *r = NULL;
    OK(ivy_task_join(t, &r, -1));
    CHECK_EQ((intptr_t)r, 1);

    CHECK_EQ(write(fp[1], "f", 1), 1);
    pid = fork();
    if (pid == 0) {
        char c = 0;
        int64_t t0 = now_ms();
        int ok = read(fp[0], &c, 1) == 1 && c == 'f';
        ok = ok && usleep(20 * 1000) == 0 && now_ms() - t0 >= 19;
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return NULL;
}

static void test_fork_and_vfork(void) {
    CHECK_EQ(pipe(fp), 0);
    h_run(1, fork_main, NULL);
    close(fp[0]);
    close(fp[1]);
}

int main(void) {
    RUN(test_hook_loaded);
    RUN(test_sleep_concurrency);
    RUN(test_nanosleep);
    RUN(test_pipe_ping_pong);
    RUN(test_poll_select);
    RUN(test_loopback_echo);
    RUN(test_cancel_and_deadline);
    RUN(test_fork_and_vfork);
    H_REPORT();
}
