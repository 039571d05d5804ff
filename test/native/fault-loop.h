/* SPDX-License-Identifier: MIT */
/*
 * DOC: fault-loop.h - an epoll serve loop over an iommufd fault fd
 *
 * Shared by the native test programs (lib-handler.c, which opens its fault
 * fd with libiopfd, and uapi-vmm.c, which gets it from
 * IOMMU_FAULT_QUEUE_ALLOC, under the preload shim or a real kernel) and by
 * the C example handler. It is written only against the kernel's uAPI: the
 * two structs below are this program's own copies of <linux/iommufd.h>'s,
 * checked byte for byte by _Static_assert on size and every offset, so the
 * program builds on a host whose kernel headers predate them.
 *
 * fault_loop_run() reads whole groups (a read() of a multiple of 40 bytes
 * returns whole groups of struct iommu_hwpt_pgfault records, as
 * iommufd_fault_fops_read() does), decides a code per group, and answers a
 * batch of groups with one write() of struct iommu_hwpt_page_response
 * entries (iommufd_fault_fops_write()), checking that every byte was
 * consumed. One line per group goes to @log:
 *
 *   group cookie=C dev_id=D pasid=P grpid=G addr=0xA pages=N code=success|invalid
 *   held cookie=C ...                (read, deliberately never answered)
 *
 * and "eof" when the fd reports end of stream (the daemon closed it; a
 * kernel fault fd never does). A program killed while it holds groups loses
 * nothing: closing the fault fd hands them back (the daemon redelivers, the
 * kernel answers them on release).
 */
#ifndef IOPFD_TEST_FAULT_LOOP_H
#define IOPFD_TEST_FAULT_LOOP_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* ---- the kernel's uAPI (include/uapi/linux/iommufd.h), our own copies ---- */

/*
 * The same guard as iopfd.h's, so a program may include both; a program
 * that includes <linux/iommufd.h> (new enough to have the fault queue)
 * defines IOMMU_FAULT_QUEUE_ALLOC and gets the kernel's definitions.
 */
#if !defined(IOPFD_UAPI_PGFAULT_DEFINED) && !defined(IOMMU_FAULT_QUEUE_ALLOC)
#define IOPFD_UAPI_PGFAULT_DEFINED 1

/**
 * enum iommu_hwpt_pgfault_flags - flags of struct iommu_hwpt_pgfault
 * @IOMMU_PGFAULT_FLAGS_PASID_VALID: the pasid field is valid
 * @IOMMU_PGFAULT_FLAGS_LAST_PAGE: the last record of a group
 */
enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = (1 << 0),
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = (1 << 1),
};

/**
 * enum iommu_hwpt_pgfault_perm - perm bits of struct iommu_hwpt_pgfault
 */
enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = (1 << 0),
	IOMMU_PGFAULT_PERM_WRITE = (1 << 1),
	IOMMU_PGFAULT_PERM_EXEC = (1 << 2),
	IOMMU_PGFAULT_PERM_PRIV = (1 << 3),
};

/**
 * struct iommu_hwpt_pgfault - one page request, as read() from a fault fd
 * @flags: IOMMU_PGFAULT_FLAGS_*
 * @dev_id: the device's object id
 * @pasid: the PASID, valid with IOMMU_PGFAULT_FLAGS_PASID_VALID
 * @grpid: the page request group index
 * @perm: IOMMU_PGFAULT_PERM_*
 * @__reserved: must be 0
 * @addr: the faulting page address
 * @length: 0
 * @cookie: names the group in the response; the same on all its records
 */
struct iommu_hwpt_pgfault {
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pasid;
	uint32_t grpid;
	uint32_t perm;
	uint32_t __reserved;
	uint64_t addr;
	uint32_t length;
	uint32_t cookie;
};

/**
 * enum iommufd_page_response_code - response code of a page request group
 */
enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/**
 * struct iommu_hwpt_page_response - one response, as write() to a fault fd
 * @cookie: the group's cookie
 * @code: enum iommufd_page_response_code
 */
struct iommu_hwpt_page_response {
	uint32_t cookie;
	uint32_t code;
};
#endif

_Static_assert(sizeof(struct iommu_hwpt_pgfault) == 40, "iommu_hwpt_pgfault size");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, flags) == 0, "pgfault.flags");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, dev_id) == 4, "pgfault.dev_id");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, pasid) == 8, "pgfault.pasid");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, grpid) == 12, "pgfault.grpid");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, perm) == 16, "pgfault.perm");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, __reserved) == 20, "pgfault.__reserved");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, addr) == 24, "pgfault.addr");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, length) == 32, "pgfault.length");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, cookie) == 36, "pgfault.cookie");
_Static_assert(sizeof(struct iommu_hwpt_page_response) == 8, "iommu_hwpt_page_response size");
_Static_assert(offsetof(struct iommu_hwpt_page_response, cookie) == 0, "page_response.cookie");
_Static_assert(offsetof(struct iommu_hwpt_page_response, code) == 4, "page_response.code");

/* ---- the serve loop -------------------------------------------------------- */

/** Records one read() asks for (a multiple of 40 bytes; a larger group is an error). */
#define FAULT_LOOP_RECORDS 512

/**
 * struct fault_loop_config - how fault_loop_run() answers
 * @invalid_mask: a group whose first record's addr has any of these bits
 *   set is answered IOMMUFD_PAGE_RESP_INVALID, any other SUCCESS...
 * @invalid_above: ...unless this is non-zero and the addr is at or above
 *   it: INVALID too.
 * @answer_limit: answer this many groups, then read and hold every later
 *   group without answering it ("held" lines); < 0: no limit.
 * @stop_after: return 0 once this many groups were answered; < 0: never
 *   (run until end of stream).
 * @log: one line per group, or NULL for none (benchmarks).
 */
struct fault_loop_config {
	uint64_t invalid_mask;
	uint64_t invalid_above;
	long answer_limit;
	long stop_after;
	FILE *log;
};

/**
 * struct fault_loop_stats - what fault_loop_run() did
 * @groups: groups answered
 * @invalid: of which answered INVALID
 * @held: groups read and not answered
 * @records: records read
 * @writes: write() calls made
 */
struct fault_loop_stats {
	unsigned long groups, invalid, held, records, writes;
};

static inline void fault_loop_log_group(FILE *log, const char *what,
					const struct iommu_hwpt_pgfault *first,
				 unsigned int pages, const char *code)
{
	if (!log)
		return;
	fprintf(log, "%s cookie=%" PRIu32 " dev_id=%" PRIu32 " pasid=%" PRIu32
		" grpid=%" PRIu32 " addr=0x%" PRIx64 " pages=%u%s%s\n",
		what, first->cookie, first->dev_id,
		(first->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? first->pasid : 0,
		first->grpid, (uint64_t)first->addr, pages,
		code ? " code=" : "", code ? code : "");
	fflush(log);
}

/**
 * fault_loop_run() - serve the fault fd @fd until end of stream or
 * @cfg->stop_after groups.
 * @fd: the fault fd; made O_NONBLOCK here.
 * @cfg: the policy.
 * @stats: filled with counts (may be NULL).
 *
 * Return: 0 at end of stream or after stop_after groups, -1 on an error
 * (reported on stderr: a read or write that failed, a short write, a
 * record that breaks the group rules).
 */
static inline int fault_loop_run(int fd, const struct fault_loop_config *cfg,
			  struct fault_loop_stats *stats)
{
	static struct iommu_hwpt_pgfault recs[FAULT_LOOP_RECORDS];
	static struct iommu_hwpt_page_response resp[FAULT_LOOP_RECORDS];
	struct fault_loop_stats st;
	struct epoll_event ev;
	int epfd, flags, ret = -1;
	unsigned int empty_reads = 0;

	memset(&st, 0, sizeof(st));
	if (stats)
		*stats = st;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		perror("fault-loop: fcntl");
		return -1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("fault-loop: epoll_create1");
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = fd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("fault-loop: epoll_ctl");
		goto out;
	}

	for (;;) {
		struct epoll_event got;
		size_t n, i, start, nresp = 0;
		ssize_t r;
		int w = epoll_wait(epfd, &got, 1, -1);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			perror("fault-loop: epoll_wait");
			goto out;
		}
		if (w == 0)
			continue;
		r = read(fd, recs, sizeof(recs));
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				continue;
			perror("fault-loop: read");
			goto out;
		}
		if (r == 0) {
			if (got.events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
				if (cfg->log) {
					fprintf(cfg->log, "eof\n");
					fflush(cfg->log);
				}
				ret = 0;
				goto out;
			}
			/*
			 * Readable but nothing read: the kernel's read() returns 0
			 * when another reader took the group, or when the first
			 * group does not fit the buffer; only the latter lasts.
			 */
			if (++empty_reads > 1000) {
				fprintf(stderr, "fault-loop: a group larger than %d records?\n", FAULT_LOOP_RECORDS);
				goto out;
			}
			continue;
		}
		empty_reads = 0;
		if (r % (ssize_t)sizeof(recs[0])) {
			fprintf(stderr, "fault-loop: read %zd bytes, not whole records\n", r);
			goto out;
		}
		n = (size_t)r / sizeof(recs[0]);
		st.records += n;
		for (start = 0, i = 0; i < n; i++) {
			const struct iommu_hwpt_pgfault *first = &recs[start];
			int invalid, hold;

			if (recs[i].cookie != first->cookie || recs[i].__reserved) {
				fprintf(stderr, "fault-loop: record %zu breaks its group (cookie %" PRIu32 " vs %" PRIu32 ")\n",
					i, recs[i].cookie, first->cookie);
				goto out;
			}
			if (!(recs[i].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE))
				continue;
			hold = cfg->answer_limit >= 0 && st.groups >= (unsigned long)cfg->answer_limit;
			invalid = (first->addr & cfg->invalid_mask) != 0 ||
				  (cfg->invalid_above && first->addr >= cfg->invalid_above);
			if (hold) {
				fault_loop_log_group(cfg->log, "held", first, (unsigned int)(i - start + 1), NULL);
				st.held++;
			} else {
				fault_loop_log_group(cfg->log, "group", first, (unsigned int)(i - start + 1),
						     invalid ? "invalid" : "success");
				resp[nresp].cookie = first->cookie;
				resp[nresp].code = invalid ? IOMMUFD_PAGE_RESP_INVALID : IOMMUFD_PAGE_RESP_SUCCESS;
				nresp++;
				st.groups++;
				st.invalid += invalid;
			}
			start = i + 1;
		}
		if (start != n) {
			fprintf(stderr, "fault-loop: read() ended inside a group\n");
			goto out;
		}
		if (nresp) {
			size_t want = nresp * sizeof(resp[0]);

			do
				r = write(fd, resp, want);
			while (r < 0 && errno == EINTR);
			st.writes++;
			if (r < 0) {
				perror("fault-loop: write");
				goto out;
			}
			if ((size_t)r != want) {
				fprintf(stderr, "fault-loop: write consumed %zd of %zu bytes\n", r, want);
				goto out;
			}
		}
		if (cfg->stop_after >= 0 && st.groups >= (unsigned long)cfg->stop_after) {
			ret = 0;
			goto out;
		}
	}
out:
	close(epfd);
	if (stats)
		*stats = st;
	return ret;
}

#endif /* IOPFD_TEST_FAULT_LOOP_H */
