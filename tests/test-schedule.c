/* SPDX-License-Identifier: MIT */
/*
 * daemon/schedule.c on its own, on an event_base of the test's: which
 * entries it serves in which round. One pass of the loop
 * (EVLOOP_ONCE | EVLOOP_NONBLOCK) runs at most one round, so the tests step
 * the loop pass by pass and compare what each pass served, by name: "A3"
 * is entry 3 of uid A. The order of the uids within a round is left to the
 * scheduler: the names of a pass are compared sorted.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "macro.h"
#include "schedule.h"
#include "suites.h"

#define UID_A 1000
#define UID_B 1001
#define UID_C 1002

#define FOREVER UINT_MAX        /* serves_left of an entry that stays ready */
#define ITEMS_MAX 64
#define PASSES_MAX 128

/* What holds an entry, as a connection does in the broker. */
struct item {
        struct scheduler_entry turn;
        char name[8];
        size_t slot;                    /* in items[] */
        unsigned serves_left;           /* then it is made not ready, or leaves */
        bool leave;                     /* after its last serve it leaves and frees itself */
        struct item *ready_when_served; /* made ready in this one's next turn */
        int signal_when_served;         /* a byte is written there in its next turn; -1 for none */
        uint64_t busy_usec;             /* how long each of its turns takes, by the clock the scheduler reads */
        unsigned turns_charged;         /* each of its turns costs this many (scheduler_charge()); 0 or 1: one */
};

static struct event_base *base;
static struct scheduler *scheduler;
static struct item *items[ITEMS_MAX];   /* what the test has to leave and free at the end */
static size_t n_items;
static unsigned pass;                   /* of the loop, from 1 */
static char served[PASSES_MAX][64];     /* by pass: the names served, in order */
static unsigned input_pass;             /* the pass that saw the pipe's input, before it served anything */

static void note_served(const char *name) {
        char *line = served[pass];
        size_t len = strlen(line);

        ck_assert_msg(snprintf(line + len, sizeof(served[0]) - len, "%s%s", len > 0 ? " " : "", name) <
                      (int) (sizeof(served[0]) - len), "pass %u served more than any round may: %s", pass, line);
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void serve(struct scheduler_entry *e) {
        struct item *it = container_of(e, struct item, turn);

        note_served(it->name);
        if (it->turns_charged > 1)
                scheduler_charge(scheduler, e, it->turns_charged);
        /* A turn that takes this long, as an expensive request does: the clock is watched, not slept on. */
        if (it->busy_usec > 0)
                for (uint64_t start = now_usec(); now_usec() - start < it->busy_usec;)
                        ;
        if (it->ready_when_served) {
                scheduler_ready(scheduler, &it->ready_when_served->turn);
                it->ready_when_served = NULL;
        }
        if (it->signal_when_served >= 0) {
                ck_assert_int_eq(write(it->signal_when_served, "x", 1), 1);
                it->signal_when_served = -1;
        }
        ck_assert_msg(it->serves_left > 0, "%s served once more than it asked for", it->name);
        if (it->serves_left == FOREVER || --it->serves_left > 0)
                return;
        if (it->leave) {
                items[it->slot] = NULL;
                scheduler_leave(scheduler, &it->turn);
                free(it);
        } else
                scheduler_unready(scheduler, &it->turn);
}

static struct item *item_new(uid_t uid, char letter, unsigned number, unsigned serves) {
        struct item *it = calloc(1, sizeof(*it));

        ck_assert_ptr_nonnull(it);
        ck_assert_uint_lt(n_items, ITEMS_MAX);
        snprintf(it->name, sizeof(it->name), "%c%u", letter, number);
        it->serves_left = serves;
        it->signal_when_served = -1;
        it->slot = n_items;
        items[n_items++] = it;
        ck_assert_int_eq(scheduler_join(scheduler, &it->turn, uid), 0);
        return it;
}

static void ready(struct item *it) {
        scheduler_ready(scheduler, &it->turn);
}

static void unready(struct item *it) {
        scheduler_unready(scheduler, &it->turn);
}

/* One pass of the loop, without waiting: returns the names it served, sorted; "" for none. */
static const char *run_pass(void) {
        static char sorted[sizeof(served[0])];
        char line[sizeof(served[0])], *names[ELEMENTSOF(served[0])], *saveptr;
        size_t n = 0, len = 0;

        ck_assert_uint_lt(pass + 1, PASSES_MAX);
        pass++;
        ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);

        memcpy(line, served[pass], sizeof(line));
        for (char *name = strtok_r(line, " ", &saveptr); name; name = strtok_r(NULL, " ", &saveptr))
                names[n++] = name;
        qsort(names, n, sizeof(names[0]), compare_names);
        sorted[0] = '\0';
        for (size_t i = 0; i < n; i++)
                len += (size_t) snprintf(sorted + len, sizeof(sorted) - len, "%s%s", i > 0 ? " " : "", names[i]);
        return sorted;
}

/* Nothing is scheduled: the loop has no event, and a pass serves nothing. */
static void assert_idle(void) {
        ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
        ck_assert_uint_lt(pass + 1, PASSES_MAX);
        pass++;
        ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 1);
        ck_assert_str_eq(served[pass], "");
}

/* Turns a uid alone in a round has in it, in the tests of lone uids; the others have one turn a round. */
#define ALONE_TURNS 4U

/* The time limit of a lone uid's turns in a round, in the test of it. */
#define ALONE_USEC 2000U

static void setup_with(unsigned alone_turns_max, uint64_t alone_usec_max) {
        test_fd_leak_setup();
        base = event_base_new();
        ck_assert_ptr_nonnull(base);
        ck_assert_int_eq(scheduler_new(base, serve, alone_turns_max, alone_usec_max, &scheduler), 0);
        memset(served, 0, sizeof(served));
        pass = 0;
        input_pass = 0;
        n_items = 0;
}

/* No time limit: how many turns a pass has must not depend on how fast the machine is. */
static void setup(void) {
        setup_with(1, UINT64_MAX);
}

static void setup_alone(void) {
        setup_with(ALONE_TURNS, UINT64_MAX);
}

static void setup_alone_timed(void) {
        setup_with(ALONE_TURNS, ALONE_USEC);
}

static void teardown(void) {
        for (size_t i = 0; i < n_items; i++)
                if (items[i]) {
                        scheduler_leave(scheduler, &items[i]->turn);
                        free(items[i]);
                }
        scheduler = scheduler_free(scheduler);
        event_base_free(base);
        test_fd_leak_teardown();
}

START_TEST(every_ready_uid_is_served_once_a_round_its_entries_in_turn) {
        struct item *a[32], *b;
        char want[sizeof(served[0])];

        /* A has many entries ready, each for two requests; B one for 70. */
        for (unsigned i = 0; i < ELEMENTSOF(a); i++)
                a[i] = item_new(UID_A, 'A', i, 2);
        b = item_new(UID_B, 'B', 0, 70);
        for (unsigned i = 0; i < ELEMENTSOF(a); i++)
                ready(a[i]);
        ready(b);

        for (unsigned round = 0; round < 2 * ELEMENTSOF(a); round++) {
                snprintf(want, sizeof(want), "A%u B0", round % (unsigned) ELEMENTSOF(a));
                ck_assert_str_eq(run_pass(), want);
        }
        /* A is done; B goes on alone until it is not ready, and then nothing is left to do. */
        for (unsigned round = 2 * ELEMENTSOF(a); round < 70; round++)
                ck_assert_str_eq(run_pass(), "B0");
        assert_idle();
}
END_TEST

START_TEST(a_uid_is_served_in_the_first_round_after_it_becomes_ready) {
        struct item *a[32], *b;
        char want[sizeof(served[0])];

        for (unsigned i = 0; i < ELEMENTSOF(a); i++) {
                a[i] = item_new(UID_A, 'A', i, FOREVER);
                ready(a[i]);
        }
        b = item_new(UID_B, 'B', 0, 1);
        for (unsigned round = 0; round < 5; round++) {
                snprintf(want, sizeof(want), "A%u", round);
                ck_assert_str_eq(run_pass(), want);
        }

        /* B becomes ready between two passes, as its input would make it: the next round has it. */
        ready(b);
        ck_assert_str_eq(run_pass(), "A5 B0");
        ck_assert_str_eq(run_pass(), "A6");
        b->serves_left = 1;
        ready(b);
        ck_assert_str_eq(run_pass(), "A7 B0");
        ck_assert_str_eq(run_pass(), "A8");
}
END_TEST

static void on_input(evutil_socket_t fd, short what, void *userdata) {
        char c;

        ck_assert_int_eq(read(fd, &c, 1), 1);
        ck_assert_str_eq(served[pass], "");
        input_pass = pass;
        ready(userdata);
}

START_TEST(an_entry_made_ready_in_a_round_waits_for_the_next_after_a_poll) {
        struct item *a, *b, *c;
        struct event *input;
        int fds[2];

        ck_assert_int_eq(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        a = item_new(UID_A, 'A', 0, 2);
        b = item_new(UID_B, 'B', 0, 1);
        c = item_new(UID_C, 'C', 0, 1);
        /* C becomes ready when its input, the pipe, is seen. */
        input = event_new(base, fds[0], EV_READ | EV_PERSIST, on_input, c);
        ck_assert_ptr_nonnull(input);
        ck_assert_int_eq(event_add(input, NULL), 0);

        /* In its turn, A makes B ready and sends C its input. */
        a->ready_when_served = b;
        a->signal_when_served = fds[1];
        ready(a);
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_uint_eq(input_pass, 0);
        /* The loop polled before the next round: C's input was seen first, and that round has B and C. */
        ck_assert_str_eq(run_pass(), "A0 B0 C0");
        ck_assert_uint_eq(input_pass, 2);

        event_free(input);
        close(fds[0]);
        close(fds[1]);
        assert_idle();
}
END_TEST

START_TEST(leaving_in_its_own_turn_is_safe) {
        struct item *a1, *b, *c;

        ready(item_new(UID_A, 'A', 0, FOREVER));
        a1 = item_new(UID_A, 'A', 1, 1);
        a1->leave = true;
        ready(a1);
        ready(item_new(UID_A, 'A', 2, FOREVER));
        b = item_new(UID_B, 'B', 0, 1);
        b->leave = true;
        ready(b);
        c = item_new(UID_C, 'C', 0, 3);
        c->leave = true;
        ready(c);

        /* B's only entry leaves, and B with it, in the middle of the round: C still has its turn. */
        ck_assert_str_eq(run_pass(), "A0 B0 C0");
        /* One of A's leaves; A keeps its others. */
        ck_assert_str_eq(run_pass(), "A1 C0");
        /* C leaves last in its round. */
        ck_assert_str_eq(run_pass(), "A2 C0");
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A2");

        /* Ready entries that leave between rounds have no more turns. */
        for (size_t i = 0; i < n_items; i++)
                if (items[i]) {
                        scheduler_leave(scheduler, &items[i]->turn);
                        free(items[i]);
                        items[i] = NULL;
                }
        ck_assert_str_eq(run_pass(), "");
        assert_idle();
}
END_TEST

START_TEST(ready_and_unready_are_idempotent) {
        struct item *a0 = item_new(UID_A, 'A', 0, FOREVER), *a1 = item_new(UID_A, 'A', 1, FOREVER);
        struct item *b = item_new(UID_B, 'B', 0, FOREVER);

        ready(a0);
        ready(a0);
        ready(a1);
        ready(a0);
        unready(b);
        unready(b);
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A1");
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A1");

        ready(b);
        unready(b);
        unready(b);
        ck_assert_str_eq(run_pass(), "A0");
        ready(b);
        ready(b);
        ck_assert_str_eq(run_pass(), "A1 B0");
        ck_assert_str_eq(run_pass(), "A0 B0");

        unready(a0);
        unready(a0);
        unready(a1);
        unready(b);
        unready(a1);
        ck_assert_str_eq(run_pass(), "");
        assert_idle();

        /* Leaving twice is leaving once. */
        scheduler_leave(scheduler, &b->turn);
        scheduler_leave(scheduler, &b->turn);
        ready(a1);
        ck_assert_str_eq(run_pass(), "A1");
}
END_TEST

START_TEST(an_idle_scheduler_schedules_nothing) {
        struct item *a, *b;

        assert_idle();
        a = item_new(UID_A, 'A', 0, 1);
        b = item_new(UID_B, 'B', 0, 1);
        assert_idle();

        /* A's entry is made not ready in its turn: no round follows. */
        ready(a);
        ck_assert_str_eq(run_pass(), "A0");
        assert_idle();

        /* Ready and not ready again before the loop ran: at most an empty round, then nothing. */
        ready(b);
        unready(b);
        ck_assert_str_eq(run_pass(), "");
        assert_idle();
}
END_TEST

/*
 * A uid alone in a round from its start has more turns in it, its entries in
 * turn, up to the most the scheduler allows; another uid that becomes ready
 * ends that, and rounds of two are one turn each again.
 */
START_TEST(a_uid_alone_has_more_turns_in_a_round) {
        struct item *a0 = item_new(UID_A, 'A', 0, FOREVER), *a1 = item_new(UID_A, 'A', 1, 5);
        struct item *b = item_new(UID_B, 'B', 0, 2);

        ready(a0);
        ready(a1);
        ck_assert_str_eq(run_pass(), "A0 A0 A1 A1");
        ck_assert_str_eq(run_pass(), "A0 A0 A1 A1");
        /* A1 runs out in this round: A0 has the turns left. */
        ck_assert_str_eq(run_pass(), "A0 A0 A0 A1");
        /* B, between rounds: one turn each while both are ready. */
        ready(b);
        ck_assert_str_eq(run_pass(), "A0 B0");
        ck_assert_str_eq(run_pass(), "A0 B0");
        ck_assert_str_eq(run_pass(), "A0 A0 A0 A0");
        /* B, made ready by A's turn in a round A had alone: that round ends there. */
        a0->ready_when_served = b;
        b->serves_left = 1;
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A0 B0");
}
END_TEST

/*
 * A lone uid's extra turns in a round end once the round has taken the time
 * allowed, whatever turns are left; its first turn, which every round has,
 * is not cut short. Every turn here takes the whole time, so that a slow or
 * busy machine can only make a round longer, never give it more turns.
 */
START_TEST(a_uid_alone_has_its_extra_turns_only_within_the_time_allowed) {
        struct item *a0 = item_new(UID_A, 'A', 0, FOREVER), *a1 = item_new(UID_A, 'A', 1, 3);

        a0->busy_usec = ALONE_USEC;
        a1->busy_usec = ALONE_USEC;
        ready(a0);
        ready(a1);
        /* Without the time, each round would have ALONE_TURNS turns, as in a_uid_alone_has_more_turns_in_a_round. */
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A1");
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A1");
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A1");
        /* A1 is done: A0 goes on, one turn a round. */
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A0");
}
END_TEST

/*
 * A turn charged as several (a batch) is paid for in rounds its uid sits
 * out while another is ready; a uid alone owes nobody, and is served.
 */
START_TEST(a_costly_turn_is_paid_for_in_rounds) {
        struct item *a = item_new(UID_A, 'A', 0, FOREVER), *b = item_new(UID_B, 'B', 0, 5);

        a->turns_charged = 3;
        ready(a);
        ready(b);
        ck_assert_str_eq(run_pass(), "A0 B0");
        /* A owes 2 turns: B has them alone. */
        ck_assert_str_eq(run_pass(), "B0");
        ck_assert_str_eq(run_pass(), "B0");
        ck_assert_str_eq(run_pass(), "A0 B0");
        ck_assert_str_eq(run_pass(), "B0");
        /* B is done: A, alone, is served though it owes a turn. */
        ck_assert_str_eq(run_pass(), "A0");
        ck_assert_str_eq(run_pass(), "A0");
}
END_TEST

/*
 * What a uid owes is the uid's, not its connection's: one that closes its
 * last connection after a batch and connects again still sits out the
 * rounds, or a client could shed every debt by reconnecting.
 */
START_TEST(leaving_does_not_pay_a_debt) {
        struct item *a = item_new(UID_A, 'A', 0, 1), *b = item_new(UID_B, 'B', 0, FOREVER), *a1;

        a->turns_charged = 3;
        a->leave = true;
        ready(a);
        ready(b);
        ck_assert_str_eq(run_pass(), "A0 B0");
        /* A0 left, A's only entry: A comes back with another, and owes the 2 turns still. */
        a1 = item_new(UID_A, 'A', 1, FOREVER);
        ready(a1);
        ck_assert_str_eq(run_pass(), "B0");
        ck_assert_str_eq(run_pass(), "B0");
        ck_assert_str_eq(run_pass(), "A1 B0");
        ck_assert_str_eq(run_pass(), "A1 B0");
}
END_TEST

Suite *schedule_suite(void) {
        Suite *s = suite_create("schedule");
        TCase *tc = tcase_create("schedule"), *alone = tcase_create("alone"), *timed = tcase_create("alone-timed");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, every_ready_uid_is_served_once_a_round_its_entries_in_turn);
        tcase_add_test(tc, a_uid_is_served_in_the_first_round_after_it_becomes_ready);
        tcase_add_test(tc, an_entry_made_ready_in_a_round_waits_for_the_next_after_a_poll);
        tcase_add_test(tc, leaving_in_its_own_turn_is_safe);
        tcase_add_test(tc, ready_and_unready_are_idempotent);
        tcase_add_test(tc, an_idle_scheduler_schedules_nothing);
        tcase_add_test(tc, a_costly_turn_is_paid_for_in_rounds);
        tcase_add_test(tc, leaving_does_not_pay_a_debt);
        suite_add_tcase(s, tc);

        tcase_add_checked_fixture(alone, setup_alone, teardown);
        tcase_add_test(alone, a_uid_alone_has_more_turns_in_a_round);
        suite_add_tcase(s, alone);

        tcase_add_checked_fixture(timed, setup_alone_timed, teardown);
        tcase_add_test(timed, a_uid_alone_has_its_extra_turns_only_within_the_time_allowed);
        suite_add_tcase(s, timed);
        return s;
}
