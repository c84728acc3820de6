/* Creates 100 regions at once from a libevent loop, without a thread. */
#include <event2/event.h>
#include <memfd-broker.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#define REGIONS 100

struct app {
        mfb_client *client;
        struct event_base *base;
        struct event *watch;
        int events;     /* what watch waits for: POLLIN, POLLOUT */
        int pending;    /* creates not answered yet */
        int created;
        int failed;
};

static void on_ready(evutil_socket_t fd, short what, void *userdata);

/* Has the loop watch the client's fd for what the client needs now. */
static int watch(struct app *a) {
        int events = mfb_client_get_events(a->client);

        if (events < 0)
                return events;
        if (events == a->events)
                return 0;
        event_del(a->watch);
        event_assign(a->watch, a->base, mfb_client_get_fd(a->client),
                     EV_PERSIST | EV_READ | (events & POLLOUT ? EV_WRITE : 0),
                     on_ready, a);
        a->events = events;
        return event_add(a->watch, NULL);
}

/* Runs once per create, as the broker answers. */
static void on_created(mfb_client *c, int error, mfb_region *region,
                       void *userdata) {
        struct app *a = userdata;
        char *p;

        a->pending--;
        if (error < 0) {
                fprintf(stderr, "create: %s %s\n", strerror(-error),
                        mfb_client_error_message(c));
                a->failed = 1;
                return;
        }
        if (mfb_region_map(region, (void **) &p) == 0) {
                snprintf(p, 4096, "region %d", a->created);
                a->created++;
        }
        mfb_region_free(region);  /* returns at once */
}

static void on_ready(evutil_socket_t fd, short what, void *userdata) {
        struct app *a = userdata;

        if (mfb_client_dispatch(a->client) < 0 || watch(a) < 0)
                a->failed = 1;
        if (a->failed || a->pending == 0)
                event_base_loopbreak(a->base);
}

int main(void) {
        struct app a = { .events = -1 };
        int k;

        k = mfb_client_connect(NULL, &a.client);
        if (k < 0) {
                fprintf(stderr, "connect: %s\n", strerror(-k));
                return 1;
        }
        a.base = event_base_new();
        if (a.base)
                a.watch = event_new(a.base, -1, 0, on_ready, &a);

        /* Queued now, sent as the socket takes them. */
        for (int i = 0; i < REGIONS && a.watch; i++) {
                k = mfb_region_create_async(a.client, NULL, 4096, 0, 0,
                                            on_created, &a);
                if (k < 0)
                        break;
                a.pending++;
        }
        if (a.watch && k >= 0 && watch(&a) == 0)
                event_base_dispatch(a.base);

        printf("%d regions created\n", a.created);
        mfb_client_free(a.client);  /* cancels what is left */
        if (a.watch)
                event_free(a.watch);
        if (a.base)
                event_base_free(a.base);
        return a.failed || a.created != REGIONS;
}
