/* SPDX-License-Identifier: MIT */
/*
 * write-paths - libiopfd's write() paths: pipelined, synchronous, refused.
 *
 *   write-paths URL CTX TOKEN FAULT_ID burst|burst-exit N
 *   write-paths URL CTX TOKEN FAULT_ID paths
 *   write-paths URL CTX TOKEN FAULT_ID expire
 *
 * Driven by test/native/native.test.ts, which injects one-page groups with
 * grpids 1, 2, ... on "step inject" and reads the device's responses at
 * the end. Prints "ok NAME" per check, "FAIL NAME: ..." (exit 1) on the
 * first that does not hold, "end" when done.
 *
 * - burst: read N groups, answer each with its own write() (pipelined: it
 *   returns before the daemon confirms), close() at once: the device must
 *   get every answer (close() waits for the replies). burst-exit: the
 *   same, then exit() without close() (libiopfd's exit handler waits).
 * - paths: two fds on one queue; A reads groups 1-7. A cookie never
 *   delivered after good entries returns the good bytes (EINVAL: the
 *   daemon's verdict, synchronous); a bad code after a good entry returns
 *   the good bytes (EINVAL, local); a cookie twice in one
 *   write() stops at the second; a double answer is EINVAL (synchronous
 *   path, the daemon's verdict); B answers group 3 (a cookie B never read:
 *   synchronous, accepted); A then answers 3 and 4 in one write(): A's map
 *   still has 3, the write() is pipelined and returns 16, the daemon
 *   refuses 3, the bridge sends 4 again, and a later write() on A fails
 *   once with EIO (the sticky error); A closes holding group 5, which B
 *   answers without reading it (it is redelivered to B).
 * - expire: on a queue with a response timeout, read group 1 and wait
 *   past the timeout: the `expired` notice takes the cookie out of the map,
 *   so the late answer gets the daemon's exact EINVAL at once, and no
 *   sticky error follows.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iopfd.h"

#define CHECK(name, cond, ...)                                     \
	do {                                                        \
		if (cond) {                                         \
			printf("ok %s\n", name);                    \
			fflush(stdout);                             \
		} else {                                            \
			printf("FAIL %s: ", name);                  \
			printf(__VA_ARGS__);                        \
			printf("\n");                               \
			fflush(stdout);                             \
			exit(1);                                    \
		}                                                   \
	} while (0)

/** Wait for the test's go-ahead after @what. */
static void step(const char *what)
{
	char line[64];

	printf("step %s\n", what);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		exit(1);
}

/** Read @n one-page groups from @fd (blocking); their cookies by grpid (1..n) into @cookie. */
static void read_groups(int fd, unsigned int n, uint32_t *cookie)
{
	struct iommu_hwpt_pgfault recs[64];
	unsigned int got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r, i;

		CHECK("read-poll", poll(&p, 1, 10000) == 1, "no group within 10 s (%u of %u)", got, n);
		r = read(fd, recs, sizeof(recs));
		CHECK("read", r > 0 && r % 40 == 0, "read returned %zd errno %d", r, errno);
		for (i = 0; i < r / 40; i++) {
			CHECK("read-one-page", (recs[i].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) && recs[i].grpid >= 1 && recs[i].grpid <= n,
			      "record grpid %u flags %u", recs[i].grpid, recs[i].flags);
			cookie[recs[i].grpid] = recs[i].cookie;
			got++;
		}
	}
}

static ssize_t answer(int fd, uint32_t c0, uint32_t code0, uint32_t c1, uint32_t code1, size_t n)
{
	struct iommu_hwpt_page_response r[2] = { { c0, code0 }, { c1, code1 } };

	errno = 0;
	return write(fd, r, n * sizeof(r[0]));
}

static int open_fd(char **argv)
{
	int fd = iopfd_fault_fd(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), argv[3], (uint32_t)strtoul(argv[4], NULL, 0));

	CHECK("open", fd >= 0, "iopfd_fault_fd: %s", strerror(errno));
	return fd;
}

static void burst(char **argv, unsigned int n, int do_close)
{
	uint32_t cookie[1025];
	unsigned int i;
	int fd = open_fd(argv);

	if (n > 1024)
		exit(64);
	step("inject");
	read_groups(fd, n, cookie);
	for (i = 1; i <= n; i++) {
		struct iommu_hwpt_page_response r = { cookie[i], IOMMUFD_PAGE_RESP_SUCCESS };
		ssize_t w = write(fd, &r, sizeof(r));

		if (w != (ssize_t)sizeof(r))
			CHECK("burst-write", 0, "write %u returned %zd errno %d", i, w, errno);
	}
	CHECK("burst-writes", 1, "%s", "");
	if (do_close)
		CHECK("burst-close", close(fd) == 0, "close: %s", strerror(errno));
	/* else exit() with the fd open: libiopfd's exit handler waits for the replies. */
}

static void paths(char **argv)
{
	uint32_t c[8];
	struct timespec t0, t;
	ssize_t r;
	int a = open_fd(argv), b;

	step("inject");
	read_groups(a, 7, c);
	b = open_fd(argv);

	{
		/* Good entries, then a cookie never delivered: the daemon's verdict (synchronous), the good bytes. */
		struct iommu_hwpt_page_response r3[3] = {
			{ c[6], IOMMUFD_PAGE_RESP_SUCCESS }, { c[7], IOMMUFD_PAGE_RESP_SUCCESS }, { 0xfffff0u, IOMMUFD_PAGE_RESP_SUCCESS },
		};

		errno = 0;
		r = write(a, r3, sizeof(r3));
		CHECK("bad-cookie-after-good", r == 16 && errno == EINVAL, "write(c6, c7, unknown) returned %zd errno %d", r, errno);
	}

	r = answer(a, c[1], IOMMUFD_PAGE_RESP_SUCCESS, c[2], 7, 2);
	CHECK("good-then-bad-code", r == 8 && errno == EINVAL, "write(c1, c2 code 7) returned %zd errno %d", r, errno);
	r = answer(a, c[2], IOMMUFD_PAGE_RESP_SUCCESS, c[2], IOMMUFD_PAGE_RESP_SUCCESS, 2);
	CHECK("twice-in-one-write", r == 8 && errno == EINVAL, "write(c2, c2) returned %zd errno %d", r, errno);
	r = answer(a, c[1], IOMMUFD_PAGE_RESP_SUCCESS, 0, 0, 1);
	CHECK("double-answer", r < 0 && errno == EINVAL, "write(c1 again) returned %zd errno %d", r, errno);
	r = answer(b, c[3], IOMMUFD_PAGE_RESP_INVALID, 0, 0, 1);
	CHECK("other-fd", r == 8, "write(c3) on the other fd returned %zd errno %d", r, errno);
	r = answer(a, c[3], IOMMUFD_PAGE_RESP_SUCCESS, c[4], IOMMUFD_PAGE_RESP_SUCCESS, 2);
	CHECK("refused-later", r == 16, "write(c3, c4) on A returned %zd errno %d (pipelined: 16)", r, errno);
	/* A bad code is refused locally (EINVAL) until the daemon's refusal of c3 arrives: then EIO, once. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		r = answer(a, c[5], 9, 0, 0, 1);
		if (r < 0 && errno == EIO)
			break;
		CHECK("sticky-wait", r < 0 && errno == EINVAL, "write(code 9) returned %zd errno %d", r, errno);
		clock_gettime(CLOCK_MONOTONIC, &t);
		CHECK("sticky-in-time", t.tv_sec - t0.tv_sec < 10, "no EIO within 10 s");
		usleep(2000);
	}
	CHECK("sticky-eio", 1, "%s", "");
	r = answer(a, c[5], 9, 0, 0, 1);
	CHECK("sticky-once", r < 0 && errno == EINVAL, "the write() after the EIO returned %zd errno %d", r, errno);
	/* A closes holding group 5: redelivered to B, which answers it unread (its map does not know it: synchronous). */
	CHECK("close-a", close(a) == 0, "close(A): %s", strerror(errno));
	r = answer(b, c[5], IOMMUFD_PAGE_RESP_SUCCESS, 0, 0, 1);
	CHECK("after-redelivery", r == 8, "write(c5) on B returned %zd errno %d", r, errno);
	CHECK("close-b", close(b) == 0, "close(B): %s", strerror(errno));
}

static void expire(char **argv)
{
	uint32_t c[2];
	ssize_t r;
	int fd = open_fd(argv);

	step("inject");
	read_groups(fd, 1, c);
	step("expired"); /* the test waits until the daemon's timeout answered it */
	r = answer(fd, c[1], IOMMUFD_PAGE_RESP_SUCCESS, 0, 0, 1);
	CHECK("late-answer", r < 0 && errno == EINVAL, "write(expired c1) returned %zd errno %d", r, errno);
	usleep(100000);
	r = answer(fd, c[1], 9, 0, 0, 1);
	CHECK("no-sticky", r < 0 && errno == EINVAL, "write(code 9) returned %zd errno %d", r, errno);
	CHECK("close", close(fd) == 0, "close: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	if (argc >= 7 && (!strcmp(argv[5], "burst") || !strcmp(argv[5], "burst-exit")))
		burst(argv, (unsigned int)strtoul(argv[6], NULL, 0), !strcmp(argv[5], "burst"));
	else if (argc == 6 && !strcmp(argv[5], "paths"))
		paths(argv);
	else if (argc == 6 && !strcmp(argv[5], "expire"))
		expire(argv);
	else
		return 64;
	printf("end\n");
	return 0;
}
