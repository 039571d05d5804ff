/* SPDX-License-Identifier: MIT */
/*
 * DOC: libiopfd.h - libiopfd's hooks for whoever interposes read/write/close
 *
 * libiopfd-interpose.c (linked into libiopfd) and the preload shim call
 * these from their read()/write()/close(): each returns 1 when @fd is an
 * iopfd fd and the call was made (its result in *@ret, errno set), 0 when
 * it is not (the caller forwards to libc).
 */
#ifndef IOPFD_LIBIOPFD_H
#define IOPFD_LIBIOPFD_H

#include <stddef.h>
#include <sys/types.h>

#include "http.h"

/** iopfd_open_count - iopfd fds open in this process (a fast path for interposers: 0 → not ours). */
IOPFD_HIDDEN extern volatile int iopfd_open_count;

IOPFD_HIDDEN int iopfd__read(int fd, void *buf, size_t count, ssize_t *ret);
IOPFD_HIDDEN int iopfd__write(int fd, const void *buf, size_t count, ssize_t *ret);
IOPFD_HIDDEN int iopfd__close(int fd, int *ret);

#endif /* IOPFD_LIBIOPFD_H */
