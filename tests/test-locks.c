/* SPDX-License-Identifier: MIT */
/*
 * Locks inside regions: the POSIX process-shared primitives (a robust
 * mutex, a condition variable, a semaphore) placed in a broker region work
 * between processes that each opened the region through the library and
 * mapped it at an address of their own. The broker takes no part: these
 * tests are what docs/NOTIFICATIONS.md promises about them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "memfd-broker.h"
#include "suites.h"

/* What the tests keep in the region. Only offsets matter: no pointers inside. */
struct shared {
        pthread_mutex_t mutex;
        pthread_cond_t cond;
        sem_t ping, pong;
        uint64_t counter;       /* increments made under the mutex */
        uint64_t value;         /* what the condition and semaphore tests hand over */
};

#define LOCKS_REGION "locks"
#define INCREMENTS 200000
#define ROUNDS 1000

/* What a child needs: the steps, and the address at which the test mapped the region. */
struct child_arg {
        struct test_steps steps;
        void *parent_addr;
};

/* A CLOCK_REALTIME deadline TEST_TIMEOUT_MS from now, for the timed waits of mutexes and semaphores. */
static struct timespec deadline_realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += TEST_TIMEOUT_MS / 1000;
        return ts;
}

/* The same on CLOCK_MONOTONIC, the clock the condition variable is set to. */
static struct timespec deadline_monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += TEST_TIMEOUT_MS / 1000;
        return ts;
}

/* Creates the region and sets up every primitive in it, process-shared. */
static struct shared *shared_create(mfb_client **ret_client, mfb_region **ret_region) {
        pthread_mutexattr_t ma;
        pthread_condattr_t ca;
        struct shared *s;

        ck_assert_int_eq(mfb_client_connect(test_broker.socket_path, ret_client), 0);
        ck_assert_int_eq(mfb_region_create(*ret_client, LOCKS_REGION, 4096, ret_region), 0);
        ck_assert_int_eq(mfb_region_map_writable(*ret_region, (void **) &s), 0);

        ck_assert_int_eq(pthread_mutexattr_init(&ma), 0);
        ck_assert_int_eq(pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED), 0);
        ck_assert_int_eq(pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST), 0);
        ck_assert_int_eq(pthread_mutex_init(&s->mutex, &ma), 0);
        pthread_mutexattr_destroy(&ma);

        ck_assert_int_eq(pthread_condattr_init(&ca), 0);
        ck_assert_int_eq(pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED), 0);
        ck_assert_int_eq(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), 0);
        ck_assert_int_eq(pthread_cond_init(&s->cond, &ca), 0);
        pthread_condattr_destroy(&ca);

        ck_assert_int_eq(sem_init(&s->ping, 1, 0), 0);
        ck_assert_int_eq(sem_init(&s->pong, 1, 0), 0);
        return s;
}

/*
 * Opens the region by name, as an unrelated process would, and maps it
 * somewhere else than the test did: the test's address is taken first, so
 * that the primitives are seen to depend on no address.
 */
static int shared_open(const struct child_arg *a, mfb_client **ret_client, mfb_region **ret_region,
                       struct shared **ret) {
        void *taken;

        taken = mmap(a->parent_addr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        TEST_CHILD_CHECK(taken == a->parent_addr || (taken == MAP_FAILED && errno == EEXIST));
        TEST_CHILD_CHECK(mfb_client_connect(test_broker.socket_path, ret_client) == 0);
        TEST_CHILD_CHECK(mfb_region_open(*ret_client, LOCKS_REGION, O_RDWR, ret_region) == 0);
        TEST_CHILD_CHECK(mfb_region_map_writable(*ret_region, (void **) ret) == 0);
        TEST_CHILD_CHECK((void *) *ret != a->parent_addr);
        return 0;
}

static void shared_free(mfb_client *c, mfb_region *r) {
        mfb_region_free(r);
        mfb_client_free(c);
}

/*
 * counter += 1 in two steps, with a yield between: without mutual exclusion
 * two processes doing it lose increments.
 */
static void increment(struct shared *s) {
        uint64_t v = atomic_load_explicit((_Atomic uint64_t *) &s->counter, memory_order_relaxed);

        if (v % 64 == 0)
                sched_yield();
        atomic_store_explicit((_Atomic uint64_t *) &s->counter, v + 1, memory_order_relaxed);
}

static int incrementer_main(void *arg) {
        const struct child_arg *a = arg;
        mfb_client *c;
        mfb_region *r;
        struct shared *s;
        int ret;

        ret = shared_open(a, &c, &r, &s);
        if (ret != 0)
                return ret;
        TEST_CHILD_CHECK(test_pipe_signal(a->steps.to_parent) == 0);
        TEST_CHILD_CHECK(test_pipe_wait(a->steps.from_parent) == 0);
        for (int i = 0; i < INCREMENTS; i++) {
                TEST_CHILD_CHECK(pthread_mutex_lock(&s->mutex) == 0);
                increment(s);
                TEST_CHILD_CHECK(pthread_mutex_unlock(&s->mutex) == 0);
        }
        shared_free(c, r);
        return 0;
}

/* Two processes increment one counter under the mutex at once: no increment is lost. */
START_TEST(robust_mutex_excludes_across_processes) {
        struct child_arg a;
        mfb_client *c;
        mfb_region *r;
        struct shared *s = shared_create(&c, &r);
        pid_t pid;

        a.parent_addr = s;
        test_steps_open(&a.steps);
        pid = test_fork(incrementer_main, &a);
        ck_assert_int_eq(test_pipe_wait(a.steps.from_child), 0);

        ck_assert_int_eq(test_pipe_signal(a.steps.to_child), 0);
        for (int i = 0; i < INCREMENTS; i++) {
                ck_assert_int_eq(pthread_mutex_lock(&s->mutex), 0);
                increment(s);
                ck_assert_int_eq(pthread_mutex_unlock(&s->mutex), 0);
        }
        test_child_succeeded(pid);
        ck_assert_uint_eq(s->counter, 2 * INCREMENTS);

        shared_free(c, r);
        test_steps_close(&a.steps);
}
END_TEST

/* Takes the mutex, says so and waits to be killed while it holds it. */
static int dying_holder_main(void *arg) {
        const struct child_arg *a = arg;
        mfb_client *c;
        mfb_region *r;
        struct shared *s;
        int ret;

        ret = shared_open(a, &c, &r, &s);
        if (ret != 0)
                return ret;
        TEST_CHILD_CHECK(pthread_mutex_lock(&s->mutex) == 0);
        s->counter = 1;         /* half of an update the owner's death leaves behind */
        TEST_CHILD_CHECK(test_pipe_signal(a->steps.to_parent) == 0);
        for (;;)
                pause();
}

/* Starts a child that dies holding the mutex, and waits until it is dead. */
static void kill_a_holder(struct child_arg *a, struct shared *s) {
        struct timespec deadline = deadline_realtime();
        int status;
        pid_t pid;

        a->parent_addr = s;
        pid = test_fork(dying_holder_main, a);
        ck_assert_int_eq(test_pipe_wait(a->steps.from_child), 0);
        /* Held by the child now: another locker must wait. */
        ck_assert_int_eq(pthread_mutex_trylock(&s->mutex), EBUSY);

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        status = test_wait_child(pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* The kernel walked the dead thread's robust list: the next locker is told, not left waiting. */
        ck_assert_int_eq(pthread_mutex_timedlock(&s->mutex, &deadline), EOWNERDEAD);
        ck_assert_uint_eq(s->counter, 1);
}

/* Whoever locks after a holder died gets EOWNERDEAD, repairs, marks it consistent and goes on. */
START_TEST(holder_killed_holding_the_mutex_gives_eownerdead) {
        struct timespec deadline;
        struct child_arg a;
        mfb_client *c;
        mfb_region *r;
        struct shared *s = shared_create(&c, &r);

        test_steps_open(&a.steps);
        kill_a_holder(&a, s);
        s->counter = 0;         /* the repair */
        ck_assert_int_eq(pthread_mutex_consistent(&s->mutex), 0);
        ck_assert_int_eq(pthread_mutex_unlock(&s->mutex), 0);

        /* An ordinary mutex again: locks, excludes, unlocks. */
        deadline = deadline_realtime();
        ck_assert_int_eq(pthread_mutex_timedlock(&s->mutex, &deadline), 0);
        ck_assert_int_eq(pthread_mutex_trylock(&s->mutex), EBUSY);
        ck_assert_int_eq(pthread_mutex_unlock(&s->mutex), 0);

        shared_free(c, r);
        test_steps_close(&a.steps);
}
END_TEST

/* A locker that gives up on the repair leaves the mutex unusable for everyone: the caveat of the docs. */
START_TEST(mutex_left_inconsistent_is_not_recoverable) {
        struct timespec deadline;
        struct child_arg a;
        mfb_client *c;
        mfb_region *r;
        struct shared *s = shared_create(&c, &r);

        test_steps_open(&a.steps);
        kill_a_holder(&a, s);
        ck_assert_int_eq(pthread_mutex_unlock(&s->mutex), 0);
        deadline = deadline_realtime();
        ck_assert_int_eq(pthread_mutex_timedlock(&s->mutex, &deadline), ENOTRECOVERABLE);

        shared_free(c, r);
        test_steps_close(&a.steps);
}
END_TEST

/* Waits for value 1 on the condition, answers 2, signals back. */
static int cond_child_main(void *arg) {
        const struct child_arg *a = arg;
        struct timespec deadline;
        mfb_client *c;
        mfb_region *r;
        struct shared *s;
        int ret;

        ret = shared_open(a, &c, &r, &s);
        if (ret != 0)
                return ret;
        deadline = deadline_monotonic();
        TEST_CHILD_CHECK(pthread_mutex_lock(&s->mutex) == 0);
        /* Said under the mutex: the test cannot signal before this waits. */
        TEST_CHILD_CHECK(test_pipe_signal(a->steps.to_parent) == 0);
        while (s->value != 1)
                TEST_CHILD_CHECK(pthread_cond_timedwait(&s->cond, &s->mutex, &deadline) == 0);
        s->value = 2;
        TEST_CHILD_CHECK(pthread_cond_broadcast(&s->cond) == 0);
        TEST_CHILD_CHECK(pthread_mutex_unlock(&s->mutex) == 0);
        shared_free(c, r);
        return 0;
}

/* A process-shared condition variable wakes a waiter in another process, and back. */
START_TEST(condition_variable_signals_across_processes) {
        struct timespec deadline;
        struct child_arg a;
        mfb_client *c;
        mfb_region *r;
        struct shared *s = shared_create(&c, &r);
        pid_t pid;

        a.parent_addr = s;
        test_steps_open(&a.steps);
        pid = test_fork(cond_child_main, &a);
        ck_assert_int_eq(test_pipe_wait(a.steps.from_child), 0);

        deadline = deadline_monotonic();
        ck_assert_int_eq(pthread_mutex_lock(&s->mutex), 0);
        s->value = 1;
        ck_assert_int_eq(pthread_cond_signal(&s->cond), 0);
        while (s->value != 2)
                ck_assert_int_eq(pthread_cond_timedwait(&s->cond, &s->mutex, &deadline), 0);
        ck_assert_int_eq(pthread_mutex_unlock(&s->mutex), 0);
        test_child_succeeded(pid);

        shared_free(c, r);
        test_steps_close(&a.steps);
}
END_TEST

/* Answers each round's value doubled, woken by one semaphore, waking with the other. */
static int sem_child_main(void *arg) {
        const struct child_arg *a = arg;
        struct timespec deadline;
        mfb_client *c;
        mfb_region *r;
        struct shared *s;
        int ret;

        ret = shared_open(a, &c, &r, &s);
        if (ret != 0)
                return ret;
        TEST_CHILD_CHECK(test_pipe_signal(a->steps.to_parent) == 0);
        for (uint64_t i = 1; i <= ROUNDS; i++) {
                deadline = deadline_realtime();
                while ((ret = sem_timedwait(&s->ping, &deadline)) < 0 && errno == EINTR)
                        ;
                TEST_CHILD_CHECK(ret == 0);
                TEST_CHILD_CHECK(s->value == i);
                s->value = 2 * i;
                TEST_CHILD_CHECK(sem_post(&s->pong) == 0);
        }
        shared_free(c, r);
        return 0;
}

/* sem_init(pshared = 1) in a region: two processes take turns, each round handed over whole. */
START_TEST(semaphores_hand_over_across_processes) {
        struct timespec deadline;
        struct child_arg a;
        mfb_client *c;
        mfb_region *r;
        struct shared *s = shared_create(&c, &r);
        int ret;
        pid_t pid;

        a.parent_addr = s;
        test_steps_open(&a.steps);
        pid = test_fork(sem_child_main, &a);
        ck_assert_int_eq(test_pipe_wait(a.steps.from_child), 0);

        for (uint64_t i = 1; i <= ROUNDS; i++) {
                s->value = i;
                ck_assert_int_eq(sem_post(&s->ping), 0);
                deadline = deadline_realtime();
                while ((ret = sem_timedwait(&s->pong, &deadline)) < 0 && errno == EINTR)
                        ;
                ck_assert_msg(ret == 0, "round %u: %s", (unsigned) i, strerror(errno));
                ck_assert_uint_eq(s->value, 2 * i);
        }
        test_child_succeeded(pid);
        ck_assert_int_eq(sem_trywait(&s->ping), -1);
        ck_assert_int_eq(errno, EAGAIN);

        shared_free(c, r);
        test_steps_close(&a.steps);
}
END_TEST

Suite *locks_suite(void) {
        Suite *s = suite_create("locks");
        TCase *tc = tcase_create("locks");

        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, test_broker_setup, test_broker_teardown);
        tcase_add_test(tc, robust_mutex_excludes_across_processes);
        tcase_add_test(tc, holder_killed_holding_the_mutex_gives_eownerdead);
        tcase_add_test(tc, mutex_left_inconsistent_is_not_recoverable);
        tcase_add_test(tc, condition_variable_signals_across_processes);
        tcase_add_test(tc, semaphores_hand_over_across_processes);
        suite_add_tcase(s, tc);
        return s;
}
