/* SPDX-License-Identifier: MIT */
/*
 * c-handler - an iommufd page fault handler on an iopfd fault queue.
 *
 *   IOPFD_URL=http://127.0.0.1:8080 c-handler CTX TOKEN FAULT_ID [INVALID_ABOVE]
 *
 * The fd from iopfd_fault_fd() is used exactly as the fd that
 * IOMMU_FAULT_QUEUE_ALLOC returns: epoll_wait() for POLLIN, read() whole
 * groups of struct iommu_hwpt_pgfault, write() struct
 * iommu_hwpt_page_response entries (test/native/fault-loop.h). Groups
 * whose first page is at or above INVALID_ABOVE (default: none) are
 * answered INVALID, the others SUCCESS. SIGINT/SIGTERM close the fd: the
 * daemon redelivers what was read and not answered. See README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iopfd.h"
#include "fault-loop.h"

static int fault_fd = -1;

/** SIGINT/SIGTERM: close the fault fd; fault_loop_run() then sees the end of the stream. */
static void on_signal(int sig)
{
	(void)sig;
	if (fault_fd >= 0)
		shutdown(fault_fd, SHUT_RDWR);
}

int main(int argc, char **argv)
{
	const char *url = getenv("IOPFD_URL");
	struct fault_loop_config cfg = { .invalid_mask = 0, .answer_limit = -1, .stop_after = -1, .log = stdout };
	struct fault_loop_stats st;
	struct sigaction sa;
	int rc;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: IOPFD_URL=http://HOST:PORT %s CTX TOKEN FAULT_ID [INVALID_ABOVE]\n", argv[0]);
		return 64;
	}
	if (!url)
		url = "http://127.0.0.1:8080";
	if (argc == 5)
		cfg.invalid_above = strtoull(argv[4], NULL, 0);
	fault_fd = iopfd_fault_fd(url, (uint32_t)strtoul(argv[1], NULL, 0), argv[2], (uint32_t)strtoul(argv[3], NULL, 0));
	if (fault_fd < 0) {
		fprintf(stderr, "%s: cannot open fault queue %s at %s: %s\n", argv[0], argv[3], url, strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fprintf(stderr, "serving fault queue %s of context %s (fd %d); Ctrl-C to stop\n", argv[3], argv[1], fault_fd);
	rc = fault_loop_run(fault_fd, &cfg, &st);
	fprintf(stderr, "answered %lu groups (%lu INVALID), %lu records, %lu writes\n", st.groups, st.invalid, st.records,
		st.writes);
	close(fault_fd);
	return rc < 0 ? 1 : 0;
}
