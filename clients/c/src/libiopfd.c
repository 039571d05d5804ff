/* SPDX-License-Identifier: MIT */
/*
 * DOC: libiopfd.c - a fault queue's stream as a file descriptor
 *
 * Each fd is one end of a socketpair(AF_UNIX, SOCK_STREAM); a bridge thread
 * per fd holds the other end and the WebSocket to the daemon:
 *
 * - daemon → program: each binary frame holds whole groups (events for a
 *   vEVENTQ). The bridge appends them to its out buffer and notes each
 *   group's length in a FIFO shared with read(); it writes whole groups
 *   into the socket (a chunk of at most one socket buffer's worth per
 *   send(), which the kernel takes whole or not at all), so the fd is
 *   readable (POLLIN) exactly when a group is waiting. When the socket is
 *   full the bridge keeps reading the WebSocket (pings must be answered) and
 *   keeps the groups in its buffer; the daemon's window bounds it.
 * - read() (iopfd_read()) takes, in one recv(), as many whole groups as are
 *   in the socket and fit the buffer (the FIFO says where they end), as
 *   iommufd_fault_fops_read() takes whole groups; 0 when the first does not
 *   fit.
 * - write() (iopfd_write()) checks locally what iommufd_fault_fops_write()
 *   checks: the code, and that the cookie is one this fd's read() returned
 *   and nothing answered since (a cookie state map, below). Entries that
 *   pass go out as one binary frame and write() returns at once
 *   (pipelined); the bridge takes the daemon's `write` reply later. An
 *   entry it cannot decide (a cookie this fd does not know as outstanding:
 *   never read here, answered already, revoked) makes the whole write()
 *   synchronous: the frame is sent and write() waits for the daemon's reply,
 *   which is then exact. A pipelined frame the daemon still refuses (the
 *   cookie went in the meantime: expired, revoked, answered through another
 *   connection) is not lost: the bridge sends the entries after the refused
 *   one again, and the next write() fails once with EIO (the sticky error).
 * - close() (iopfd_close()) closes the program's end; the bridge sees the
 *   hang-up, waits (≤ 1 s) for the replies to the pipelined frames, closes
 *   the WebSocket (1000: the daemon redelivers what was not answered) and
 *   ends; close() waits for it.
 *
 * When the stream ends (the daemon closed it, or the connection dropped)
 * the bridge closes its end: read() returns 0 once the waiting groups are
 * read, poll() reports POLLHUP, write() fails with EIO.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "libiopfd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "iopfd.h"
#include "ws.h"

/** The most bytes in one binary frame of responses (the daemon takes ≤ 1 MiB). */
#define WRITE_CHUNK (512u * 1024u)

/** Socket buffer asked for the bridge's end (the kernel caps it at net.core.wmem_max); IOPFD_SNDBUF overrides it. */
#define PAIR_SNDBUF (4 << 20)

/**
 * The most bytes the bridge hands to one send() on the socketpair: an
 * AF_UNIX stream send() of up to about 32 KiB (and half the socket buffer)
 * is one skb, taken whole or refused with EAGAIN, never cut inside a group.
 */
#define SEND_CHUNK (32u * 1024u)

/** Cookies above this are not tracked (their answers take the synchronous path). */
#define COOKIE_TRACK_MAX (1u << 24)

enum iopfd_kind { KIND_FAULT, KIND_VEVENTQ };

/**
 * enum cookie_state - what this fd knows of a cookie (the map @ck)
 * @CK_NONE: nothing: not delivered here, answered, or revoked
 * @CK_DELIVERED: its group came from the daemon and is not read yet
 * @CK_OUTSTANDING: read() returned its group and nothing answered it since
 * @CK_ANSWERING: inside the write() being checked (a second entry for it
 *   in the same write() is the kernel's EINVAL)
 */
enum cookie_state { CK_NONE, CK_DELIVERED, CK_OUTSTANDING, CK_ANSWERING };

/**
 * struct inflight - a frame of responses sent and not yet replied to
 * @next: the next one, in the order sent (the daemon replies in that order)
 * @sync: a synchronous write() waits for this reply (below); else pipelined
 * @done: (sync) the reply arrived, or the stream ended (@err EIO)
 * @bytes: (sync) the reply's bytes
 * @err: (sync) the reply's errno, 0 for none
 * @len: the frame's length
 * @data: (pipelined) the entries, to send again what follows a refused one
 */
struct inflight {
	struct inflight *next;
	int sync, done, err;
	size_t bytes, len;
	unsigned char data[];
};

/**
 * struct iopfd_conn - one fd
 * @app_fd: the program's end
 * @br_fd: the bridge's end (closed by the bridge when it ends)
 * @tcp: the WebSocket's socket
 * @kind: fault queue or vEVENTQ
 * @refs: table reference + callers inside read/write/close
 * @thread: the bridge
 * @tx_lock: serialises frames sent on @tcp (and the @inflight order)
 * @wr_lock: one write() at a time (the kernel serialises them too)
 * @rd_lock: one read() at a time
 * @lock: protects everything below
 * @cv: signalled on a sync reply, when no frame is in flight any more,
 *   and at the end
 * @ended: the stream ended
 * @closing: the program closed its end: groups are no longer delivered
 * @sizes: FIFO of group (event) lengths: those in the socket, unread, from
 *   @sz_head, then those in @ob not yet (wholly) sent, up to @sz_tail;
 *   @sz_sent is the first not wholly sent, @sz_sent_off bytes of it are
 * @sz_cap: @sizes' length (a power of two)
 * @sent: bytes written into the socket, ever
 * @taken: bytes read() took from it, ever
 * @ob: the bridge's out buffer: bytes from @ob_off to @ob_len are not sent
 * @ob_cap: its size
 * @chunk: the most bytes per send() on the socketpair
 * @part: (read() side, under @rd_lock) the first part of a group larger
 *   than the socket holds, @part_len bytes of it, @part_cap allocated
 * @ck: the cookie state map, @ck_cap entries
 * @inflight: frames of responses sent, oldest first; @inflight_tail the last
 * @resend: pipelined frames the bridge must send again (after a refusal)
 * @deferred: the sticky error: the next write() fails with it, once
 * @refused: pipelined entries the daemon refused (for the curious)
 * @pong: a ping's payload to echo; @pong_len its length, -1 for none
 * @rd: the WebSocket reader
 */
struct iopfd_conn {
	int app_fd, br_fd, tcp;
	enum iopfd_kind kind;
	int refs;
	pthread_t thread;
	pthread_mutex_t tx_lock, wr_lock, rd_lock, lock;
	pthread_cond_t cv;
	int ended, closing;
	uint32_t *sizes;
	size_t sz_head, sz_sent, sz_sent_off, sz_tail, sz_cap;
	unsigned long long sent, taken;
	unsigned char *ob;
	size_t ob_off, ob_len, ob_cap, chunk;
	unsigned char *part;
	size_t part_len, part_cap;
	unsigned char *ck;
	size_t ck_cap;
	struct inflight *inflight, *inflight_tail, *resend, *resend_tail;
	int deferred;
	unsigned long refused;
	unsigned char pong[125];
	int pong_len;
	struct ws_reader rd;
};

/* ---- the fd table -------------------------------------------------------------- */

volatile int iopfd_open_count;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iopfd_conn **table;
static size_t table_len;

/** Put @c at its fd in the table. Return: 0 or -1 (ENOMEM). */
static int table_add(struct iopfd_conn *c)
{
	int rc = 0;

	pthread_mutex_lock(&table_lock);
	if ((size_t)c->app_fd >= table_len) {
		size_t n = table_len ? table_len : 64;
		struct iopfd_conn **t;

		while (n <= (size_t)c->app_fd)
			n *= 2;
		t = realloc(table, n * sizeof(*t));
		if (!t) {
			rc = -1;
			errno = ENOMEM;
			goto out;
		}
		memset(t + table_len, 0, (n - table_len) * sizeof(*t));
		table = t;
		table_len = n;
	}
	table[c->app_fd] = c;
	c->refs = 1;
	__atomic_add_fetch(&iopfd_open_count, 1, __ATOMIC_SEQ_CST);
out:
	pthread_mutex_unlock(&table_lock);
	return rc;
}

/** The conn of @fd with a reference taken, or NULL when @fd is not ours. */
static struct iopfd_conn *conn_get(int fd)
{
	struct iopfd_conn *c = NULL;

	if (fd < 0)
		return NULL;
	pthread_mutex_lock(&table_lock);
	if ((size_t)fd < table_len && table[fd]) {
		c = table[fd];
		c->refs++;
	}
	pthread_mutex_unlock(&table_lock);
	return c;
}

static void free_list(struct inflight *f)
{
	while (f) {
		struct inflight *n = f->next;

		free(f);
		f = n;
	}
}

static void conn_free(struct iopfd_conn *c)
{
	free_list(c->inflight);
	free_list(c->resend);
	free(c->sizes);
	free(c->ob);
	free(c->part);
	free(c->ck);
	ws_reader_free(&c->rd);
	pthread_mutex_destroy(&c->tx_lock);
	pthread_mutex_destroy(&c->wr_lock);
	pthread_mutex_destroy(&c->rd_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static void conn_put(struct iopfd_conn *c)
{
	int last;

	pthread_mutex_lock(&table_lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&table_lock);
	if (last)
		conn_free(c);
}

/* ---- the libc calls the interposed symbols forward to ---------------------------- */

/*
 * Our own I/O on our sockets goes through recv()/send() or the raw
 * syscalls, never through read()/write()/close(), which the library
 * interposes.
 */
static int sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

/* ---- cookie states (under @lock) ----------------------------------------------------- */

static int ck_get(const struct iopfd_conn *c, uint32_t cookie)
{
	return cookie < c->ck_cap ? c->ck[cookie] : CK_NONE;
}

/** Set @cookie's state; a cookie beyond the map grows it (unless too large or out of memory: then untracked). */
static void ck_set(struct iopfd_conn *c, uint32_t cookie, int state)
{
	if (cookie >= c->ck_cap) {
		size_t n = c->ck_cap ? c->ck_cap : 1024;
		unsigned char *m;

		if (state == CK_NONE || cookie >= COOKIE_TRACK_MAX)
			return;
		while (n <= cookie)
			n *= 2;
		m = realloc(c->ck, n);
		if (!m)
			return; /* untracked: its answer takes the synchronous path */
		memset(m + c->ck_cap, 0, n - c->ck_cap);
		c->ck = m;
		c->ck_cap = n;
	}
	c->ck[cookie] = (unsigned char)state;
}

/** The cookie of the group of @len bytes at @p (every record holds it; the last one's is read). */
static uint32_t group_cookie(const unsigned char *p, size_t len)
{
	uint32_t v;

	memcpy(&v, p + len - sizeof(struct iommu_hwpt_pgfault) + offsetof(struct iommu_hwpt_pgfault, cookie), sizeof(v));
	return v;
}

/* ---- the bridge ----------------------------------------------------------------------- */

/** Mark the stream ended and wake every waiter (a sync write() fails with EIO). */
static void conn_end(struct iopfd_conn *c)
{
	struct inflight *f;

	pthread_mutex_lock(&c->lock);
	c->ended = 1;
	for (f = c->inflight; f; f = f->next)
		if (f->sync && !f->done) {
			f->done = 1;
			f->err = EIO;
		}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
}

#define SZ(c, i) ((c)->sizes[(i) & ((c)->sz_cap - 1)])

/** Append one group (event) of @len bytes at @p to the out buffer and the FIFO (under @lock). Return: 0 or -1. */
static int out_push(struct iopfd_conn *c, const unsigned char *p, size_t len)
{
	if (c->sz_tail - c->sz_head == c->sz_cap) {
		size_t n = c->sz_cap ? c->sz_cap * 2 : 1024, i;
		uint32_t *s = malloc(n * sizeof(*s));

		if (!s)
			return -1;
		for (i = c->sz_head; i != c->sz_tail; i++)
			s[i & (n - 1)] = SZ(c, i);
		free(c->sizes);
		c->sizes = s;
		c->sz_cap = n;
	}
	if (c->ob_cap - c->ob_len < len) {
		size_t live = c->ob_len - c->ob_off, n = c->ob_cap ? c->ob_cap : 64 * 1024;
		unsigned char *b;

		if (c->ob_off && live + len <= c->ob_cap) { /* room at the front */
			memmove(c->ob, c->ob + c->ob_off, live);
		} else {
			while (n < live + len)
				n *= 2;
			b = malloc(n);
			if (!b)
				return -1;
			if (live)
				memcpy(b, c->ob + c->ob_off, live);
			free(c->ob);
			c->ob = b;
			c->ob_cap = n;
		}
		c->ob_off = 0;
		c->ob_len = live;
	}
	memcpy(c->ob + c->ob_len, p, len);
	c->ob_len += len;
	SZ(c, c->sz_tail) = (uint32_t)len;
	c->sz_tail++;
	return 0;
}

/**
 * out_flush() - write what the out buffer holds into the socketpair, whole
 * groups per send(), while the socket takes it (under @lock).
 * Return: 0, or -1 when the program's end is gone.
 */
static int out_flush(struct iopfd_conn *c)
{
	while (c->sz_sent != c->sz_tail) {
		size_t len = SZ(c, c->sz_sent) - c->sz_sent_off, i = c->sz_sent + 1;
		ssize_t s;

		while (i != c->sz_tail && len + SZ(c, i) <= c->chunk)
			len += SZ(c, i++);
		s = send(c->br_fd, c->ob + c->ob_off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (s < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS)
				break;
			return -1;
		}
		c->ob_off += (size_t)s;
		c->sent += (unsigned long long)s;
		/* Advance past what went: whole groups, maybe a part of one (a group larger than a chunk). */
		s += (ssize_t)c->sz_sent_off;
		while (c->sz_sent != c->sz_tail && (size_t)s >= SZ(c, c->sz_sent)) {
			s -= (ssize_t)SZ(c, c->sz_sent);
			c->sz_sent++;
		}
		c->sz_sent_off = (size_t)s;
	}
	if (c->ob_off == c->ob_len)
		c->ob_off = c->ob_len = 0;
	return 0;
}

/**
 * deliver_frame() - queue a binary frame's groups (the record with
 * LAST_PAGE ends one) for a fault queue, or events (an 8-byte header, then
 * 32 bytes unless it is the LOST_EVENTS header) for a vEVENTQ (under
 * @lock). Return: 0, or -1 (EPROTO: a frame that does not split; ENOMEM).
 */
static int deliver_frame(struct iopfd_conn *c, const unsigned char *p, size_t len)
{
	size_t start = 0, i;

	if (c->closing)
		return 0; /* nobody reads any more: the daemon redelivers them */
	if (c->kind == KIND_FAULT) {
		if (len % sizeof(struct iommu_hwpt_pgfault))
			goto bad;
		for (i = 0; i < len; i += sizeof(struct iommu_hwpt_pgfault)) {
			uint32_t flags;
			size_t n = i + sizeof(struct iommu_hwpt_pgfault) - start;

			memcpy(&flags, p + i + offsetof(struct iommu_hwpt_pgfault, flags), sizeof(flags));
			if (!(flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE))
				continue;
			if (out_push(c, p + start, n) < 0)
				goto nomem;
			ck_set(c, group_cookie(p + start, n), CK_DELIVERED);
			start += n;
		}
		if (start != len)
			goto bad;
		return 0;
	}
	while (start < len) {
		uint32_t flags;
		size_t n = 8;

		if (len - start < 8)
			goto bad;
		memcpy(&flags, p + start, sizeof(flags));
		if (!(flags & 1))
			n += 32;
		if (len - start < n)
			goto bad;
		if (out_push(c, p + start, n) < 0)
			goto nomem;
		start += n;
	}
	return 0;
bad:
	errno = EPROTO;
	return -1;
nomem:
	errno = ENOMEM;
	return -1;
}

/**
 * send_frame() - send @f's frame of responses (@data) and note it in
 * @inflight (with @tx_lock held, so the notes keep the wire's order).
 * Return: 0, or -1 (EIO: the connection failed).
 */
static int send_frame(struct iopfd_conn *c, struct inflight *f, const void *data)
{
	pthread_mutex_lock(&c->lock);
	f->next = NULL;
	if (c->inflight_tail)
		c->inflight_tail->next = f;
	else
		c->inflight = f;
	c->inflight_tail = f;
	pthread_mutex_unlock(&c->lock);
	if (ws_send(c->tcp, WS_OP_BINARY, data, f->len) < 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/** Send what the bridge owes (a pong, frames to send again), with @tx_lock held. */
static void send_owed(struct iopfd_conn *c)
{
	for (;;) {
		struct inflight *f;
		unsigned char pong[125];
		int pong_len;

		pthread_mutex_lock(&c->lock);
		pong_len = c->pong_len;
		if (pong_len >= 0)
			memcpy(pong, c->pong, (size_t)pong_len);
		c->pong_len = -1;
		f = c->resend;
		if (f) {
			c->resend = f->next;
			if (!c->resend)
				c->resend_tail = NULL;
		}
		pthread_mutex_unlock(&c->lock);
		if (pong_len >= 0)
			ws_send(c->tcp, WS_OP_PONG, pong, (size_t)pong_len);
		if (!f)
			return;
		send_frame(c, f, f->data);
	}
}

/** Whether the bridge owes something (under @lock). */
static int owes(const struct iopfd_conn *c)
{
	return c->pong_len >= 0 || c->resend;
}

/**
 * pay_owed() - the bridge sends what it owes unless a write() holds the
 * send lock or the TCP buffer is full (it waits for neither: a write()
 * blocked on a full TCP buffer needs the bridge to go on reading).
 * Return: 1 when something is still owed (try again shortly), else 0.
 */
static int pay_owed(struct iopfd_conn *c)
{
	int more;

	pthread_mutex_lock(&c->lock);
	more = owes(c);
	pthread_mutex_unlock(&c->lock);
	if (!more)
		return 0;
	if (pthread_mutex_trylock(&c->tx_lock))
		return 1;
	{
		/* Nor for room in the TCP buffer: the daemon may be waiting for us to read before it reads. */
		struct pollfd p = { .fd = c->tcp, .events = POLLOUT };

		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
			pthread_mutex_unlock(&c->tx_lock);
			return 1;
		}
	}
	send_owed(c);
	pthread_mutex_unlock(&c->tx_lock);
	return 0;
}

/** A frame of responses to send again: the entries of @f after the first @skip bytes (under @lock). */
static void resend_rest(struct iopfd_conn *c, const struct inflight *f, size_t skip)
{
	struct inflight *r;

	if (skip >= f->len)
		return;
	r = malloc(sizeof(*r) + f->len - skip);
	if (!r)
		return; /* the groups stay outstanding: redelivered when this connection closes */
	memset(r, 0, sizeof(*r));
	r->len = f->len - skip;
	memcpy(r->data, f->data + skip, r->len);
	if (c->resend_tail)
		c->resend_tail->next = r;
	else
		c->resend = r;
	c->resend_tail = r;
}

/**
 * on_reply() - the daemon's reply to the oldest frame in flight: a sync
 * write() gets it; for a pipelined frame a refusal (entry k) means the
 * cookie went since write() checked it (expired, revoked, answered through
 * another connection): the entries after k are sent again, and the next
 * write() reports EIO once. @bytes, @err: the reply (@err EIO for an
 * `error` frame).
 */
static void on_reply(struct iopfd_conn *c, size_t bytes, int err)
{
	struct inflight *f;

	pthread_mutex_lock(&c->lock);
	f = c->inflight;
	if (!f) {
		pthread_mutex_unlock(&c->lock);
		return; /* a reply to nothing: ignored */
	}
	c->inflight = f->next;
	if (!c->inflight) {
		c->inflight_tail = NULL;
		pthread_cond_broadcast(&c->cv); /* for flush_at_exit() */
	}
	if (f->sync) {
		f->bytes = bytes;
		f->err = err;
		f->done = 1;
		pthread_cond_broadcast(&c->cv);
		f = NULL; /* the waiting write() frees it */
	} else if (err || bytes < f->len) {
		c->refused++;
		c->deferred = EIO;
		resend_rest(c, f, (bytes / sizeof(struct iommu_hwpt_page_response) + 1) * sizeof(struct iommu_hwpt_page_response));
	}
	pthread_mutex_unlock(&c->lock);
	free(f);
}

/** The cookies of an `expired` or `revoked` notice leave the map: their groups were answered by the daemon. */
static void on_gone(struct iopfd_conn *c, const char *s)
{
	const char *p = strstr(s, "\"cookies\"");

	if (!p || !(p = strchr(p, '[')))
		return;
	pthread_mutex_lock(&c->lock);
	for (p++; *p && *p != ']';) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);

		if (end == p) {
			p++;
			continue;
		}
		if (v <= UINT32_MAX)
			ck_set(c, (uint32_t)v, CK_NONE);
		p = end;
	}
	pthread_mutex_unlock(&c->lock);
}

/** A text frame: a `write` reply (or an `error`), or a notice (none is visible through the fd, as a kernel fd has none). */
static void on_text(struct iopfd_conn *c, const unsigned char *data, size_t len)
{
	char *s = malloc(len + 1), type[32], name[32];
	uint64_t bytes = 0;

	if (!s)
		return;
	memcpy(s, data, len);
	s[len] = 0;
	if (iopfd_json_str(s, "type", type, sizeof(type)) == 0) {
		if (!strcmp(type, "write")) {
			int err = 0;

			if (iopfd_json_u64(s, "bytes", &bytes) < 0)
				err = EIO;
			if (iopfd_json_str(s, "errno", name, sizeof(name)) == 0) {
				int e = iopfd_errno_of_name(name);

				err = e > 0 ? e : EIO;
			}
			on_reply(c, (size_t)bytes, err);
		} else if (!strcmp(type, "error")) {
			on_reply(c, 0, EIO);
		} else if (!strcmp(type, "expired") || !strcmp(type, "revoked")) {
			on_gone(c, s);
		}
	}
	free(s);
}

/** Send a control frame under the send lock. */
static int conn_send(struct iopfd_conn *c, int op, const void *data, size_t len)
{
	int rc;

	pthread_mutex_lock(&c->tx_lock);
	rc = ws_send(c->tcp, op, data, len);
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

/**
 * handle_frames() - everything complete in the reader; the groups go to
 * the socketpair at the end, in as few send()s as they fit.
 * Return: 1 to go on, 0 when the daemon closed the stream, -1 on an error.
 */
static int handle_frames(struct iopfd_conn *c)
{
	struct ws_message m;
	int r, rc = 1;

	while (rc == 1 && (r = ws_reader_next(&c->rd, &m)) == 1) {
		switch (m.op) {
		case WS_OP_BINARY:
			pthread_mutex_lock(&c->lock);
			if (deliver_frame(c, m.data, m.len) < 0)
				rc = -1;
			pthread_mutex_unlock(&c->lock);
			break;
		case WS_OP_TEXT:
			on_text(c, m.data, m.len);
			break;
		case WS_OP_PING:
			pthread_mutex_lock(&c->lock);
			c->pong_len = (int)(m.len < sizeof(c->pong) ? m.len : sizeof(c->pong));
			memcpy(c->pong, m.data, (size_t)c->pong_len);
			pthread_mutex_unlock(&c->lock);
			break;
		case WS_OP_CLOSE:
			/* Echo the status code (RFC 6455 §5.5.1), then the stream is over. */
			conn_send(c, WS_OP_CLOSE, m.data, m.len >= 2 ? 2 : 0);
			rc = 0;
			break;
		default:
			break;
		}
	}
	if (rc == 1 && r < 0)
		rc = -1;
	ws_reader_compact(&c->rd);
	if (rc == 1 && !c->closing) {
		pthread_mutex_lock(&c->lock);
		if (out_flush(c) < 0)
			rc = -1;
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/**
 * drain_replies() - the program closed its end: take the daemon's replies
 * to the pipelined frames (sending again what follows a refused entry)
 * until none is in flight, for at most about a second. What is still
 * unanswered then is redelivered by the daemon when the stream closes.
 * Return: 0, or -1 when the stream ended meanwhile.
 */
static int drain_replies(struct iopfd_conn *c)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = c->tcp, .events = POLLIN };
		long ms;
		int busy;

		pthread_mutex_lock(&c->tx_lock);
		send_owed(c);
		pthread_mutex_unlock(&c->tx_lock);
		pthread_mutex_lock(&c->lock);
		busy = c->inflight != NULL;
		pthread_mutex_unlock(&c->lock);
		ms = 1000 - ms_since(&t0);
		if (!busy || ms <= 0 || poll(&p, 1, (int)ms) <= 0)
			return 0;
		if (ws_reader_fill(&c->rd, c->tcp) <= 0 || handle_frames(c) <= 0)
			return -1; /* the stream is over: no close handshake to make */
	}
}

/** Close the WebSocket from our side: a close frame, then wait (≤ 1 s) for the daemon's. */
static void close_handshake(struct iopfd_conn *c)
{
	static const unsigned char normal[2] = { 0x03, 0xe8 }; /* 1000 */
	struct timespec t0;

	if (conn_send(c, WS_OP_CLOSE, normal, sizeof(normal)) < 0)
		return;
	shutdown(c->tcp, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = c->tcp, .events = POLLIN };
		long ms = 1000 - ms_since(&t0);

		if (ms <= 0 || poll(&p, 1, (int)ms) <= 0)
			return;
		if (ws_reader_fill(&c->rd, c->tcp) <= 0)
			return; /* the daemon closed the TCP connection after its close frame */
	}
}

static void *bridge_main(void *arg)
{
	struct iopfd_conn *c = arg;
	int by_program = 0, owed = 0;

	if (handle_frames(c) <= 0) /* frames that came with the hello */
		goto out;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = c->tcp, .events = POLLIN },
			{ .fd = c->br_fd, .events = 0 },
		};
		long r;

		pthread_mutex_lock(&c->lock);
		if (c->sz_sent != c->sz_tail)
			p[1].events = POLLOUT;
		pthread_mutex_unlock(&c->lock);
		if (poll(p, 2, owed ? 1 : -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & (POLLHUP | POLLERR)) {
			by_program = 1; /* the program closed its end */
			break;
		}
		if (p[1].revents & POLLOUT) {
			pthread_mutex_lock(&c->lock);
			r = out_flush(c);
			pthread_mutex_unlock(&c->lock);
			if (r < 0) {
				by_program = 1;
				break;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			r = ws_reader_fill(&c->rd, c->tcp);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				r = 1;
			else if (r <= 0 || handle_frames(c) <= 0)
				break;
		}
		owed = pay_owed(c);
	}
out:
	if (by_program) {
		pthread_mutex_lock(&c->lock);
		c->closing = 1;
		pthread_mutex_unlock(&c->lock);
		if (drain_replies(c) == 0)
			close_handshake(c);
	}
	conn_end(c);
	pthread_mutex_lock(&c->tx_lock); /* a write() sends on @tcp under it */
	sys_close(c->tcp);
	c->tcp = -1;
	pthread_mutex_unlock(&c->tx_lock);
	sys_close(c->br_fd); /* the program reads what waits, then EOF */
	c->br_fd = -1;
	return NULL;
}

/* ---- opening ------------------------------------------------------------------------- */

/** Wait (≤ @timeout_ms) for the hello text frame. Return: 0, or -1 (EPROTO, ETIMEDOUT). */
static int wait_hello(struct iopfd_conn *c, int timeout_ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct ws_message m;
		int r = ws_reader_next(&c->rd, &m);

		if (r < 0)
			return -1;
		if (r == 1) {
			char type[16], *s;

			if (m.op != WS_OP_TEXT)
				goto proto;
			s = strndup((const char *)m.data, m.len);
			if (!s) {
				errno = ENOMEM;
				return -1;
			}
			r = iopfd_json_str(s, "type", type, sizeof(type));
			free(s);
			if (r < 0 || strcmp(type, "hello"))
				goto proto;
			return 0;
		}
		{
			struct pollfd p = { .fd = c->tcp, .events = POLLIN };
			long ms;

			clock_gettime(CLOCK_MONOTONIC, &t);
			ms = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
			if (ms <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			if (poll(&p, 1, (int)ms) < 0 && errno != EINTR)
				return -1;
			if (p.revents && ws_reader_fill(&c->rd, c->tcp) == 0)
				goto proto; /* closed before hello */
		}
	}
proto:
	errno = EPROTO;
	return -1;
}

/**
 * flush_at_exit() - at exit(), wait (≤ 1 s in all) for the daemon's
 * replies to the pipelined answers of every open fault fd, so that a
 * program that answers and exits without close() loses nothing it wrote
 * (as when write() waited). The fds stay open: the kernel closes them and
 * the daemon redelivers what was not answered.
 */
static pid_t exit_pid;

static void flush_at_exit(void)
{
	struct timespec end;
	size_t i;

	if (getpid() != exit_pid)
		return; /* a fork()ed child: the bridges (and maybe the locks' owners) stayed in the parent */
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 1;
	for (i = 0;; i++) {
		struct iopfd_conn *c = NULL;

		pthread_mutex_lock(&table_lock);
		for (; i < table_len && !c; i++)
			if (table[i]) {
				c = table[i];
				c->refs++;
			}
		pthread_mutex_unlock(&table_lock);
		if (!c)
			return;
		i--;
		pthread_mutex_lock(&c->lock);
		while ((c->inflight || c->resend) && !c->ended)
			if (pthread_cond_timedwait(&c->cv, &c->lock, &end) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&c->lock);
		conn_put(c);
	}
}

static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void register_exit(void)
{
	exit_pid = getpid();
	atexit(flush_at_exit);
}

/** Open a stream of @kind at @path and make its fd. */
static int open_stream(enum iopfd_kind kind, const char *url, const char *path, const char *token,
		       const char *subprotocol)
{
	struct iopfd_url u;
	struct iopfd_conn *c;
	int sv[2], err, sndbuf = PAIR_SNDBUF;
	socklen_t sl = sizeof(sndbuf);
	sigset_t all, saved;

	if (iopfd_url_parse(url, &u) < 0)
		return -1;
	pthread_once(&exit_once, register_exit);
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return -1;
	}
	c->kind = kind;
	c->app_fd = c->br_fd = c->tcp = -1;
	c->pong_len = -1;
	pthread_mutex_init(&c->tx_lock, NULL);
	pthread_mutex_init(&c->wr_lock, NULL);
	pthread_mutex_init(&c->rd_lock, NULL);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cv, NULL);
	ws_reader_init(&c->rd);
	c->tcp = iopfd_tcp_connect(&u, IOPFD_HTTP_TIMEOUT_MS);
	if (c->tcp < 0)
		goto fail;
	if (ws_handshake(c->tcp, &u, path, token, subprotocol, &c->rd, IOPFD_HTTP_TIMEOUT_MS) < 0)
		goto fail;
	if (wait_hello(c, IOPFD_HTTP_TIMEOUT_MS) < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	c->app_fd = sv[0];
	c->br_fd = sv[1];
	if (getenv("IOPFD_SNDBUF"))
		sndbuf = atoi(getenv("IOPFD_SNDBUF"));
	setsockopt(c->br_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	/* One send() must stay one skb: at most half the buffer the kernel gave (less its slack). */
	if (getsockopt(c->br_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) < 0 || sndbuf < 1024)
		sndbuf = 1024;
	c->chunk = (size_t)sndbuf / 2 - 256 < SEND_CHUNK ? (size_t)sndbuf / 2 - 256 : SEND_CHUNK;
	if (table_add(c) < 0)
		goto fail;
	/* The bridge takes no signals: they stay with the program's threads (an epoll_wait() interrupted as usual). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	err = pthread_create(&c->thread, NULL, bridge_main, c);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (err) {
		pthread_mutex_lock(&table_lock);
		table[c->app_fd] = NULL;
		__atomic_sub_fetch(&iopfd_open_count, 1, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&table_lock);
		errno = err;
		goto fail;
	}
	return c->app_fd;
fail:
	err = errno;
	if (c->tcp >= 0)
		sys_close(c->tcp);
	if (c->app_fd >= 0)
		sys_close(c->app_fd);
	if (c->br_fd >= 0)
		sys_close(c->br_fd);
	conn_free(c);
	errno = err;
	return -1;
}

IOPFD_EXPORT int iopfd_fault_fd(const char *url, uint32_t ctx, const char *token, uint32_t fault_id)
{
	char path[96];

	snprintf(path, sizeof(path), "/v1/contexts/%u/faults/%u/stream", (unsigned)ctx, (unsigned)fault_id);
	return open_stream(KIND_FAULT, url, path, token, "iopf.v1.uapi");
}

IOPFD_EXPORT int iopfd_veventq_fd(const char *url, uint32_t ctx, const char *token, uint32_t veventq_id)
{
	char path[96];

	snprintf(path, sizeof(path), "/v1/contexts/%u/veventq/%u/stream", (unsigned)ctx, (unsigned)veventq_id);
	return open_stream(KIND_VEVENTQ, url, path, token, "vevent.v1.uapi");
}

/* ---- read, write, close --------------------------------------------------------------- */

/**
 * conn_read() - as many whole groups (events) as are in the socket and fit
 * @count, in one recv(): the FIFO of lengths says where they end. When none
 * is there: block until one is (recv(MSG_PEEK) honours O_NONBLOCK and
 * signals), or EAGAIN. 0 when the first waiting group does not fit (as the
 * kernel) or at the end of the stream. A group larger than the socket can
 * hold arrives in parts: the parts are taken into @part (the fd is then not
 * readable: the group is not whole) until the rest is there.
 */
static ssize_t conn_read(struct iopfd_conn *c, void *buf, size_t count)
{
	unsigned char *out = buf;
	ssize_t ret;

	if (c->kind == KIND_FAULT && count % sizeof(struct iommu_hwpt_pgfault)) {
		errno = ESPIPE;
		return -1;
	}
	if (count == 0)
		return 0;
	pthread_mutex_lock(&c->rd_lock);
	for (;;) {
		unsigned long long avail;
		size_t n = 0, len = 0, first = 0, have = c->part_len, i, off;
		char b;

		pthread_mutex_lock(&c->lock);
		avail = c->sent - c->taken;
		if (c->sz_head != c->sz_tail)
			first = SZ(c, c->sz_head);
		while (c->sz_head + n != c->sz_tail && len + SZ(c, c->sz_head + n) <= have + avail &&
		       len + SZ(c, c->sz_head + n) <= count)
			len += SZ(c, c->sz_head + n++);
		pthread_mutex_unlock(&c->lock);
		if (len) {
			if (have)
				memcpy(out, c->part, have);
			ret = recv(c->app_fd, out + have, len - have, MSG_DONTWAIT);
			if (ret != (ssize_t)(len - have)) {
				/* Someone else read the socket (a dup()ed descriptor): the groups are out of step. */
				if (ret >= 0)
					errno = EIO;
				ret = -1;
				break;
			}
			c->part_len = 0;
			pthread_mutex_lock(&c->lock);
			for (i = 0, off = 0; i < n; i++) {
				size_t g = SZ(c, c->sz_head + i);

				if (c->kind == KIND_FAULT) {
					uint32_t ck = group_cookie(out + off, g);

					/* Revoked or expired while it waited: the daemon answered it, an answer takes the exact path. */
					if (ck_get(c, ck) == CK_DELIVERED)
						ck_set(c, ck, CK_OUTSTANDING);
				}
				off += g;
			}
			c->sz_head += n;
			c->taken += len - have;
			pthread_mutex_unlock(&c->lock);
			ret = (ssize_t)len;
			break;
		}
		if (first > count && first <= have + avail) {
			ret = 0; /* the first group does not fit: the kernel returns 0 */
			break;
		}
		if (avail && first > have + avail) {
			/* Part of a group too large for the socket: take it, so that the bridge can send the rest. */
			if (c->part_cap < first) {
				unsigned char *p = realloc(c->part, first);

				if (!p) {
					errno = ENOMEM;
					ret = -1;
					break;
				}
				c->part = p;
				c->part_cap = first;
			}
			ret = recv(c->app_fd, c->part + have, (size_t)avail, MSG_DONTWAIT);
			if (ret != (ssize_t)avail) {
				if (ret >= 0)
					errno = EIO;
				ret = -1;
				break;
			}
			c->part_len += (size_t)avail;
			pthread_mutex_lock(&c->lock);
			c->taken += avail;
			pthread_mutex_unlock(&c->lock);
			continue;
		}
		ret = recv(c->app_fd, &b, 1, MSG_PEEK);
		if (ret <= 0)
			break; /* 0: the end of the stream; -1: EAGAIN, EINTR, ... */
	}
	pthread_mutex_unlock(&c->rd_lock);
	return ret;
}

/** A frame note for @len bytes of responses at @buf (@sync: a write() waits for its reply). */
static struct inflight *inflight_new(const void *buf, size_t len, int sync)
{
	struct inflight *f = malloc(sizeof(*f) + (sync ? 0 : len));

	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	memset(f, 0, sizeof(*f));
	f->sync = sync;
	f->len = len;
	if (!sync)
		memcpy(f->data, buf, len);
	return f;
}

/**
 * pipeline() - send @len bytes of responses that passed the local checks,
 * in frames of at most WRITE_CHUNK, without waiting for the replies.
 * Return: 0, or -1 (ENOMEM, EIO).
 */
static int pipeline(struct iopfd_conn *c, const unsigned char *buf, size_t len)
{
	size_t done = 0;
	int rc = 0;

	pthread_mutex_lock(&c->tx_lock);
	while (rc == 0 && done < len) {
		size_t n = len - done > WRITE_CHUNK ? WRITE_CHUNK : len - done;
		struct inflight *f = inflight_new(buf + done, n, 0);

		if (!f || c->tcp < 0) {
			free(f);
			errno = f ? EIO : ENOMEM;
			rc = -1;
			break;
		}
		rc = send_frame(c, f, f->data);
		done += n;
	}
	send_owed(c);
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

/** Take @f out of the frames in flight if it is still there (under @lock). */
static void inflight_unlink(struct iopfd_conn *c, struct inflight *f)
{
	struct inflight **pp, *prev = NULL;

	for (pp = &c->inflight; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			if (c->inflight_tail == f)
				c->inflight_tail = prev;
			return;
		}
}

/**
 * write_sync() - one frame of responses (≤ WRITE_CHUNK), then wait for the
 * daemon's reply, which is exact: the bytes consumed, or -1 with the errno
 * of the first entry when none was. The entries consumed leave the cookie
 * map.
 */
static ssize_t write_sync(struct iopfd_conn *c, const unsigned char *buf, size_t len)
{
	struct inflight *f = inflight_new(buf, len, 1);
	size_t bytes, i;
	ssize_t ret;
	int err;

	if (!f)
		return -1;
	pthread_mutex_lock(&c->tx_lock);
	if (c->tcp < 0) {
		pthread_mutex_unlock(&c->tx_lock);
		free(f);
		errno = EIO;
		return -1;
	}
	send_frame(c, f, buf); /* a failure ends the stream: the wait below sees it */
	send_owed(c);
	pthread_mutex_unlock(&c->tx_lock);
	pthread_mutex_lock(&c->lock);
	while (!f->done && !c->ended)
		pthread_cond_wait(&c->cv, &c->lock);
	inflight_unlink(c, f);
	bytes = f->done ? f->bytes : 0;
	err = f->done ? f->err : EIO;
	if (bytes > len) {
		bytes = len;
		err = err ? err : EIO;
	}
	for (i = 0; i + sizeof(struct iommu_hwpt_page_response) <= bytes; i += sizeof(struct iommu_hwpt_page_response)) {
		uint32_t ck;

		memcpy(&ck, buf + i, sizeof(ck));
		ck_set(c, ck, CK_NONE);
	}
	pthread_mutex_unlock(&c->lock);
	free(f);
	/* As iommufd_fault_fops_write(): the bytes consumed, or the errno when none were. */
	if (bytes == 0 && err) {
		errno = err;
		return -1;
	}
	ret = (ssize_t)bytes;
	if (err)
		errno = err; /* for a caller that looks: why it stopped */
	return ret;
}

/**
 * check_local() - iommufd_fault_fops_write()'s checks, entry by entry, on
 * what this fd knows (under @lock): a code other than SUCCESS/INVALID, or a
 * cookie answered earlier in the same write(), stops it (the kernel's
 * EINVAL; the cookie map is left as it was for that entry); an
 * outstanding cookie passes. Return: the entries that pass; *@sync set when
 * the entry after them has a cookie this fd cannot judge (the daemon
 * must), in which case the map is left untouched; otherwise the entries
 * that pass leave the map (they are answered).
 */
static size_t check_local(struct iopfd_conn *c, const unsigned char *buf, size_t n, int *sync)
{
	size_t k, i;

	*sync = 0;
	for (k = 0; k < n; k++) {
		struct iommu_hwpt_page_response r;
		int st;

		memcpy(&r, buf + k * sizeof(r), sizeof(r));
		if (r.code != IOMMUFD_PAGE_RESP_SUCCESS && r.code != IOMMUFD_PAGE_RESP_INVALID)
			break;
		st = ck_get(c, r.cookie);
		if (st == CK_ANSWERING)
			break; /* the same cookie earlier in this write() consumed it */
		if (st != CK_OUTSTANDING) {
			*sync = 1;
			break;
		}
		ck_set(c, r.cookie, CK_ANSWERING);
	}
	for (i = 0; i < k; i++) {
		uint32_t ck;

		memcpy(&ck, buf + i * sizeof(struct iommu_hwpt_page_response), sizeof(ck));
		ck_set(c, ck, *sync ? CK_OUTSTANDING : CK_NONE);
	}
	return k;
}

/**
 * conn_write() - iommufd_fault_fops_write() on this fd: the entries that
 * pass the local checks go out pipelined and count as consumed; the first
 * that fails them stops the write() with EINVAL (-1 when it is the first);
 * a cookie only the daemon can judge makes the write() synchronous. A
 * pipelined refusal seen since the last write() fails this one once with
 * EIO, nothing consumed (the sticky error).
 */
static ssize_t conn_write(struct iopfd_conn *c, const void *buf, size_t count)
{
	const unsigned char *in = buf;
	size_t done = 0, n, k;
	ssize_t ret;
	int sync;

	if (c->kind != KIND_FAULT) {
		errno = EINVAL; /* a vEVENTQ fd has no write */
		return -1;
	}
	if (count % sizeof(struct iommu_hwpt_page_response)) {
		errno = ESPIPE;
		return -1;
	}
	if (count == 0)
		return 0;
	pthread_mutex_lock(&c->wr_lock);
	pthread_mutex_lock(&c->lock);
	if (c->deferred || c->ended) {
		errno = c->deferred ? c->deferred : EIO;
		c->deferred = 0;
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->wr_lock);
		return -1;
	}
	n = count / sizeof(struct iommu_hwpt_page_response);
	k = check_local(c, in, n, &sync);
	pthread_mutex_unlock(&c->lock);
	if (!sync) {
		if (k && pipeline(c, in, k * sizeof(struct iommu_hwpt_page_response)) < 0) {
			ret = -1;
		} else if (k == 0) {
			errno = EINVAL;
			ret = -1;
		} else {
			ret = (ssize_t)(k * sizeof(struct iommu_hwpt_page_response));
			if (k < n)
				errno = EINVAL; /* for a caller that looks: why it stopped */
		}
		pthread_mutex_unlock(&c->wr_lock);
		return ret;
	}
	while (done < count) {
		size_t len = count - done > WRITE_CHUNK ? WRITE_CHUNK : count - done;
		ssize_t r = write_sync(c, in + done, len);

		if (r < 0) {
			pthread_mutex_unlock(&c->wr_lock);
			return done ? (ssize_t)done : -1;
		}
		done += (size_t)r;
		if ((size_t)r < len)
			break;
	}
	pthread_mutex_unlock(&c->wr_lock);
	return (ssize_t)done;
}

/** Run @op on @fd's conn (a reference held, errno kept): 1, or 0 when @fd is not ours. */
static int on_conn(int fd, ssize_t (*op)(struct iopfd_conn *, void *, size_t), void *buf, size_t count, ssize_t *ret)
{
	struct iopfd_conn *c = conn_get(fd);
	int e;

	if (!c)
		return 0;
	*ret = op(c, buf, count);
	e = errno;
	conn_put(c);
	errno = e;
	return 1;
}

/** conn_write() with read()'s signature, for on_conn(); the buffer is only read. */
static ssize_t conn_write_op(struct iopfd_conn *c, void *buf, size_t count)
{
	return conn_write(c, buf, count);
}

int iopfd__read(int fd, void *buf, size_t count, ssize_t *ret)
{
	return on_conn(fd, conn_read, buf, count, ret);
}

int iopfd__write(int fd, const void *buf, size_t count, ssize_t *ret)
{
	return on_conn(fd, conn_write_op, (void *)(uintptr_t)buf, count, ret);
}

int iopfd__close(int fd, int *ret)
{
	struct iopfd_conn *c = NULL;

	if (fd < 0)
		return 0;
	pthread_mutex_lock(&table_lock);
	if ((size_t)fd < table_len && table[fd]) {
		c = table[fd];
		table[fd] = NULL; /* the table's reference is now ours */
		__atomic_sub_fetch(&iopfd_open_count, 1, __ATOMIC_SEQ_CST);
	}
	pthread_mutex_unlock(&table_lock);
	if (!c)
		return 0;
	*ret = sys_close(fd); /* the bridge sees the hang-up and closes the WebSocket */
	pthread_join(c->thread, NULL);
	conn_put(c);
	return 1;
}

IOPFD_EXPORT int iopfd_is_fd(int fd)
{
	struct iopfd_conn *c = conn_get(fd);

	if (!c)
		return 0;
	conn_put(c);
	return 1;
}

IOPFD_EXPORT ssize_t iopfd_read(int fd, void *buf, size_t count)
{
	ssize_t ret;

	if (iopfd__read(fd, buf, count, &ret))
		return ret;
	return (ssize_t)syscall(SYS_read, fd, buf, count);
}

IOPFD_EXPORT ssize_t iopfd_write(int fd, const void *buf, size_t count)
{
	ssize_t ret;

	if (iopfd__write(fd, buf, count, &ret))
		return ret;
	return (ssize_t)syscall(SYS_write, fd, buf, count);
}

IOPFD_EXPORT int iopfd_close(int fd)
{
	int ret;

	if (iopfd__close(fd, &ret))
		return ret;
	return sys_close(fd);
}
