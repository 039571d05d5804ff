/* SPDX-License-Identifier: MIT */
/*
 * veventq-read - read a vEVENTQ through the fd iopfd_veventq_fd() returns,
 * as a VMM reads the fd of IOMMU_VEVENTQ_ALLOC.
 *
 *   veventq-read URL CTX TOKEN VEVENTQ_ID COUNT
 *
 * Prints "ready", then, when the first event is waiting, the results of
 * reads too small for it ("small N BYTES": 7 bytes, then 39 bytes: 0, as
 * iommufd_veventq_fops_read() returns when the next event does not fit),
 * then one line per record until COUNT records were read:
 *   "vevent seq=S flags=F" and, unless it is the LOST_EVENTS header,
 *   " id=0xID sid=0xSID addr=0xADDR" (struct iommu_vevent_arm_smmuv3),
 * then "write R ERRNO" (a vEVENTQ fd has no write) and "done".
 * Exit 1 with "FAIL ..." when a read fails or returns a partial record.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iopfd.h"

/* The kernel's struct iommufd_vevent_header and struct iommu_vevent_arm_smmuv3. */
struct vevent_header {
	uint32_t flags;
	uint32_t sequence;
};
#define VEVENTQ_FLAG_LOST_EVENTS (1U << 0)
struct vevent_arm_smmuv3 {
	uint64_t evt[4];
};
_Static_assert(sizeof(struct vevent_header) == 8, "iommufd_vevent_header");
_Static_assert(sizeof(struct vevent_arm_smmuv3) == 32, "iommu_vevent_arm_smmuv3");

static void fail(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

static void wait_in(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 60000) != 1 || !(p.revents & POLLIN)) {
		errno = ETIMEDOUT;
		fail("poll");
	}
}

int main(int argc, char **argv)
{
	unsigned char buf[4096];
	unsigned count, seen = 0;
	ssize_t r;
	int fd;

	if (argc != 6)
		return 64;
	setvbuf(stdout, NULL, _IOLBF, 0);
	count = (unsigned)strtoul(argv[5], NULL, 0);
	fd = iopfd_veventq_fd(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), argv[3], (uint32_t)strtoul(argv[4], NULL, 0));
	if (fd < 0)
		fail("iopfd_veventq_fd");
	printf("ready\n");
	wait_in(fd);
	printf("small 7 %zd\n", read(fd, buf, 7));
	printf("small 39 %zd\n", read(fd, buf, 39));
	while (seen < count) {
		size_t off = 0;

		wait_in(fd);
		r = read(fd, buf, sizeof(buf));
		if (r < 0)
			fail("read");
		while (off < (size_t)r) {
			struct vevent_header h;
			struct vevent_arm_smmuv3 e;

			if ((size_t)r - off < sizeof(h)) {
				errno = EPROTO;
				fail("partial header");
			}
			memcpy(&h, buf + off, sizeof(h));
			off += sizeof(h);
			seen++;
			printf("vevent seq=%u flags=%u", h.sequence, h.flags);
			if (!(h.flags & VEVENTQ_FLAG_LOST_EVENTS)) {
				if ((size_t)r - off < sizeof(e)) {
					errno = EPROTO;
					fail("partial event");
				}
				memcpy(&e, buf + off, sizeof(e));
				off += sizeof(e);
				printf(" id=0x%x sid=0x%x addr=0x%llx", (unsigned)(e.evt[0] & 0xff), (unsigned)(e.evt[0] >> 32),
				       (unsigned long long)e.evt[2]);
			}
			printf("\n");
		}
	}
	errno = 0;
	r = write(fd, buf, 8);
	printf("write %zd %d\n", r, r < 0 ? errno : 0);
	if (close(fd) < 0)
		fail("close");
	printf("done\n");
	return 0;
}
