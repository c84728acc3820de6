/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Notifications (PROTOCOL.md, "Notifications"): the control page of a
 * region, and the pipes of the connections that watch it.
 *
 * A control page is a memfd of MFB_WIRE_NOTIFY_PAGE_SIZE bytes that the
 * broker owns (mode 0644: only the broker's uid can reopen it read-write
 * through /proc), sealed against shrinking, growing and further seals, and
 * mapped by the broker, which keeps watchers in it and advances seq for
 * NOTIFY with MFB_WIRE_NOTIFY_ADVANCE. Holders get fresh opens of it:
 * read-write for writers, read-only for readers, so the kernel is what
 * keeps readers from changing seq.
 *
 * A watch is one pipe per connection and region, which the broker writes a
 * byte to after notifications. Signalling is coalesced: a NOTIFY only
 * marks its page, and the marked pages' pipes are written once per pass
 * of the event loop, so a flood of NOTIFYs costs one write per watcher and
 * pass, not per NOTIFY.
 *
 * The broker keeps both ends and gives out only copies of the read end.
 * The write end is an open file description of its own, non-blocking, that
 * no client ever gets, so no client can make the broker's writes block:
 * a full pipe fails them with EAGAIN, and is readable already. A pipe
 * that holds a byte is readable already too, and is not written: a watcher
 * that never reads keeps one byte in the kernel, whatever size its client
 * made the pipe (F_SETPIPE_SZ works on the read end too). The pipe is cut
 * to one page besides.
 *
 * This module knows pages and watches, not regions or sessions: the region
 * table owns a region's page (region.h), and a session's hold its watch.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

/* Watchers signalled in a pass that a NOTIFY costs as one more turn of its uid's (schedule.h). */
#define CONTROL_WATCHERS_PER_TURN 64U

struct event_base;
struct control_page;
struct control_watch;
struct quota;
struct watch_table;

/*
 * A page the broker shares with clients: a memfd named name, made with
 * memfd_flags, of MFB_WIRE_NOTIFY_PAGE_SIZE (= MFB_WIRE_RELEASE_QUEUE_SIZE)
 * bytes, owned by the broker's uid with mode, sealed against resizing and
 * further seals. Returns the fd, the caller's, or -errno.
 */
int control_page_memfd(const char *name, unsigned memfd_flags, mode_t mode);

/*
 * Makes a control page: a memfd made with memfd_flags (the region table's:
 * MFD_CLOEXEC | MFD_ALLOW_SEALING, and MFD_NOEXEC_SEAL when the kernel has
 * it), sized, 0644, sealed, and mapped. Returns 0 and the page, or -errno
 * (-EMFILE or -ENFILE when the broker is out of fds).
 */
int control_page_new(unsigned memfd_flags, struct control_page **ret);

/*
 * Makes a page of fd, a parked control page restored after a restart
 * (taken, closed on failure too), after checking it is one: a memfd of
 * MFB_WIRE_NOTIFY_PAGE_SIZE bytes, open read-write, sealed as
 * control_page_new() seals. Its watchers are set to 0: the pipes they
 * counted died with the broker that gave them. Returns 0 and the page;
 * -EBADF with *ret_why saying why fd is not a control page; or -errno.
 */
int control_page_adopt(int fd, struct control_page **ret, const char **ret_why);

/* Unmaps and closes p, which no watch may have any more. Accepts NULL; returns NULL. */
struct control_page *control_page_free(struct control_page *p);

/* The broker's fd of p (borrowed), for parking it. */
int control_page_fd(const struct control_page *p);

/*
 * A fresh open of p, read-write if writable, else read-only, owned by the
 * caller. Returns the fd or -errno (-EMFILE or -ENFILE when out of fds).
 */
int control_page_open(const struct control_page *p, bool writable);

/* The sequence, read now. */
uint64_t control_page_seq(const struct control_page *p);

/*
 * A notification by the broker (MFB_WIRE_NOTIFY_ADVANCE): adds 1 to seq,
 * then wakes every futex waiter on it. Returns the new sequence.
 */
uint64_t control_page_advance(struct control_page *p);

/* How many watches p has. */
uint32_t control_page_watchers(const struct control_page *p);

/*
 * Returns 0 and a table of watches whose signalling runs on base
 * (borrowed), charging each watch's two pipe ends to its uid in quota
 * (borrowed, as fds); or -errno.
 */
int watch_table_new(struct event_base *base, struct quota *quota, struct watch_table **ret);

/* Frees t, which no watch may be in any more. Accepts NULL; returns NULL. */
struct watch_table *watch_table_free(struct watch_table *t);

/*
 * Makes a watch of p for a connection of uid: a pipe (O_NONBLOCK,
 * O_CLOEXEC, one page when the kernel lets the broker cut it) counted in
 * p's watchers, charged to uid as two fds. Returns
 * 0 and the watch, owned by the caller until control_unwatch(); the errors
 * of quota_charge() (-EDQUOT, -ENOSPC) with *ret_refused set; -EMFILE,
 * -ENFILE; or -ENOMEM.
 */
int control_watch(struct watch_table *t, struct control_page *p, uid_t uid, struct control_watch **ret,
                  enum mfb_wire_resource *ret_refused);

/* A copy of the read end of w's pipe for the client, owned by the caller; or -errno. */
int control_watch_fd(const struct control_watch *w);

/* Ends w: closes the broker's ends of its pipe, takes it off its page's watchers, and frees it. Accepts NULL. */
void control_unwatch(struct watch_table *t, struct control_watch *w);

/*
 * p was notified: its watchers' pipes are written in the next pass of
 * the event loop, once however many notifications come before it. Also
 * writes the broker's count of watchers into the page again, which a
 * writer may have scribbled over. Returns how many watchers will be
 * signalled because of this call: 0 when none, or when p was marked
 * already.
 */
uint32_t control_page_signal(struct watch_table *t, struct control_page *p);

/* Writes a byte to the pipes of every marked page now (what the pass does); for tests. */
void watch_table_flush(struct watch_table *t);
