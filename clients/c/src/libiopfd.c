/* SPDX-License-Identifier: MIT */
/*
 * DOC: libiopfd.c - a fault queue's stream as a file descriptor
 *
 * Each fd is one end of a socketpair(AF_UNIX, SOCK_SEQPACKET); a bridge
 * thread per fd holds the other end and the WebSocket to the daemon:
 *
 * - daemon → program: each binary frame holds whole groups; the bridge
 *   sends each group as one packet, so the fd is readable (POLLIN) exactly
 *   when a group is waiting and a packet is never a partial group. When the
 *   socket is full the bridge keeps reading the WebSocket (pings must be
 *   answered) and queues the groups itself; the daemon's window bounds that
 *   queue.
 * - read() (iopfd_read()) takes whole packets while the next one fits, as
 *   iommufd_fault_fops_read() takes whole groups;
 * - write() (iopfd_write()) is done by the calling thread: it sends the
 *   entries as one binary frame and waits for the daemon's `write` reply,
 *   which the bridge hands over; the reply gives the bytes consumed and the
 *   errno of the first bad entry, as iommufd_fault_fops_write() returns;
 * - close() (iopfd_close()) closes the program's end; the bridge sees the
 *   hang-up, closes the WebSocket (1000: the daemon redelivers what was not
 *   answered) and ends; close() waits for it.
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

enum iopfd_kind { KIND_FAULT, KIND_VEVENTQ };

/** One group (or event) queued by the bridge while the socketpair is full. */
struct pending {
	struct pending *next;
	size_t len;
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
 * @tx_lock: serialises frames sent on @tcp
 * @wr_lock: one write() at a time (the kernel serialises them too)
 * @rd_lock: one read() at a time (peek then receive must see one packet)
 * @lock: protects the reply and @ended
 * @cv: signalled on a reply and at the end
 * @reply_ready: a `write` reply arrived
 * @reply_bytes: its bytes
 * @reply_errno: its errno, 0 for none
 * @ended: the stream ended
 * @head: the bridge's queue of groups waiting for room in the socketpair
 * @tail: its last element
 * @rd: the WebSocket reader
 */
struct iopfd_conn {
	int app_fd, br_fd, tcp;
	enum iopfd_kind kind;
	int refs;
	pthread_t thread;
	pthread_mutex_t tx_lock, wr_lock, rd_lock, lock;
	pthread_cond_t cv;
	int reply_ready, reply_errno, ended;
	size_t reply_bytes;
	struct pending *head, *tail;
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

static void conn_free(struct iopfd_conn *c)
{
	struct pending *p;

	while ((p = c->head)) {
		c->head = p->next;
		free(p);
	}
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

/* ---- the bridge ----------------------------------------------------------------------- */

/** Mark the stream ended and wake a waiting write(). */
static void conn_end(struct iopfd_conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->ended = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
}

/** Queue @len bytes for the socketpair (it was full). Return: 0 or -1. */
static int pending_push(struct iopfd_conn *c, const unsigned char *data, size_t len)
{
	struct pending *p = malloc(sizeof(*p) + len);

	if (!p)
		return -1;
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	if (c->tail)
		c->tail->next = p;
	else
		c->head = p;
	c->tail = p;
	return 0;
}

/** Send what the bridge queued while there is room. Return: 0, or -1 when the program's end is gone. */
static int pending_flush(struct iopfd_conn *c)
{
	struct pending *p;

	while ((p = c->head)) {
		ssize_t s = send(c->br_fd, p->data, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (s < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			return -1;
		}
		c->head = p->next;
		if (!c->head)
			c->tail = NULL;
		free(p);
	}
	return 0;
}

/** One packet to the program: at once if nothing is queued and there is room, else queued. */
static int deliver(struct iopfd_conn *c, const unsigned char *data, size_t len)
{
	if (!c->head) {
		ssize_t s = send(c->br_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (s >= 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			return -1;
	}
	return pending_push(c, data, len);
}

/**
 * deliver_frame() - split a binary frame into packets: whole groups (the
 * record with LAST_PAGE ends one) for a fault queue, whole events (an
 * 8-byte header, then 32 bytes unless it is the LOST_EVENTS header) for a
 * vEVENTQ. Return: 0, or -1 (EPROTO: a frame that does not split).
 */
static int deliver_frame(struct iopfd_conn *c, const unsigned char *p, size_t len)
{
	size_t start = 0, i;

	if (c->kind == KIND_FAULT) {
		if (len % sizeof(struct iommu_hwpt_pgfault))
			goto bad;
		for (i = 0; i < len; i += sizeof(struct iommu_hwpt_pgfault)) {
			uint32_t flags;

			memcpy(&flags, p + i + offsetof(struct iommu_hwpt_pgfault, flags), sizeof(flags));
			if (flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) {
				if (deliver(c, p + start, i + sizeof(struct iommu_hwpt_pgfault) - start) < 0)
					return -1;
				start = i + sizeof(struct iommu_hwpt_pgfault);
			}
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
		if (deliver(c, p + start, n) < 0)
			return -1;
		start += n;
	}
	return 0;
bad:
	errno = EPROTO;
	return -1;
}

/** A text frame: a `write` reply is handed to the waiting write(); notices are dropped (a kernel fd has none). */
static void on_text(struct iopfd_conn *c, const unsigned char *data, size_t len)
{
	char *s = malloc(len + 1), type[32], name[32];
	uint64_t bytes = 0;

	if (!s)
		return;
	memcpy(s, data, len);
	s[len] = 0;
	if (iopfd_json_str(s, "type", type, sizeof(type)) == 0 &&
	    (!strcmp(type, "write") || !strcmp(type, "error"))) {
		pthread_mutex_lock(&c->lock);
		c->reply_errno = 0;
		if (!strcmp(type, "error")) {
			c->reply_bytes = 0;
			c->reply_errno = EIO;
		} else {
			if (iopfd_json_u64(s, "bytes", &bytes) < 0)
				c->reply_errno = EIO;
			c->reply_bytes = (size_t)bytes;
			if (iopfd_json_str(s, "errno", name, sizeof(name)) == 0) {
				int e = iopfd_errno_of_name(name);

				c->reply_errno = e > 0 ? e : EIO;
			}
		}
		c->reply_ready = 1;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->lock);
	}
	free(s);
}

/** Send a frame under the send lock. */
static int conn_send(struct iopfd_conn *c, int op, const void *data, size_t len)
{
	int rc;

	pthread_mutex_lock(&c->tx_lock);
	rc = ws_send(c->tcp, op, data, len);
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

/**
 * handle_frames() - everything complete in the reader.
 * Return: 1 to go on, 0 when the daemon closed the stream, -1 on an error.
 */
static int handle_frames(struct iopfd_conn *c)
{
	struct ws_message m;
	int r;

	while ((r = ws_reader_next(&c->rd, &m)) == 1) {
		switch (m.op) {
		case WS_OP_BINARY:
			if (deliver_frame(c, m.data, m.len) < 0)
				return -1;
			break;
		case WS_OP_TEXT:
			on_text(c, m.data, m.len);
			break;
		case WS_OP_PING:
			conn_send(c, WS_OP_PONG, m.data, m.len);
			break;
		case WS_OP_CLOSE:
			/* Echo the status code (RFC 6455 §5.5.1), then the stream is over. */
			conn_send(c, WS_OP_CLOSE, m.data, m.len >= 2 ? 2 : 0);
			return 0;
		default:
			break;
		}
	}
	ws_reader_compact(&c->rd);
	return r < 0 ? -1 : 1;
}

/** Close the WebSocket from our side: a close frame, then wait (≤ 1 s) for the daemon's. */
static void close_handshake(struct iopfd_conn *c)
{
	static const unsigned char normal[2] = { 0x03, 0xe8 }; /* 1000 */
	struct timespec t0, t;

	if (conn_send(c, WS_OP_CLOSE, normal, sizeof(normal)) < 0)
		return;
	shutdown(c->tcp, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = c->tcp, .events = POLLIN };
		long ms;

		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = 1000 - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms <= 0 || poll(&p, 1, (int)ms) <= 0)
			return;
		if (ws_reader_fill(&c->rd, c->tcp) <= 0)
			return; /* the daemon closed the TCP connection after its close frame */
	}
}

static void *bridge_main(void *arg)
{
	struct iopfd_conn *c = arg;
	int by_program = 0;

	if (handle_frames(c) <= 0) /* frames that came with the hello */
		goto out;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = c->tcp, .events = POLLIN },
			{ .fd = c->br_fd, .events = c->head ? POLLOUT : 0 },
		};
		long r;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & (POLLHUP | POLLERR)) {
			by_program = 1; /* the program closed its end */
			break;
		}
		if ((p[1].revents & POLLOUT) && pending_flush(c) < 0) {
			by_program = 1;
			break;
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		r = ws_reader_fill(&c->rd, c->tcp);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0 || handle_frames(c) <= 0)
			break;
	}
out:
	if (by_program)
		close_handshake(c);
	conn_end(c);
	sys_close(c->tcp);
	sys_close(c->br_fd); /* the program reads what waits, then EOF */
	c->tcp = c->br_fd = -1;
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

/** Open a stream of @kind at @path and make its fd. */
static int open_stream(enum iopfd_kind kind, const char *url, const char *path, const char *token,
		       const char *subprotocol)
{
	struct iopfd_url u;
	struct iopfd_conn *c;
	int sv[2], err, sndbuf = PAIR_SNDBUF;
	sigset_t all, saved;

	if (iopfd_url_parse(url, &u) < 0)
		return -1;
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return -1;
	}
	c->kind = kind;
	c->app_fd = c->br_fd = c->tcp = -1;
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
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	c->app_fd = sv[0];
	c->br_fd = sv[1];
	if (getenv("IOPFD_SNDBUF"))
		sndbuf = atoi(getenv("IOPFD_SNDBUF"));
	setsockopt(c->br_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
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
 * conn_read() - whole packets (groups, events) while the next one fits in
 * the room left: the first blocks unless the fd is O_NONBLOCK, later ones
 * never wait. 0 when the first does not fit (as the kernel) or at the end
 * of the stream.
 */
static ssize_t conn_read(struct iopfd_conn *c, void *buf, size_t count)
{
	size_t done = 0;
	int first = 1;

	if (c->kind == KIND_FAULT && count % sizeof(struct iommu_hwpt_pgfault)) {
		errno = ESPIPE;
		return -1;
	}
	if (count == 0)
		return 0;
	pthread_mutex_lock(&c->rd_lock);
	for (;; first = 0) {
		ssize_t n = recv(c->app_fd, NULL, 0, MSG_PEEK | MSG_TRUNC | (first ? 0 : MSG_DONTWAIT));

		if (n < 0) {
			if (first) {
				int e = errno;

				pthread_mutex_unlock(&c->rd_lock);
				errno = e;
				return -1;
			}
			break;
		}
		if (n == 0 || (size_t)n > count - done)
			break;
		n = recv(c->app_fd, (char *)buf + done, (size_t)n, MSG_DONTWAIT);
		if (n <= 0)
			break;
		done += (size_t)n;
		if (done == count)
			break;
	}
	pthread_mutex_unlock(&c->rd_lock);
	return (ssize_t)done;
}

/** One chunk of responses: a frame, then the daemon's reply. */
static ssize_t write_chunk(struct iopfd_conn *c, const void *buf, size_t len)
{
	ssize_t ret;

	pthread_mutex_lock(&c->lock);
	c->reply_ready = 0;
	if (c->ended) {
		pthread_mutex_unlock(&c->lock);
		errno = EIO;
		return -1;
	}
	pthread_mutex_unlock(&c->lock);
	if (conn_send(c, WS_OP_BINARY, buf, len) < 0) {
		errno = EIO;
		return -1;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->reply_ready && !c->ended)
		pthread_cond_wait(&c->cv, &c->lock);
	if (!c->reply_ready) {
		pthread_mutex_unlock(&c->lock);
		errno = EIO;
		return -1;
	}
	if (c->reply_bytes > len) {
		c->reply_bytes = len;
		c->reply_errno = c->reply_errno ? c->reply_errno : EIO;
	}
	/* As iommufd_fault_fops_write(): the bytes consumed, or the errno when none were. */
	if (c->reply_bytes == 0 && c->reply_errno) {
		errno = c->reply_errno;
		ret = -1;
	} else {
		ret = (ssize_t)c->reply_bytes;
		if (c->reply_errno)
			errno = c->reply_errno; /* for a caller that looks: why it stopped */
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static ssize_t conn_write(struct iopfd_conn *c, const void *buf, size_t count)
{
	size_t done = 0;

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
	while (done < count) {
		size_t len = count - done > WRITE_CHUNK ? WRITE_CHUNK : count - done;
		ssize_t r = write_chunk(c, (const char *)buf + done, len);

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
