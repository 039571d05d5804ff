/* SPDX-License-Identifier: MIT */
/*
 * fd-semantics - check a libiopfd fd against the fault fd's semantics.
 *
 *   fd-semantics URL CTX TOKEN FAULT_ID
 *
 * Step by step, with the node test (test/native/native.test.ts) injecting
 * page requests between the steps: it prints "step NAME" before waiting for
 * the test, "ok NAME" per check, and "FAIL NAME: ..." (exit 1) on the first
 * check that does not hold. The test injects, on "step inject", one
 * one-page group and then one two-page group, and checks the device's
 * responses at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iopfd.h"

static int failed;

#define CHECK(name, cond, ...)                                     \
	do {                                                        \
		if (cond) {                                         \
			printf("ok %s\n", name);                    \
		} else {                                            \
			printf("FAIL %s: ", name);                  \
			printf(__VA_ARGS__);                        \
			printf("\n");                               \
			failed = 1;                                 \
		}                                                   \
		fflush(stdout);                                     \
		if (failed)                                         \
			exit(1);                                    \
	} while (0)

/** poll() @fd for @ms; the revents. */
static short poll_in(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0 ? p.revents : 0;
}

int main(int argc, char **argv)
{
	struct iommu_hwpt_pgfault recs[4];
	struct iommu_hwpt_page_response resp[2];
	char line[64];
	ssize_t r;
	uint32_t c1, c2;
	int fd;

	if (argc != 5)
		return 64;
	fd = iopfd_fault_fd(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), argv[3], (uint32_t)strtoul(argv[4], NULL, 0));
	CHECK("open", fd >= 0, "iopfd_fault_fd: %s", strerror(errno));
	CHECK("is_fd", iopfd_is_fd(fd) && !iopfd_is_fd(0), "iopfd_is_fd");
	errno = 0;
	CHECK("veventq-enoent", iopfd_veventq_fd(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), argv[3], 999999) < 0 && errno == ENOENT,
	      "iopfd_veventq_fd of no vEVENTQ: errno %d", errno);

	/* Nothing waiting: not readable; a non-blocking read is EAGAIN. */
	CHECK("no-pollin", !(poll_in(fd, 50) & POLLIN), "POLLIN with nothing queued");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	errno = 0;
	r = read(fd, recs, sizeof(recs[0]));
	CHECK("eagain", r < 0 && errno == EAGAIN, "read returned %zd errno %d", r, errno);
	errno = 0;
	r = read(fd, recs, 39);
	CHECK("espipe-read", r < 0 && errno == ESPIPE, "read(39) returned %zd errno %d", r, errno);

	printf("step inject\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);

	/* Two groups waiting (1 page, then 2 pages). */
	CHECK("pollin", poll_in(fd, 5000) & POLLIN, "no POLLIN with groups queued");
	r = read(fd, recs, sizeof(recs[0]));
	CHECK("read-one-group", r == 40 && (recs[0].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE), "read(40) returned %zd", r);
	c1 = recs[0].cookie;
	CHECK("pollin-second", poll_in(fd, 5000) & POLLIN, "no POLLIN with the second group queued");
	r = read(fd, recs, sizeof(recs[0]));
	CHECK("read-too-small", r == 0, "read(40) of a 2-page group returned %zd (the kernel returns 0)", r);
	r = read(fd, recs, sizeof(recs));
	CHECK("read-two-pages", r == 80 && recs[0].cookie == recs[1].cookie && !(recs[0].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) &&
				(recs[1].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) && recs[1].addr == recs[0].addr + 0x1000,
	      "read(160) returned %zd", r);
	c2 = recs[0].cookie;
	CHECK("no-pollin-after", !(poll_in(fd, 50) & POLLIN), "POLLIN after every group was read");

	/* write(): ESPIPE, a bad code (cookie stays valid), stop at the first bad entry, stale cookie. */
	errno = 0;
	r = write(fd, resp, 7);
	CHECK("espipe-write", r < 0 && errno == ESPIPE, "write(7) returned %zd errno %d", r, errno);
	resp[0].cookie = c1;
	resp[0].code = 5;
	errno = 0;
	r = write(fd, resp, 8);
	CHECK("bad-code", r < 0 && errno == EINVAL, "write(code 5) returned %zd errno %d", r, errno);
	resp[0].cookie = c1;
	resp[0].code = IOMMUFD_PAGE_RESP_SUCCESS;
	resp[1].cookie = c1 + c2 + 1000;
	resp[1].code = IOMMUFD_PAGE_RESP_SUCCESS;
	r = write(fd, resp, 16);
	CHECK("stop-at-bad", r == 8, "write(good, unknown) returned %zd", r);
	resp[0].cookie = c1;
	errno = 0;
	r = write(fd, resp, 8);
	CHECK("stale", r < 0 && errno == EINVAL, "write(answered cookie) returned %zd errno %d", r, errno);
	resp[0].cookie = c2;
	resp[0].code = IOMMUFD_PAGE_RESP_INVALID;
	r = write(fd, resp, 8);
	CHECK("invalid", r == 8, "write(c2 INVALID) returned %zd", r);
	r = write(fd, resp, 0);
	CHECK("write-zero", r == 0, "write(0) returned %zd", r);
	CHECK("close", close(fd) == 0 && !iopfd_is_fd(fd), "close");
	printf("end\n");
	return 0;
}
