/* SPDX-License-Identifier: MIT */
/*
 * lib-handler - serve an iopfd fault queue through libiopfd.
 *
 *   lib-handler URL CTX TOKEN FAULT_ID [--invalid-mask M] [--answer N]
 *               [--stop-after N] [--sleep-ms N] [--quiet]
 *
 * Opens the queue with iopfd_fault_fd() and serves it with fault-loop.h
 * (plain epoll_wait(), read(), write(), as on a kernel fault fd). Prints
 * "ready" once the fd is open, one line per group (fault-loop.h), and
 * "done groups=G invalid=I held=H records=R writes=W" at the end, after
 * close() (which waits for the daemon to confirm the pipelined answers).
 * --sleep-ms waits that long between "ready" and the first read (a
 * handler that falls behind). A failed
 * open prints "open failed: ENAME" and exits 2.
 *
 * The native test runs it (test/native/native.test.ts); the objects are
 * made by the test over REST.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iopfd.h"
#include "fault-loop.h"

/** The errno names open can fail with, for the test to match. */
static const char *errno_name(int e)
{
	switch (e) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case EACCES: return "EACCES";
	case ENOENT: return "ENOENT";
	case EPROTO: return "EPROTO";
	case EINVAL: return "EINVAL";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENOSPC: return "ENOSPC";
	case ENOMEM: return "ENOMEM";
	default: return "E?";
	}
}

int main(int argc, char **argv)
{
	struct fault_loop_config cfg = { .invalid_mask = 0, .answer_limit = -1, .stop_after = -1, .log = stdout };
	struct fault_loop_stats st;
	long sleep_ms = 0;
	int fd, i, rc;

	if (argc < 5) {
		fprintf(stderr, "usage: %s URL CTX TOKEN FAULT_ID [--invalid-mask M] [--answer N] [--stop-after N] [--sleep-ms N] [--quiet]\n", argv[0]);
		return 64;
	}
	for (i = 5; i < argc; i++) {
		if (!strcmp(argv[i], "--quiet"))
			cfg.log = NULL;
		else if (i + 1 < argc && !strcmp(argv[i], "--invalid-mask"))
			cfg.invalid_mask = strtoull(argv[++i], NULL, 0);
		else if (i + 1 < argc && !strcmp(argv[i], "--answer"))
			cfg.answer_limit = strtol(argv[++i], NULL, 0);
		else if (i + 1 < argc && !strcmp(argv[i], "--stop-after"))
			cfg.stop_after = strtol(argv[++i], NULL, 0);
		else if (i + 1 < argc && !strcmp(argv[i], "--sleep-ms"))
			sleep_ms = strtol(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "%s: unknown argument %s\n", argv[0], argv[i]);
			return 64;
		}
	}
	fd = iopfd_fault_fd(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), argv[3], (uint32_t)strtoul(argv[4], NULL, 0));
	if (fd < 0) {
		printf("open failed: %s\n", errno_name(errno));
		fflush(stdout);
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	if (sleep_ms > 0)
		usleep((useconds_t)sleep_ms * 1000);
	rc = fault_loop_run(fd, &cfg, &st);
	/*
	 * write() returns before the daemon confirms (it is pipelined); close()
	 * waits for the confirmations, so "done" means the daemon has them all.
	 */
	if (close(fd) < 0)
		rc = -1;
	printf("done groups=%lu invalid=%lu held=%lu records=%lu writes=%lu\n", st.groups, st.invalid, st.held, st.records,
	       st.writes);
	fflush(stdout);
	return rc < 0 ? 1 : 0;
}
