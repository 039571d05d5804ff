/* SPDX-License-Identifier: MIT */
/*
 * DOC: libiopfd-interpose.c - read(), write() and close() for iopfd fds
 *
 * A program written against the kernel's fault fd calls plain read(),
 * write() and close(). libiopfd defines those symbols: for an iopfd fd they
 * apply the fault fd's semantics (libiopfd.c), for every other fd they
 * forward to the next definition (libc's), found with dlsym(RTLD_NEXT).
 * __read_chk is defined too: with _FORTIFY_SOURCE (the default of many
 * distributions' compilers when optimising) a read() into a buffer of known
 * size is compiled as a call to it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libiopfd.h"

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*close_fn)(int);
typedef ssize_t (*read_chk_fn)(int, void *, size_t, size_t);

/** The next definition of @name, or NULL (a static program: the raw syscall is used). */
static void *next_sym(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

IOPFD_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	static read_fn next;
	ssize_t ret;

	if (iopfd_open_count && iopfd__read(fd, buf, count, &ret))
		return ret;
	if (!next)
		next = (read_fn)next_sym("read");
	return next ? next(fd, buf, count) : (ssize_t)syscall(SYS_read, fd, buf, count);
}

IOPFD_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	static read_chk_fn next;
	ssize_t ret;

	if (count <= buflen && iopfd_open_count && iopfd__read(fd, buf, count, &ret))
		return ret;
	if (!next)
		next = (read_chk_fn)next_sym("__read_chk");
	if (next)
		return next(fd, buf, count, buflen);
	if (count > buflen)
		abort();
	return (ssize_t)syscall(SYS_read, fd, buf, count);
}

IOPFD_EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	static write_fn next;
	ssize_t ret;

	if (iopfd_open_count && iopfd__write(fd, buf, count, &ret))
		return ret;
	if (!next)
		next = (write_fn)next_sym("write");
	return next ? next(fd, buf, count) : (ssize_t)syscall(SYS_write, fd, buf, count);
}

IOPFD_EXPORT int close(int fd)
{
	static close_fn next;
	int ret;

	if (iopfd_open_count && iopfd__close(fd, &ret))
		return ret;
	if (!next)
		next = (close_fn)next_sym("close");
	return next ? next(fd) : (int)syscall(SYS_close, fd);
}
