/*
 * A ring of frames in one region: a producer publishes frames, two
 * consumers follow them. A seqlock guards each slot, so consumers only
 * read (they hold the region read-only) and never hold the producer up;
 * a notification after each frame wakes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <memfd-broker.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING_NAME "ring"
#define SLOTS 8
#define FRAME_WORDS 510         /* a slot is 4 KiB */
#define FRAMES 200

/* The region: offsets only, it maps elsewhere in each process. */
struct slot {
        uint64_t seq;           /* seqlock: odd while the producer writes */
        uint64_t number;        /* the frame in the slot */
        uint64_t words[FRAME_WORDS];
};

struct ring {
        uint64_t head;          /* frames published */
        uint64_t done;          /* 1 after the last frame */
        struct slot slots[SLOTS];
};

/* The producer's side of the seqlock: readers retry while seq is odd. */
static void write_frame(struct ring *ring, uint64_t n) {
        struct slot *s = &ring->slots[n % SLOTS];
        uint64_t seq = s->seq;  /* only the producer writes it */

        __atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&s->number, n, __ATOMIC_RELAXED);
        for (int i = 0; i < FRAME_WORDS; i++)
                __atomic_store_n(&s->words[i], n * FRAME_WORDS + i,
                                 __ATOMIC_RELAXED);
        __atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

/* Publishes frames 0 to FRAMES - 1, one a millisecond, then says done. */
static int publish(mfb_region *r, struct ring *ring) {
        struct timespec tick = { .tv_nsec = 1000000 };
        int k;

        for (uint64_t n = 0; n < FRAMES; n++) {
                write_frame(ring, n);
                __atomic_store_n(&ring->head, n + 1, __ATOMIC_RELEASE);
                k = mfb_region_notify(r);   /* wakes every consumer */
                if (k < 0)
                        return k;
                nanosleep(&tick, NULL);
        }
        __atomic_store_n(&ring->done, 1, __ATOMIC_RELEASE);
        return mfb_region_notify(r);
}

/*
 * Copies frame n out of its slot. False if the producer has put a later
 * frame there since: this consumer fell behind by a whole ring.
 */
static bool read_frame(const struct ring *ring, uint64_t n,
                       uint64_t *words) {
        const struct slot *s = &ring->slots[n % SLOTS];
        uint64_t before, after, number;

        do {
                before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
                number = __atomic_load_n(&s->number, __ATOMIC_RELAXED);
                for (int i = 0; i < FRAME_WORDS; i++)
                        words[i] = __atomic_load_n(&s->words[i],
                                                   __ATOMIC_RELAXED);
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                after = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        } while (before % 2 == 1 || before != after);
        return number == n;
}

/* Whether words are frame n as the producer wrote it, not a mix of two. */
static bool whole(const uint64_t *words, uint64_t n) {
        for (int i = 0; i < FRAME_WORDS; i++)
                if (words[i] != n * FRAME_WORDS + i)
                        return false;
        return true;
}

/* Follows the ring until done; counts frames read and frames missed. */
static int follow(mfb_region *r, const struct ring *ring,
                  uint64_t *intact, uint64_t *missed) {
        uint64_t next = 0, seen = 0, words[FRAME_WORDS];
        int k;

        for (;;) {
                /* done before head: head is final once done is set. */
                bool done = __atomic_load_n(&ring->done, __ATOMIC_ACQUIRE);
                uint64_t head = __atomic_load_n(&ring->head,
                                                __ATOMIC_ACQUIRE);

                if (head - next > SLOTS) {      /* overwritten already */
                        *missed += head - SLOTS - next;
                        next = head - SLOTS;
                }
                if (next < head) {
                        if (!read_frame(ring, next, words))
                                ++*missed;
                        else if (!whole(words, next))
                                return -EBADMSG; /* the seqlock prevents it */
                        else
                                ++*intact;
                        next++;
                        continue;
                }
                if (done)
                        return 0;
                /* Sleeps until the sequence moves past the one seen. */
                k = mfb_region_wait_notify(r, &seen, 5000);
                if (k < 0)
                        return k;
        }
}

/* A consumer: a client of its own, the ring opened read-only. */
static int consumer(int id) {
        uint64_t intact = 0, missed = 0;
        const struct ring *ring;
        mfb_client *c;
        mfb_region *r;
        int k;

        k = mfb_client_connect(NULL, &c);
        if (k < 0)
                return 1;
        k = mfb_region_open(c, RING_NAME, O_RDONLY, &r);
        if (k == 0) {
                k = mfb_region_map(r, (void **) &ring);
                if (k == 0)
                        k = follow(r, ring, &intact, &missed);
                mfb_region_free(r);
        }
        mfb_client_free(c);
        if (k < 0) {
                fprintf(stderr, "consumer %d: %s\n", id, strerror(-k));
                return 1;
        }
        printf("consumer %d: %" PRIu64 " frames read, %" PRIu64
               " missed\n", id, intact, missed);
        return 0;
}

int main(void) {
        pid_t pids[2];
        mfb_client *c;
        mfb_region *r;
        struct ring *ring;
        int k, status, failed = 0;

        k = mfb_client_connect(NULL, &c);
        if (k < 0) {
                fprintf(stderr, "connect: %s\n", strerror(-k));
                return 1;
        }
        k = mfb_region_create(c, RING_NAME, sizeof(*ring), &r);
        if (k == 0)
                k = mfb_region_map_writable(r, (void **) &ring);
        if (k < 0) {
                fprintf(stderr, "create: %s\n", strerror(-k));
                return 1;
        }

        /* The children leave this client alone and make their own. */
        fflush(stdout);
        for (int i = 0; i < 2; i++) {
                pids[i] = fork();
                if (pids[i] == 0)
                        exit(consumer(i + 1));
        }

        k = publish(r, ring);
        if (k < 0) {
                fprintf(stderr, "notify: %s\n", strerror(-k));
                failed = 1;
        }
        for (int i = 0; i < 2; i++)
                if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0 ||
                    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        failed = 1;

        mfb_region_remove(r);   /* the name goes; the memory with r */
        mfb_region_free(r);
        mfb_client_free(c);
        return failed;
}
