/* SPDX-License-Identifier: MIT */
/*
 * DOC: iopfd-preload.so - the kernel's iommufd/VFIO cdev uAPI over iopfd
 *
 *   LD_PRELOAD=.../iopfd-preload.so IOPFD_URL=http://127.0.0.1:8080 ./vmm
 *
 * runs a program written against the real kernel uAPI, unmodified:
 *
 * - open("/dev/iommu") creates a context (POST /v1/contexts) and returns a
 *   descriptor standing for it; open("/dev/vfio/devices/NAME") names the
 *   platform device NAME (ENOENT when the daemon has none, checked when the
 *   platform is readable: IOPFD_ADMIN_TOKEN, or a daemon without one).
 * - ioctl() on those descriptors is decoded as the kernel does
 *   (iommufd_fops_ioctl(): the size in the first u32, EINVAL below the
 *   command's first version, E2BIG for a non-zero byte past what the kernel
 *   knows, the struct copied back up to the caller's size; the vfio cdev
 *   handlers' argsz rules) and becomes one REST call; the daemon's errno is
 *   the ioctl's.
 * - IOMMU_FAULT_QUEUE_ALLOC's out_fault_fd is a libiopfd fault fd (its
 *   read(), write(), poll() and close() are libiopfd's, linked in here).
 * - The context lives while anything holds it, as the kernel's file
 *   references do: the /dev/iommu descriptor, the devices bound to it and
 *   its fault fds. When the last goes the context is released (DELETE), and
 *   a watchdog process releases it when the program dies without closing
 *   them (the kernel closes a dead process's files), so the daemon answers
 *   its outstanding groups INVALID as the kernel does.
 *
 * Every other descriptor, path and ioctl passes through to libc untouched.
 * clients/c/README.md lists what is exact and what is approximate.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "iopfd.h"
#include "preload-uapi.h"

#define PF_EXPORT __attribute__((visibility("default")))

/* ---- libc's entry points ------------------------------------------------- */

static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_dup)(int);
static int (*real_dup3)(int, int, int);
static int (*real_dup2)(int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static pthread_once_t pf_once = PTHREAD_ONCE_INIT;

static void pf_resolve(void)
{
	real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
	real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
	real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	real_dup = (int (*)(int))dlsym(RTLD_NEXT, "dup");
	real_dup2 = (int (*)(int, int))dlsym(RTLD_NEXT, "dup2");
	real_dup3 = (int (*)(int, int, int))dlsym(RTLD_NEXT, "dup3");
	real_fcntl = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
	real_fcntl64 = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl64");
}

static void pf_init(void)
{
	pthread_once(&pf_once, pf_resolve);
}

/* ---- the objects behind the emulated descriptors ---------------------- */

/**
 * struct pf_ctx - one context (the kernel's struct iommufd_ctx)
 * @id: the context id
 * @token: its token
 * @refs: the files holding it (the /dev/iommu file, bound device files,
 *   fault fds), as the kernel's context references
 * @watch_fd: the program's end of the socket pair the watchdog waits on
 * @next_iova: where IOMMU_IOAS_MAP without FIXED_IOVA tries next
 */
struct pf_ctx {
	uint32_t id;
	char token[128];
	int refs;
	int watch_fd;
	uint64_t next_iova;
};

enum pf_kind { PF_IOMMUFD = 1, PF_DEVICE, PF_FAULT };

#define PF_MAX_PASIDS 64

/**
 * struct pf_file - one open file (dup()ed descriptors share it)
 * @kind: what it emulates
 * @fdrefs: descriptors naming it, and ioctls running on it
 * @ctx: the context (IOMMUFD, FAULT, a bound DEVICE)
 * @name: DEVICE: the platform device's name
 * @bound: DEVICE: VFIO_DEVICE_BIND_IOMMUFD done (the kernel's access_granted)
 * @dev_id: DEVICE: its object id
 * @rid_attached: DEVICE: the RID is attached (a new attach replaces)
 * @pasids: DEVICE: the PASIDs attached
 * @npasids: their number
 * @fault_id: FAULT: the fault queue's (or the vEVENTQ's) object id
 */
struct pf_file {
	enum pf_kind kind;
	int fdrefs;
	struct pf_ctx *ctx;
	char name[72];
	bool bound;
	uint32_t dev_id;
	bool rid_attached;
	uint32_t pasids[PF_MAX_PASIDS];
	unsigned int npasids;
	uint32_t fault_id;
};

/* pf_lock guards the descriptor table and the reference counts (held briefly). */
static pthread_mutex_t pf_lock = PTHREAD_MUTEX_INITIALIZER;
/* One emulated ioctl or release at a time: the objects' state and the daemon's order stay simple. */
static pthread_mutex_t pf_ioctl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pf_file **pf_fds;
static size_t pf_nfds;

/** pf_get() - the file behind @fd, or NULL. Caller holds pf_lock. */
static struct pf_file *pf_get(int fd)
{
	return fd >= 0 && (size_t)fd < pf_nfds ? pf_fds[fd] : NULL;
}

/** pf_set() - make @fd name @f (NULL: nothing). Caller holds pf_lock. */
static int pf_set(int fd, struct pf_file *f)
{
	if ((size_t)fd >= pf_nfds) {
		size_t n = pf_nfds ? pf_nfds : 256;
		struct pf_file **nf;

		if (!f)
			return 0;
		while (n <= (size_t)fd)
			n *= 2;
		nf = realloc(pf_fds, n * sizeof(*nf));
		if (!nf)
			return -1;
		memset(nf + pf_nfds, 0, (n - pf_nfds) * sizeof(*nf));
		pf_fds = nf;
		pf_nfds = n;
	}
	pf_fds[fd] = f;
	return 0;
}

/* ---- the daemon ------------------------------------------------------- */

static struct iopfd_url pf_url;
static char pf_url_str[512];
static int pf_url_ok = -1;

static int pf_debug(void)
{
	static int d = -1;

	if (d < 0)
		d = getenv("IOPFD_PRELOAD_DEBUG") && *getenv("IOPFD_PRELOAD_DEBUG") && strcmp(getenv("IOPFD_PRELOAD_DEBUG"), "0");
	return d;
}

#define pf_log(...)                                              \
	do {                                                     \
		if (pf_debug()) {                                \
			int e_ = errno;                          \
			fprintf(stderr, "iopfd-preload: " __VA_ARGS__); \
			errno = e_;                              \
		}                                                \
	} while (0)

/** pf_daemon() - the daemon's parsed URL (IOPFD_URL), or NULL with errno EINVAL. */
static const struct iopfd_url *pf_daemon(void)
{
	pthread_mutex_lock(&pf_lock);
	if (pf_url_ok < 0) {
		const char *url = getenv("IOPFD_URL");

		if (!url || !*url)
			url = "http://127.0.0.1:8080";
		snprintf(pf_url_str, sizeof(pf_url_str), "%s", url);
		pf_url_ok = iopfd_url_parse(pf_url_str, &pf_url) == 0;
		if (!pf_url_ok)
			fprintf(stderr, "iopfd-preload: IOPFD_URL %s is not http://host[:port]\n", url);
	}
	pthread_mutex_unlock(&pf_lock);
	if (!pf_url_ok) {
		errno = EINVAL;
		return NULL;
	}
	return &pf_url;
}

/**
 * pf_rest_body() - one REST call that must succeed
 * @method: the HTTP method
 * @path: below /v1
 * @token: the bearer token or NULL
 * @body: a JSON body or NULL
 * @out: the response body (free it), on success and on an error status;
 *   NULL when no response arrived
 *
 * Return: 0 on a 2xx, else -1 with errno: the daemon's errno, or the
 * connection's (ECONNREFUSED, ETIMEDOUT, EPROTO).
 */
static int pf_rest_body(const char *method, const char *path, const char *token, const char *body, char **out)
{
	const struct iopfd_url *u = pf_daemon();
	struct iopfd_http_response r;
	char full[512];

	*out = NULL;
	if (!u)
		return -1;
	snprintf(full, sizeof(full), "/v1%s", path);
	if (iopfd_http_request(u, method, full, token, body, &r) < 0) {
		pf_log("%s %s: %s\n", method, full, strerror(errno));
		return -1;
	}
	*out = r.body;
	if (r.status >= 200 && r.status < 300)
		return 0;
	pf_log("%s %s %s -> %d %s\n", method, full, body ? body : "", r.status, r.body);
	errno = iopfd_http_errno(&r);
	return -1;
}

/** pf_rest() - pf_rest_body(), keeping the answer only on success (@out may be NULL). */
static int pf_rest(const char *method, const char *path, const char *token, const char *body, char **out)
{
	char *resp;
	int rc = pf_rest_body(method, path, token, body, &resp), e = errno;

	if (rc == 0 && out) {
		*out = resp;
		return 0;
	}
	if (out)
		*out = NULL;
	free(resp);
	errno = e;
	return rc;
}

/** pf_rest_id() - pf_rest() and the number @key of its answer. */
static int pf_rest_id(const char *method, const char *path, const char *token, const char *body,
		      const char *key, uint64_t *id)
{
	char *resp;

	if (pf_rest(method, path, token, body, &resp) < 0)
		return -1;
	if (iopfd_json_u64(resp, key, id) < 0) {
		free(resp);
		errno = EPROTO;
		return -1;
	}
	free(resp);
	return 0;
}

/* ---- contexts and their watchdog --------------------------------------- */

/**
 * pf_watchdog_run() - the watchdog process: wait until every copy of the
 * program's end of the socket pair is gone, then release the context
 * unless its owner said it did. Only system calls here (this runs in a
 * fork() of a process that may have threads).
 */
static void __attribute__((noreturn)) pf_watchdog_run(int rd, const struct sockaddr_storage *sa, socklen_t salen,
						       const char *req, size_t reqlen)
{
	struct timeval tv = { .tv_sec = IOPFD_HTTP_TIMEOUT_MS / 1000 };
	int nul, s, fd;
	char b;
	ssize_t n;

	setsid();
	/* Our end out of the way of stdio (the program may have closed 0..2), then on 3, alone. */
	rd = (int)syscall(SYS_fcntl, rd, F_DUPFD, 10);
	nul = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR);
	for (fd = 0; fd < 3; fd++)
		if (nul >= 0 && nul != fd)
			syscall(SYS_dup3, nul, fd, 0);
	if (rd < 0 || syscall(SYS_dup3, rd, 3, 0) < 0)
		_exit(1);
	if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
		for (fd = 4; fd < 65536; fd++)
			syscall(SYS_close, fd);
	do
		n = syscall(SYS_read, 3, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0);
	s = (int)syscall(SYS_socket, sa->ss_family, SOCK_STREAM, 0);
	if (s >= 0 && syscall(SYS_connect, s, sa, salen) == 0) {
		syscall(SYS_setsockopt, s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		syscall(SYS_sendto, s, req, reqlen, MSG_NOSIGNAL, NULL, 0);
		syscall(SYS_shutdown, s, SHUT_WR);
		while (syscall(SYS_recvfrom, s, &b, 1, 0, NULL, NULL) > 0)
			;
	}
	_exit(0);
}

/**
 * pf_watchdog_start() - fork the watchdog of @c (a grandchild, so the
 * program never waits for it); c->watch_fd gets the program's end of the
 * socket pair (close-on-exec: an exec ends the context as it ends the
 * shim's state).
 */
static void pf_watchdog_start(struct pf_ctx *c)
{
	const struct iopfd_url *u = pf_daemon();
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	char req[512];
	int p[2], s, n;
	pid_t pid;

	c->watch_fd = -1;
	if (!u)
		return;
	/* The daemon's address, from a connection that reached it. */
	s = iopfd_tcp_connect(u, IOPFD_HTTP_TIMEOUT_MS);
	if (s < 0)
		return;
	if (getpeername(s, (struct sockaddr *)&sa, &salen) < 0) {
		real_close(s);
		return;
	}
	real_close(s);
	n = snprintf(req, sizeof(req),
		     "DELETE %s/v1/contexts/%" PRIu32 " HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
		     "Connection: close\r\nContent-Length: 0\r\n\r\n",
		     u->prefix, c->id, u->hostport, c->token);
	/* A socket pair, not a pipe: writing to a dead watchdog must not raise SIGPIPE. */
	if (n < 0 || (size_t)n >= sizeof(req) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		if (fork() == 0)
			pf_watchdog_run(p[0], &sa, salen, req, (size_t)n);
		_exit(0);
	}
	real_close(p[0]);
	if (pid < 0) {
		pf_log("no watchdog for context %" PRIu32 ": %s\n", c->id, strerror(errno));
		real_close(p[1]);
		return;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	c->watch_fd = p[1];
}

/** pf_ctx_new() - POST /v1/contexts and start its watchdog. NULL with errno on failure. */
static struct pf_ctx *pf_ctx_new(void)
{
	struct pf_ctx *c = calloc(1, sizeof(*c));
	uint64_t id;
	char *resp;

	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	if (pf_rest("POST", "/contexts", NULL, "{}", &resp) < 0) {
		int e = errno;

		free(c);
		errno = e;
		return NULL;
	}
	if (iopfd_json_u64(resp, "ctx", &id) < 0 || id == 0 || id > UINT32_MAX ||
	    iopfd_json_str(resp, "token", c->token, sizeof(c->token)) < 0) {
		free(resp);
		free(c);
		errno = EPROTO;
		return NULL;
	}
	free(resp);
	c->id = (uint32_t)id;
	c->refs = 1;
	c->next_iova = 0x100000000ull;
	pf_watchdog_start(c);
	pf_log("context %" PRIu32 "\n", c->id);
	return c;
}

/** pf_ctx_put() - drop a reference; the last releases the context. Called without pf_lock. */
static void pf_ctx_put(struct pf_ctx *c)
{
	char path[64];
	int last;

	pthread_mutex_lock(&pf_lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&pf_lock);
	if (!last)
		return;
	snprintf(path, sizeof(path), "/contexts/%" PRIu32, c->id);
	if (pf_rest("DELETE", path, c->token, NULL, NULL) < 0)
		pf_log("releasing context %" PRIu32 ": %s\n", c->id, strerror(errno));
	if (c->watch_fd >= 0) {
		/* Tell the watchdog the context is gone, so it releases nothing. */
		ssize_t w;

		do
			w = send(c->watch_fd, "x", 1, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		real_close(c->watch_fd);
	}
	free(c);
}

/* ---- open ---------------------------------------------------------------- */

static const char PF_VFIO_DEVICES[] = "/dev/vfio/devices/";

/** pf_device_name_ok() - a platform device name as the daemon spells them. */
static bool pf_device_name_ok(const char *n)
{
	size_t i, len = strlen(n);

	if (len == 0 || len > 64)
		return false;
	for (i = 0; i < len; i++) {
		char ch = n[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');

		if (!alnum && (i == 0 || !strchr("._:-", ch)))
			return false;
	}
	return true;
}

/**
 * pf_device_exists() - 0 when the platform has @name or cannot be read
 * (no admin token: BIND then fails with the daemon's ENODEV), -1 with
 * ENOENT when it has none.
 */
static int pf_device_exists(const char *name)
{
	const struct iopfd_url *u = pf_daemon();
	struct iopfd_http_response r;
	char needle[96], *devices;
	int found;

	if (!u)
		return -1;
	if (iopfd_http_request(u, "GET", "/v1/platform", getenv("IOPFD_ADMIN_TOKEN"), NULL, &r) < 0)
		return -1;
	if (r.status != 200) {
		free(r.body);
		return 0;
	}
	/* In the devices list, not the IOMMUs'. */
	snprintf(needle, sizeof(needle), "\"name\":\"%s\"", name);
	devices = strstr(r.body, "\"devices\":");
	found = devices && strstr(devices, needle) != NULL;
	free(r.body);
	if (!found) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

/**
 * pf_open() - open an emulated path.
 * @path: the path
 * @flags: open()'s flags (O_CLOEXEC honoured)
 * @handled: set when @path is emulated
 *
 * Return: the descriptor, or -1 with errno.
 */
static int pf_open(const char *path, int flags, bool *handled)
{
	struct pf_file *f;
	int fd, e;

	*handled = false;
	if (!path)
		return -1;
	if (strcmp(path, "/dev/iommu") && strncmp(path, PF_VFIO_DEVICES, sizeof(PF_VFIO_DEVICES) - 1))
		return -1;
	*handled = true;
	pf_init();
	f = calloc(1, sizeof(*f));
	if (!f) {
		errno = ENOMEM;
		return -1;
	}
	if (!strcmp(path, "/dev/iommu")) {
		f->kind = PF_IOMMUFD;
		f->ctx = pf_ctx_new();
		if (!f->ctx)
			goto fail;
	} else {
		const char *name = path + sizeof(PF_VFIO_DEVICES) - 1;

		f->kind = PF_DEVICE;
		if (!pf_device_name_ok(name)) {
			errno = ENOENT;
			goto fail;
		}
		if (pf_device_exists(name) < 0)
			goto fail;
		snprintf(f->name, sizeof(f->name), "%s", name);
	}
	/*
	 * An inert descriptor stands for the file: fcntl() and fstat() work on
	 * it, and epoll refuses it (EPERM) as it refuses the kernel's, which
	 * have no poll.
	 */
	fd = real_openat(AT_FDCWD, "/dev/null", O_RDWR | (flags & O_CLOEXEC));
	if (fd < 0)
		goto fail;
	f->fdrefs = 1;
	pthread_mutex_lock(&pf_lock);
	if (pf_set(fd, f) < 0) {
		pthread_mutex_unlock(&pf_lock);
		real_close(fd);
		errno = ENOMEM;
		goto fail;
	}
	pthread_mutex_unlock(&pf_lock);
	pf_log("open %s -> fd %d\n", path, fd);
	return fd;
fail:
	e = errno;
	if (f->ctx)
		pf_ctx_put(f->ctx);
	free(f);
	errno = e;
	return -1;
}

static int pf_open_va(int dirfd, const char *path, int flags, va_list ap)
{
	mode_t mode = 0;
	bool handled;
	int fd;

	if (flags & (O_CREAT | __O_TMPFILE))
		mode = va_arg(ap, mode_t);
	if (path && path[0] == '/') {
		fd = pf_open(path, flags, &handled);
		if (handled)
			return fd;
	}
	pf_init();
	return real_openat(dirfd, path, flags, mode);
}

PF_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	int r;

	va_start(ap, flags);
	r = pf_open_va(AT_FDCWD, path, flags, ap);
	va_end(ap);
	return r;
}

PF_EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	int r;

	va_start(ap, flags);
	r = pf_open_va(AT_FDCWD, path, flags | O_LARGEFILE, ap);
	va_end(ap);
	return r;
}

PF_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	int r;

	va_start(ap, flags);
	r = pf_open_va(dirfd, path, flags, ap);
	va_end(ap);
	return r;
}

PF_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	int r;

	va_start(ap, flags);
	r = pf_open_va(dirfd, path, flags | O_LARGEFILE, ap);
	va_end(ap);
	return r;
}

/* _FORTIFY_SOURCE's checked opens (no O_CREAT, so no mode). */
PF_EXPORT int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

PF_EXPORT int __open64_2(const char *path, int flags)
{
	return open64(path, flags);
}

PF_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

PF_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return openat64(dirfd, path, flags);
}

/* ---- close and dup --------------------------------------------------------- */

/** pf_release() - the last reference to @f went: what the kernel's release does. */
static void pf_release(struct pf_file *f)
{
	char path[96];

	pthread_mutex_lock(&pf_ioctl_lock);
	if (f->kind == PF_DEVICE && f->bound) {
		/* vfio_df_unbind_iommufd(): detach everywhere, then unbind. */
		snprintf(path, sizeof(path), "/contexts/%" PRIu32 "/objects/%" PRIu32, f->ctx->id, f->dev_id);
		if (pf_rest("DELETE", path, f->ctx->token, NULL, NULL) < 0)
			pf_log("unbinding %s: %s\n", f->name, strerror(errno));
	}
	pthread_mutex_unlock(&pf_ioctl_lock);
	if (f->ctx)
		pf_ctx_put(f->ctx);
	free(f);
}

/** pf_file_put() - drop a reference to @f (a descriptor, or an ioctl in progress); the last releases it. */
static void pf_file_put(struct pf_file *f)
{
	int last;

	pthread_mutex_lock(&pf_lock);
	last = --f->fdrefs == 0;
	pthread_mutex_unlock(&pf_lock);
	if (last)
		pf_release(f);
}

PF_EXPORT int close(int fd)
{
	struct pf_file *f;
	int r;

	pf_init();
	pthread_mutex_lock(&pf_lock);
	f = pf_get(fd);
	if (f)
		pf_set(fd, NULL);
	pthread_mutex_unlock(&pf_lock);
	if (!f)
		return iopfd_close(fd);
	if (f->kind == PF_FAULT)
		r = iopfd_close(fd); /* the stream closes: the daemon redelivers */
	else
		r = real_close(fd);
	pf_file_put(f);
	return r;
}

/**
 * pf_forget_range() - the descriptors [@first, @last] were closed behind
 * the shim's back (close_range(), closefrom()): release what they held.
 */
static void pf_forget_range(unsigned int first, unsigned int last)
{
	for (;;) {
		struct pf_file *f = NULL;
		size_t fd;

		pthread_mutex_lock(&pf_lock);
		for (fd = first; fd < pf_nfds && fd <= last && !f; fd++)
			f = pf_fds[fd];
		if (f)
			pf_set((int)fd - 1, NULL);
		pthread_mutex_unlock(&pf_lock);
		if (!f)
			return;
		first = (unsigned int)fd;
		if (f->kind == PF_FAULT)
			iopfd_close((int)fd - 1); /* already closed: libiopfd ends its bridge */
		pf_file_put(f);
	}
}

PF_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	int (*next)(unsigned int, unsigned int, int) =
		(int (*)(unsigned int, unsigned int, int))dlsym(RTLD_NEXT, "close_range");
	int r = next ? next(first, last, flags) : (int)syscall(SYS_close_range, first, last, flags);

	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
		pf_forget_range(first, last);
	return r;
}

PF_EXPORT void closefrom(int lowfd)
{
	void (*next)(int) = (void (*)(int))dlsym(RTLD_NEXT, "closefrom");

	if (next)
		next(lowfd);
	else
		syscall(SYS_close_range, (unsigned int)lowfd, ~0U, 0);
	pf_forget_range((unsigned int)(lowfd < 0 ? 0 : lowfd), ~0U);
}

/** pf_dup_track() - @newfd names what @oldfd names (a fault fd is libiopfd's: not shared). */
static void pf_dup_track(int oldfd, int newfd)
{
	struct pf_file *f, *gone = NULL;

	pthread_mutex_lock(&pf_lock);
	f = pf_get(oldfd);
	if (f && f->kind == PF_FAULT)
		f = NULL;
	/* dup2()/dup3() closed newfd if it was open. */
	gone = pf_get(newfd);
	if (gone && gone != f)
		pf_set(newfd, NULL);
	else
		gone = NULL;
	if (f && pf_get(newfd) != f && pf_set(newfd, f) == 0)
		f->fdrefs++;
	pthread_mutex_unlock(&pf_lock);
	if (gone)
		pf_file_put(gone);
}

/** pf_fcntl() - fcntl() through libc's @next; F_DUPFD(_CLOEXEC) shares the file as dup() does. */
static int pf_fcntl(int (*next)(int, int, ...), int fd, int cmd, void *arg)
{
	int r = next ? next(fd, cmd, arg) : (int)syscall(SYS_fcntl, fd, cmd, arg);

	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		pf_dup_track(fd, r);
	return r;
}

/* glibc's own wrappers read the third argument as a pointer whatever cmd is. */
PF_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	pf_init();
	return pf_fcntl(real_fcntl, fd, cmd, arg);
}

PF_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	pf_init();
	return pf_fcntl(real_fcntl64 ? real_fcntl64 : real_fcntl, fd, cmd, arg);
}

PF_EXPORT int dup(int oldfd)
{
	int fd;

	pf_init();
	fd = real_dup(oldfd);
	if (fd >= 0)
		pf_dup_track(oldfd, fd);
	return fd;
}

PF_EXPORT int dup2(int oldfd, int newfd)
{
	int fd;

	pf_init();
	fd = real_dup2(oldfd, newfd);
	if (fd >= 0 && fd != oldfd)
		pf_dup_track(oldfd, fd);
	return fd;
}

PF_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int fd;

	pf_init();
	fd = real_dup3(oldfd, newfd, flags);
	if (fd >= 0)
		pf_dup_track(oldfd, fd);
	return fd;
}

/* ---- the extensible-struct rules ------------------------------------------- */

/** The largest struct the emulated ioctls copy in. */
union pf_cmd {
	struct iopfd_iommu_destroy destroy;
	struct iopfd_iommu_ioas_alloc ioas_alloc;
	struct iopfd_iommu_ioas_map map;
	struct iopfd_iommu_ioas_unmap unmap;
	struct iopfd_iommu_hwpt_alloc hwpt;
	struct iopfd_iommu_hwpt_invalidate inv;
	struct iopfd_iommu_fault_alloc fault;
	struct iopfd_iommu_viommu_alloc viommu;
	struct iopfd_iommu_vdevice_alloc vdevice;
	struct iopfd_iommu_veventq_alloc veventq;
	struct iopfd_vfio_device_bind_iommufd bind;
	struct iopfd_vfio_device_attach_iommufd_pt attach;
	struct iopfd_vfio_device_detach_iommufd_pt detach;
	unsigned char bytes[64];
};

/**
 * pf_copy_struct_from_user() - the kernel's copy_struct_from_user(): copy
 * min(@usize, @ksize) bytes of @src into @dst and zero the rest; E2BIG when
 * a byte of @src past @ksize is not zero.
 */
static int pf_copy_struct_from_user(void *dst, size_t ksize, const void *src, size_t usize)
{
	const unsigned char *s = src;
	size_t i;

	memset(dst, 0, ksize);
	for (i = ksize; i < usize; i++)
		if (s[i])
			return -E2BIG;
	memcpy(dst, src, usize < ksize ? usize : ksize);
	return 0;
}

/** pf_respond() - iommufd_ucmd_respond(): copy @cmd back, up to the caller's size. */
static void pf_respond(void *arg, const void *cmd, size_t usize, size_t ksize)
{
	memcpy(arg, cmd, usize < ksize ? usize : ksize);
}

static char *pf_hex(char *buf, size_t n, uint64_t v)
{
	snprintf(buf, n, "\"0x%" PRIx64 "\"", v);
	return buf;
}

/* ---- iommufd ioctls -------------------------------------------------------- */

/** pf_ctx_path() - "/contexts/C" + @rest. */
static void pf_ctx_path(char *buf, size_t n, const struct pf_ctx *c, const char *rest)
{
	snprintf(buf, n, "/contexts/%" PRIu32 "%s", c->id, rest);
}

/** pf_object_held() - is @id the fault queue of an open fault fd, or a bound device, of @c? */
static bool pf_object_held(const struct pf_ctx *c, uint32_t id)
{
	bool held = false;
	size_t i;

	pthread_mutex_lock(&pf_lock);
	for (i = 0; i < pf_nfds && !held; i++) {
		const struct pf_file *f = pf_fds[i];

		if (!f || f->ctx != c)
			continue;
		held = (f->kind == PF_FAULT && f->fault_id == id) || (f->kind == PF_DEVICE && f->bound && f->dev_id == id);
	}
	pthread_mutex_unlock(&pf_lock);
	return held;
}

/* iommufd_destroy(): a device is the driver's to destroy, a fault queue with its fd open is in use. */
static int pf_destroy(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	char path[96], rest[32];

	if (pf_object_held(c, cmd->destroy.id))
		return -EBUSY;
	snprintf(rest, sizeof(rest), "/objects/%" PRIu32, cmd->destroy.id);
	pf_ctx_path(path, sizeof(path), c, rest);
	return pf_rest("DELETE", path, c->token, NULL, NULL) < 0 ? -errno : 0;
}

/* iommufd_ioas_alloc_ioctl() */
static int pf_ioas_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	char path[64];
	uint64_t id;

	if (cmd->ioas_alloc.flags)
		return -EOPNOTSUPP;
	pf_ctx_path(path, sizeof(path), c, "/ioas");
	if (pf_rest_id("POST", path, c->token, "{}", "id", &id) < 0)
		return -errno;
	cmd->ioas_alloc.out_ioas_id = (uint32_t)id;
	return 1;
}

/*
 * iommufd_ioas_map(): the range gets fresh zeroed daemon memory, not the
 * caller's pages (user_va is not shared with the daemon). Without
 * FIXED_IOVA the shim picks the IOVA: the first free one from 4 GiB up.
 */
static int pf_ioas_map(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	const uint32_t known = IOPFD_IOAS_MAP_FIXED_IOVA | IOPFD_IOAS_MAP_WRITEABLE | IOPFD_IOAS_MAP_READABLE;
	struct iopfd_iommu_ioas_map *m = &cmd->map;
	char path[96], rest[48], body[192], a[24], l[24];
	int tries;

	if ((m->flags & ~known) || m->__reserved)
		return -EOPNOTSUPP;
	if (m->iova >= UINT64_MAX || m->length >= UINT64_MAX)
		return -EOVERFLOW;
	if (!(m->flags & (IOPFD_IOAS_MAP_WRITEABLE | IOPFD_IOAS_MAP_READABLE)))
		return -EINVAL;
	snprintf(rest, sizeof(rest), "/ioas/%" PRIu32 "/map", m->ioas_id);
	pf_ctx_path(path, sizeof(path), c, rest);
	for (tries = 0;; tries++) {
		uint64_t iova = m->flags & IOPFD_IOAS_MAP_FIXED_IOVA ? m->iova : c->next_iova;

		snprintf(body, sizeof(body), "{\"iova\":%s,\"length\":%s,\"read\":%s,\"write\":%s}",
			 pf_hex(a, sizeof(a), iova), pf_hex(l, sizeof(l), m->length),
			 m->flags & IOPFD_IOAS_MAP_READABLE ? "true" : "false",
			 m->flags & IOPFD_IOAS_MAP_WRITEABLE ? "true" : "false");
		if (pf_rest("POST", path, c->token, body, NULL) == 0) {
			if (!(m->flags & IOPFD_IOAS_MAP_FIXED_IOVA)) {
				m->iova = iova;
				c->next_iova = iova + ((m->length + 0xfffull) & ~0xfffull);
			}
			return 1;
		}
		if (errno != EEXIST || (m->flags & IOPFD_IOAS_MAP_FIXED_IOVA) || tries >= 64 ||
		    c->next_iova + ((m->length + 0xfffull) & ~0xfffull) < c->next_iova)
			return -errno;
		/* Taken by a fixed mapping: look past it. */
		c->next_iova += (m->length + 0xfffull) & ~0xfffull;
	}
}

/* iommufd_ioas_unmap(): 0 and U64_MAX unmap everything (nothing mapped is fine then). */
static int pf_ioas_unmap(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_ioas_unmap *u = &cmd->unmap;
	char path[96], rest[48], body[128], a[24], l[24];
	bool all = u->iova == 0 && u->length == UINT64_MAX;
	uint64_t unmapped;

	if (!all && (u->iova >= UINT64_MAX || u->length >= UINT64_MAX))
		return -EOVERFLOW;
	snprintf(rest, sizeof(rest), "/ioas/%" PRIu32 "/unmap", u->ioas_id);
	pf_ctx_path(path, sizeof(path), c, rest);
	snprintf(body, sizeof(body), "{\"iova\":%s,\"length\":%s}", pf_hex(a, sizeof(a), u->iova),
		 pf_hex(l, sizeof(l), all ? ~0xfffull : u->length));
	if (pf_rest_id("POST", path, c->token, body, "unmapped", &unmapped) < 0) {
		if (!(all && errno == ENOENT))
			return -errno;
		unmapped = 0;
	}
	u->length = unmapped;
	return 1;
}

/** pf_le64() - a little-endian uAPI word (__aligned_le64) in host order. */
static uint64_t pf_le64(uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_bswap64(v);
#else
	return v;
#endif
}

/*
 * iommufd_hwpt_alloc(), with the driver's iommu_copy_struct_from_user() of
 * its data: VT-d's vtd_s1 on a NEST_PARENT hwpt, or SMMUv3's STE on a vIOMMU
 * (arm_vsmmu_alloc_domain_nested()).
 */
static int pf_hwpt_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_hwpt_alloc *h = &cmd->hwpt;
	struct iopfd_iommu_hwpt_vtd_s1 vtd;
	char path[64], body[320], data[160], fault[32], pg[24];
	uint64_t id;
	int rc;

	if (h->__reserved)
		return -EOPNOTSUPP;
	if ((h->data_type == IOPFD_HWPT_DATA_NONE && h->data_len) || (h->data_type != IOPFD_HWPT_DATA_NONE && !h->data_len))
		return -EINVAL;
	data[0] = 0;
	if (h->data_type == IOPFD_HWPT_DATA_VTD_S1) {
		if (!h->data_uptr)
			return -EFAULT;
		if (h->data_len < IOPFD_MIN_VTD_S1)
			return -EINVAL;
		rc = pf_copy_struct_from_user(&vtd, sizeof(vtd), (const void *)(uintptr_t)h->data_uptr, h->data_len);
		if (rc)
			return rc;
		if (vtd.flags > UINT32_MAX)
			return -EOPNOTSUPP;
		snprintf(data, sizeof(data),
			 ",\"data_type\":\"vtd_s1\",\"data\":{\"flags\":%" PRIu64 ",\"pgtbl_addr\":%s,\"addr_width\":%" PRIu32 "}",
			 vtd.flags, pf_hex(pg, sizeof(pg), vtd.pgtbl_addr), vtd.addr_width);
	} else if (h->data_type == IOPFD_HWPT_DATA_ARM_SMMUV3) {
		struct iopfd_iommu_hwpt_arm_smmuv3 arm;
		char w0[24], w1[24];

		if (!h->data_uptr)
			return -EFAULT;
		if (h->data_len < IOPFD_MIN_ARM_SMMUV3)
			return -EINVAL;
		rc = pf_copy_struct_from_user(&arm, sizeof(arm), (const void *)(uintptr_t)h->data_uptr, h->data_len);
		if (rc)
			return rc;
		snprintf(data, sizeof(data), ",\"data_type\":\"arm_smmuv3\",\"data\":{\"ste\":[%s,%s]}",
			 pf_hex(w0, sizeof(w0), pf_le64(arm.ste[0])), pf_hex(w1, sizeof(w1), pf_le64(arm.ste[1])));
	} else if (h->data_type != IOPFD_HWPT_DATA_NONE) {
		return -EOPNOTSUPP; /* a driver's data type the daemon does not model */
	}
	fault[0] = 0;
	if (h->flags & IOPFD_HWPT_FAULT_ID_VALID)
		snprintf(fault, sizeof(fault), ",\"fault_id\":%" PRIu32, h->fault_id);
	snprintf(body, sizeof(body), "{\"dev_id\":%" PRIu32 ",\"pt_id\":%" PRIu32 ",\"flags\":%" PRIu32 "%s%s}",
		 h->dev_id, h->pt_id, h->flags, data, fault);
	pf_ctx_path(path, sizeof(path), c, "/hwpt");
	if (pf_rest_id("POST", path, c->token, body, "id", &id) < 0)
		return -errno;
	h->out_hwpt_id = (uint32_t)id;
	return 1;
}

/** pf_inv_entry_json() - one vtd_s1 invalidation entry as the daemon takes it. */
static int pf_inv_entry_json(char *out, size_t cap, const unsigned char *src, uint32_t entry_len)
{
	struct iopfd_iommu_hwpt_vtd_s1_invalidate e;
	char a[24], np[24];

	pf_copy_struct_from_user(&e, sizeof(e), src, entry_len);
	if (e.npages <= UINT32_MAX)
		snprintf(np, sizeof(np), "%" PRIu64, e.npages);
	else
		pf_hex(np, sizeof(np), e.npages);
	return snprintf(out, cap, "{\"addr\":%s,\"npages\":%s,\"flags\":%" PRIu32 "}", pf_hex(a, sizeof(a), e.addr), np,
			e.flags);
}

/** Entries per REST call of IOMMU_HWPT_INVALIDATE (the body stays far below 1 MiB). */
#define PF_INV_BATCH 2048
/** Bytes of the body of one call. */
#define PF_INV_BODY (64 + (size_t)PF_INV_BATCH * 100)
/** pf_invalidate_post()'s @done when the daemon did not say. */
#define PF_INV_UNKNOWN UINT32_MAX

/**
 * pf_invalidate_post() - entries [@first, @first + @n) (n <= PF_INV_BATCH)
 * in one call, built in @body (PF_INV_BODY bytes).
 * @done: the entries the daemon handled: @n on success; on an error its
 *   body's `done`, or PF_INV_UNKNOWN without one
 *
 * Return: 0, or the daemon's negative errno.
 */
static int pf_invalidate_post(struct pf_ctx *c, const char *path, const unsigned char *base, uint32_t entry_len,
			      uint32_t first, uint32_t n, char *body, uint32_t *done)
{
	size_t off = (size_t)sprintf(body, "{\"entries\":[");
	char *resp = NULL;
	uint64_t d;
	int rc = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (i)
			body[off++] = ',';
		off += (size_t)pf_inv_entry_json(body + off, 96, base + (size_t)(first + i) * entry_len, entry_len);
	}
	sprintf(body + off, "]}");
	*done = n;
	if (pf_rest_body("POST", path, c->token, body, &resp) < 0) {
		rc = -errno;
		*done = resp && iopfd_json_u64(resp, "done", &d) == 0 && d < n ? (uint32_t)d : PF_INV_UNKNOWN;
	} else if (iopfd_json_u64(resp, "done", &d) == 0 && d < n) {
		*done = (uint32_t)d;
	}
	free(resp);
	return rc;
}

/**
 * pf_invalidate_find() - a daemon without `done` refused [@first, @first +
 * @n): find the first refused entry by bisecting on prefixes (invalidating
 * an entry twice is harmless, and a prefix fails iff it holds that entry).
 * @done: set to its index.
 *
 * Return: its negative errno.
 */
static int pf_invalidate_find(struct pf_ctx *c, const char *path, const unsigned char *base, uint32_t entry_len,
			      uint32_t first, uint32_t n, int rc, char *body, uint32_t *done)
{
	uint32_t lo = 0, hi = n, d; /* the shortest failing prefix is in (lo, hi] */

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		int r = pf_invalidate_post(c, path, base, entry_len, first, mid, body, &d);

		if (r < 0) {
			hi = mid;
			rc = r;
		} else {
			lo = mid;
		}
	}
	*done = first + lo;
	return rc;
}

/**
 * pf_viommu_invalidate() - IOMMU_HWPT_INVALIDATE of SMMUv3 commands on a
 * vIOMMU (arm_vsmmu_cache_invalidate()): the whole array is copied first
 * (iommu_copy_struct_from_full_user_array(): a shorter entry is
 * zero-extended, a non-zero byte past 16 in any entry is E2BIG with nothing
 * done, an empty array is EINVAL once the vIOMMU was found), then the
 * commands run in order up to the first the daemon refuses (EIO, an unknown
 * opcode or vSID).
 * @done: set to the number of commands run
 *
 * Return: 0, or a negative errno.
 */
static int pf_viommu_invalidate(struct pf_ctx *c, const struct iopfd_iommu_hwpt_invalidate *inv, uint32_t *done)
{
	const unsigned char *base = (const unsigned char *)(uintptr_t)inv->data_uptr;
	struct iopfd_iommu_viommu_arm_smmuv3_invalidate e;
	char path[96], rest[48], w0[24], w1[24], *body, *resp = NULL;
	uint32_t first = 0, n;
	uint64_t d;
	int rc = 0;

	*done = 0;
	for (uint32_t i = 0; i < inv->entry_num; i++)
		if (pf_copy_struct_from_user(&e, sizeof(e), base + (size_t)i * inv->entry_len, inv->entry_len))
			return -E2BIG;
	snprintf(rest, sizeof(rest), "/viommu/%" PRIu32 "/invalidate", inv->hwpt_id);
	pf_ctx_path(path, sizeof(path), c, rest);
	body = malloc(PF_INV_BODY);
	if (!body)
		return -ENOMEM;
	/* An empty array is looked up (ENOENT), then refused by the driver's copy: EINVAL. */
	do {
		n = inv->entry_num - first > PF_INV_BATCH ? PF_INV_BATCH : inv->entry_num - first;
		size_t off = (size_t)sprintf(body, "{\"data_type\":\"arm_smmuv3\",\"commands\":[");

		for (uint32_t i = 0; i < n; i++) {
			pf_copy_struct_from_user(&e, sizeof(e), base + (size_t)(first + i) * inv->entry_len, inv->entry_len);
			off += (size_t)sprintf(body + off, "%s[%s,%s]", i ? "," : "", pf_hex(w0, sizeof(w0), pf_le64(e.cmd[0])),
					       pf_hex(w1, sizeof(w1), pf_le64(e.cmd[1])));
		}
		sprintf(body + off, "]}");
		free(resp);
		resp = NULL;
		d = n;
		if (pf_rest_body("POST", path, c->token, body, &resp) < 0) {
			rc = -errno;
			if (!resp || iopfd_json_u64(resp, "done", &d) < 0 || d > n)
				d = 0;
		} else if (iopfd_json_u64(resp, "done", &d) < 0 || d > n) {
			d = n;
		}
		*done += (uint32_t)d;
		first += n;
	} while (!rc && d == n && first < inv->entry_num);
	free(resp);
	free(body);
	if (!inv->entry_num && rc != -ENOENT)
		rc = -EINVAL;
	return rc;
}

/*
 * iommufd_hwpt_invalidate() with the VT-d driver's per-entry copy: entries
 * are handled in order up to the first bad one; entry_num comes back as the
 * number handled, on success and on error.
 */
static int pf_hwpt_invalidate(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_hwpt_invalidate *inv = &cmd->inv;
	const unsigned char *base = (const unsigned char *)(uintptr_t)inv->data_uptr;
	uint32_t total = inv->entry_num, done = 0, good = total;
	char path[96], rest[48];
	int rc = 0, tail_err = 0;
	char *body;

	if (inv->__reserved) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	if (total && (!inv->data_uptr || !inv->entry_len)) {
		rc = -EINVAL;
		goto out;
	}
	if (inv->data_type == IOPFD_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3) {
		rc = pf_viommu_invalidate(c, inv, &done);
		goto out;
	}
	snprintf(rest, sizeof(rest), "/hwpt/%" PRIu32 "/invalidate", inv->hwpt_id);
	pf_ctx_path(path, sizeof(path), c, rest);
	if (total && (inv->data_type != IOPFD_HWPT_INVALIDATE_DATA_VTD_S1 || inv->entry_len < IOPFD_MIN_VTD_S1_INVALIDATE)) {
		rc = -EINVAL;
		total = good = 0;
	}
	/* The first entry with a non-zero byte past the struct ends the array: E2BIG there. */
	for (uint32_t i = 0; i < total; i++) {
		struct iopfd_iommu_hwpt_vtd_s1_invalidate e;

		if (pf_copy_struct_from_user(&e, sizeof(e), base + (size_t)i * inv->entry_len, inv->entry_len)) {
			good = i;
			tail_err = -E2BIG;
			break;
		}
	}
	body = malloc(PF_INV_BODY);
	if (!body) {
		rc = -ENOMEM;
		goto out;
	}
	/* An empty array still looks the hwpt up (the kernel's type probe). */
	do {
		uint32_t n = good - done > PF_INV_BATCH ? PF_INV_BATCH : good - done, d;
		int r = pf_invalidate_post(c, path, base, inv->entry_len, done, n, body, &d);

		if (r < 0 && d == PF_INV_UNKNOWN)
			r = n > 1 ? pf_invalidate_find(c, path, base, inv->entry_len, done, n, r, body, &done) : r;
		else
			done += d;
		if (r < 0) {
			rc = r;
			break;
		}
		if (d < n)
			break;
	} while (done < good);
	free(body);
	if (!rc && done == good && tail_err)
		rc = tail_err;
out:
	/* The kernel copies entry_num back on every path, errors included. */
	inv->entry_num = done;
	pf_respond(arg, cmd, usize, sizeof(*inv));
	return rc;
}

/**
 * pf_queue_alloc() - POST @body to @what (a fault queue or a vEVENTQ) and
 * open the new queue's stream with @open_fd as the queue's fd; the fd holds
 * the context, as the kernel's file does.
 * @out_id: set to the queue's object id
 * @out_fd: set to the fd
 *
 * Return: 0, or a negative errno (the queue is destroyed again when its
 * stream cannot be opened).
 */
static int pf_queue_alloc(struct pf_ctx *c, const char *what, const char *body,
			  int (*open_fd)(const char *, uint32_t, const char *, uint32_t), uint32_t *out_id, uint32_t *out_fd)
{
	struct pf_file *f;
	char path[96], rest[32];
	uint64_t id;
	int fd, e;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pf_ctx_path(path, sizeof(path), c, what);
	if (pf_rest_id("POST", path, c->token, body, "id", &id) < 0) {
		e = errno;
		free(f);
		return -e;
	}
	fd = open_fd(pf_url_str, c->id, c->token, (uint32_t)id);
	if (fd < 0) {
		e = errno;
		snprintf(rest, sizeof(rest), "/objects/%" PRIu64, id);
		pf_ctx_path(path, sizeof(path), c, rest);
		pf_rest("DELETE", path, c->token, NULL, NULL);
		free(f);
		return -e;
	}
	f->kind = PF_FAULT;
	f->fdrefs = 1;
	f->ctx = c;
	f->fault_id = (uint32_t)id;
	pthread_mutex_lock(&pf_lock);
	c->refs++; /* the fault fd holds the context, as the kernel's file does */
	if (pf_set(fd, f) < 0) {
		c->refs--;
		pthread_mutex_unlock(&pf_lock);
		iopfd_close(fd);
		free(f);
		return -ENOMEM;
	}
	pthread_mutex_unlock(&pf_lock);
	*out_id = (uint32_t)id;
	*out_fd = (uint32_t)fd;
	return 0;
}

/* iommufd_fault_alloc(): the fd is a libiopfd fault fd on the queue's stream. */
static int pf_fault_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	int rc;

	if (cmd->fault.flags)
		return -EOPNOTSUPP;
	rc = pf_queue_alloc(c, "/faults", "{}", iopfd_fault_fd, &cmd->fault.out_fault_id, &cmd->fault.out_fault_fd);
	return rc < 0 ? rc : 1;
}

/*
 * iommufd_viommu_alloc_ioctl(): the SMMUv3 driver takes only its own type
 * (arm_smmu_get_viommu_size()) and no driver data (data_len/data_uptr are
 * not looked at for it).
 */
static int pf_viommu_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_viommu_alloc *v = &cmd->viommu;
	char path[64], body[128];
	uint64_t id;

	if (v->flags || v->type != IOPFD_VIOMMU_TYPE_ARM_SMMUV3)
		return -EOPNOTSUPP;
	snprintf(body, sizeof(body), "{\"type\":\"arm_smmuv3\",\"dev_id\":%" PRIu32 ",\"hwpt_id\":%" PRIu32 "}", v->dev_id,
		 v->hwpt_id);
	pf_ctx_path(path, sizeof(path), c, "/viommu");
	if (pf_rest_id("POST", path, c->token, body, "id", &id) < 0)
		return -errno;
	v->out_viommu_id = (uint32_t)id;
	return 1;
}

/* iommufd_vdevice_alloc_ioctl(): virt_id is the vSID. */
static int pf_vdevice_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_vdevice_alloc *v = &cmd->vdevice;
	char path[64], body[128], vid[24];
	uint64_t id;

	snprintf(body, sizeof(body), "{\"viommu_id\":%" PRIu32 ",\"dev_id\":%" PRIu32 ",\"virt_id\":%s}", v->viommu_id,
		 v->dev_id, pf_hex(vid, sizeof(vid), v->virt_id));
	pf_ctx_path(path, sizeof(path), c, "/vdevice");
	if (pf_rest_id("POST", path, c->token, body, "id", &id) < 0)
		return -errno;
	v->out_vdevice_id = (uint32_t)id;
	return 1;
}

/*
 * iommufd_veventq_alloc(): the fd is a libiopfd vEVENTQ fd on the queue's
 * stream. The SMMUv3 vIOMMU supports only its own type (supports_veventq).
 */
static int pf_veventq_alloc(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize)
{
	struct iopfd_iommu_veventq_alloc *q = &cmd->veventq;
	char body[160];
	int rc;

	if (q->flags || q->__reserved || q->type == IOPFD_VEVENTQ_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	if (!q->veventq_depth)
		return -EINVAL;
	if (q->type != IOPFD_VEVENTQ_TYPE_ARM_SMMUV3)
		return -EOPNOTSUPP;
	snprintf(body, sizeof(body), "{\"viommu_id\":%" PRIu32 ",\"type\":\"arm_smmuv3\",\"depth\":%" PRIu32 "}",
		 q->viommu_id, q->veventq_depth);
	rc = pf_queue_alloc(c, "/veventq", body, iopfd_veventq_fd, &q->out_veventq_id, &q->out_veventq_fd);
	return rc < 0 ? rc : 1;
}

/**
 * struct pf_iommufd_op - one row of iommufd's ioctl table (main.c's IOCTL_OP)
 * @nr: _IOC_NR of the ioctl
 * @size: the struct the kernel knows
 * @min_size: its first version's size
 * @run: the handler: < 0 an errno, 0 done, 1 done and copy the struct back;
 *   @arg/@usize for those that copy back themselves
 */
struct pf_iommufd_op {
	unsigned int nr;
	size_t size, min_size;
	int (*run)(struct pf_ctx *c, union pf_cmd *cmd, void *arg, size_t usize);
};

static const struct pf_iommufd_op pf_iommufd_ops[] = {
	{ IOPFD_CMD_DESTROY, sizeof(struct iopfd_iommu_destroy), IOPFD_IOCTL_MIN_DESTROY, pf_destroy },
	{ IOPFD_CMD_IOAS_ALLOC, sizeof(struct iopfd_iommu_ioas_alloc), IOPFD_IOCTL_MIN_IOAS_ALLOC, pf_ioas_alloc },
	{ IOPFD_CMD_IOAS_MAP, sizeof(struct iopfd_iommu_ioas_map), IOPFD_IOCTL_MIN_IOAS_MAP, pf_ioas_map },
	{ IOPFD_CMD_IOAS_UNMAP, sizeof(struct iopfd_iommu_ioas_unmap), IOPFD_IOCTL_MIN_IOAS_UNMAP, pf_ioas_unmap },
	{ IOPFD_CMD_HWPT_ALLOC, sizeof(struct iopfd_iommu_hwpt_alloc), IOPFD_IOCTL_MIN_HWPT_ALLOC, pf_hwpt_alloc },
	{ IOPFD_CMD_HWPT_INVALIDATE, sizeof(struct iopfd_iommu_hwpt_invalidate), IOPFD_IOCTL_MIN_HWPT_INVALIDATE,
	  pf_hwpt_invalidate },
	{ IOPFD_CMD_FAULT_QUEUE_ALLOC, sizeof(struct iopfd_iommu_fault_alloc), IOPFD_IOCTL_MIN_FAULT_QUEUE_ALLOC,
	  pf_fault_alloc },
	{ IOPFD_CMD_VIOMMU_ALLOC, sizeof(struct iopfd_iommu_viommu_alloc), IOPFD_IOCTL_MIN_VIOMMU_ALLOC, pf_viommu_alloc },
	{ IOPFD_CMD_VDEVICE_ALLOC, sizeof(struct iopfd_iommu_vdevice_alloc), IOPFD_IOCTL_MIN_VDEVICE_ALLOC,
	  pf_vdevice_alloc },
	{ IOPFD_CMD_VEVENTQ_ALLOC, sizeof(struct iopfd_iommu_veventq_alloc), IOPFD_IOCTL_MIN_VEVENTQ_ALLOC,
	  pf_veventq_alloc },
};

/**
 * pf_iommufd_ioctl() - iommufd_fops_ioctl(): find the command, check the
 * caller's size, copy the struct in, run it, copy it back.
 *
 * Return: 0, or a negative errno. ENOTTY for a number iommufd does not
 * have and for the commands the shim does not emulate (README).
 */
static int pf_iommufd_ioctl(struct pf_ctx *c, unsigned long request, void *arg)
{
	unsigned int nr = _IOC_NR(request);
	const struct pf_iommufd_op *op = NULL;
	union pf_cmd cmd;
	uint32_t usize;
	size_t i;
	int rc;

	if (nr < IOPFD_IOMMUFD_CMD_BASE || nr > IOPFD_IOMMUFD_CMD_LAST)
		return -ENOTTY; /* iommufd_vfio_ioctl(): the type1 compatibility is not emulated */
	if (!arg)
		return -EFAULT; /* get_user() of the size comes before the number's check */
	if (request != _IO(IOPFD_IOMMUFD_TYPE, nr))
		return -ENOTTY;
	memcpy(&usize, arg, sizeof(usize));
	for (i = 0; i < sizeof(pf_iommufd_ops) / sizeof(pf_iommufd_ops[0]); i++)
		if (pf_iommufd_ops[i].nr == nr)
			op = &pf_iommufd_ops[i];
	if (!op)
		return -ENOTTY;
	if (usize < op->min_size)
		return -EINVAL;
	rc = pf_copy_struct_from_user(&cmd, op->size, arg, usize);
	if (rc)
		return rc;
	rc = op->run(c, &cmd, arg, usize);
	if (rc == 1) {
		pf_respond(arg, &cmd, usize, op->size);
		rc = 0;
	}
	return rc;
}

/* ---- vfio cdev ioctls ---------------------------------------------------- */

/* vfio_df_ioctl_bind_iommufd() */
static int pf_bind(struct pf_file *f, void *arg)
{
	struct iopfd_vfio_device_bind_iommufd bind;
	struct pf_file *ifile;
	struct pf_ctx *c = NULL;
	char path[64], body[128];
	uint32_t usize;
	uint64_t id;
	int rc;

	memcpy(&usize, arg, sizeof(usize));
	if (usize < IOPFD_VFIO_MIN_BIND)
		return -EINVAL;
	rc = pf_copy_struct_from_user(&bind, sizeof(bind), arg, usize);
	if (rc)
		return rc;
	if (bind.iommufd < 0 || (bind.flags & ~IOPFD_VFIO_DEVICE_BIND_FLAG_TOKEN))
		return -EINVAL;
	if (f->bound)
		return -EINVAL; /* one device cannot be bound twice */
	if (bind.flags & IOPFD_VFIO_DEVICE_BIND_FLAG_TOKEN)
		return -EINVAL; /* no VF token on a platform device (no match_token_uuid) */
	pthread_mutex_lock(&pf_lock);
	ifile = pf_get(bind.iommufd);
	if (ifile && ifile->kind == PF_IOMMUFD) {
		c = ifile->ctx;
		c->refs++; /* taken now so a concurrent close cannot release it */
	}
	pthread_mutex_unlock(&pf_lock);
	if (!c)
		return fcntl(bind.iommufd, F_GETFD) < 0 ? -EBADF : -EBADFD; /* iommufd_ctx_from_fd() */
	pf_ctx_path(path, sizeof(path), c, "/devices");
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", f->name);
	if (pf_rest_id("POST", path, c->token, body, "dev_id", &id) < 0) {
		rc = -errno;
		pf_ctx_put(c);
		return rc;
	}
	f->ctx = c;
	f->dev_id = (uint32_t)id;
	f->bound = true;
	memcpy((unsigned char *)arg + offsetof(struct iopfd_vfio_device_bind_iommufd, out_devid), &f->dev_id,
	       sizeof(f->dev_id));
	return 0;
}

/** pf_pasid_slot() - index of @pasid in @f->pasids, or -1. */
static int pf_pasid_slot(const struct pf_file *f, uint32_t pasid)
{
	for (unsigned int i = 0; i < f->npasids; i++)
		if (f->pasids[i] == pasid)
			return (int)i;
	return -1;
}

/**
 * pf_attached_pt() - the hwpt the daemon attached at (dev_id, pasid), from
 * the context's object list: the automatic hwpt when @pt_id named an IOAS.
 * Leaves @pt_id as is when it cannot tell.
 */
static void pf_attached_pt(const struct pf_file *f, bool has_pasid, uint32_t pasid, uint32_t *pt_id)
{
	char path[64], key[48], *resp, *dev, *end, *p;
	uint64_t v;

	pf_ctx_path(path, sizeof(path), f->ctx, "/objects");
	if (pf_rest("GET", path, f->ctx->token, NULL, &resp) < 0)
		return;
	snprintf(key, sizeof(key), "{\"id\":%" PRIu32 ",\"type\":\"device\"", f->dev_id);
	dev = strstr(resp, key);
	end = dev ? strchr(dev, ']') : NULL;
	if (dev && end) {
		*end = 0;
		if (has_pasid)
			snprintf(key, sizeof(key), "{\"pasid\":%" PRIu32 ",", pasid);
		else
			snprintf(key, sizeof(key), "{\"pt_id\":");
		p = strstr(dev, key);
		if (p && iopfd_json_u64(p, "pt_id", &v) == 0 && v <= UINT32_MAX)
			*pt_id = (uint32_t)v;
	}
	free(resp);
}

/**
 * pf_vfio_copy_in() - the argsz/flags rules vfio_df_ioctl_attach_pt() and
 * _detach_pt() share: @minsz bytes of @arg into @dst (EINVAL when argsz is
 * below them, or flags has a bit other than @pasid_flag); with @pasid_flag
 * set, the u32 at @pasid_off too (EINVAL when argsz does not cover it).
 *
 * Return: 1 with the PASID in *@pasid, 0 without, or -EINVAL.
 */
static int pf_vfio_copy_in(void *dst, const void *arg, size_t minsz, uint32_t pasid_flag, size_t pasid_off,
			   uint32_t *pasid)
{
	uint32_t hdr[2]; /* argsz, flags */

	memcpy(dst, arg, minsz);
	memcpy(hdr, arg, sizeof(hdr));
	if (hdr[0] < minsz || (hdr[1] & ~pasid_flag))
		return -EINVAL;
	if (!(hdr[1] & pasid_flag))
		return 0;
	if (hdr[0] < pasid_off + sizeof(*pasid))
		return -EINVAL;
	memcpy(pasid, (const unsigned char *)arg + pasid_off, sizeof(*pasid));
	return 1;
}

/*
 * vfio_df_ioctl_attach_pt(): a second attach at the same place replaces
 * (vfio_iommufd_physical_attach_ioas / _pasid_attach_ioas), and pt_id comes
 * back as the hwpt attached.
 */
static int pf_attach(struct pf_file *f, void *arg)
{
	struct iopfd_vfio_device_attach_iommufd_pt at;
	char path[96], rest[64], body[96];
	bool pasid, attached;

	int rc;

	memset(&at, 0, sizeof(at));
	rc = pf_vfio_copy_in(&at, arg, IOPFD_VFIO_MIN_ATTACH, IOPFD_VFIO_DEVICE_ATTACH_PASID,
			     offsetof(struct iopfd_vfio_device_attach_iommufd_pt, pasid), &at.pasid);
	if (rc < 0)
		return rc;
	pasid = rc;
	attached = pasid ? pf_pasid_slot(f, at.pasid) >= 0 : f->rid_attached;
	if (pasid && !attached && f->npasids >= PF_MAX_PASIDS)
		return -ENOSPC;
	snprintf(rest, sizeof(rest), "/devices/%" PRIu32 "/%s", f->dev_id, attached ? "replace" : "attach");
	pf_ctx_path(path, sizeof(path), f->ctx, rest);
	if (pasid)
		snprintf(body, sizeof(body), "{\"pt_id\":%" PRIu32 ",\"pasid\":%" PRIu32 "}", at.pt_id, at.pasid);
	else
		snprintf(body, sizeof(body), "{\"pt_id\":%" PRIu32 "}", at.pt_id);
	if (pf_rest("POST", path, f->ctx->token, body, NULL) < 0)
		return -errno;
	if (pasid && !attached)
		f->pasids[f->npasids++] = at.pasid;
	else if (!pasid)
		f->rid_attached = true;
	pf_attached_pt(f, pasid, at.pasid, &at.pt_id);
	memcpy((unsigned char *)arg + offsetof(struct iopfd_vfio_device_attach_iommufd_pt, pt_id), &at.pt_id,
	       sizeof(at.pt_id));
	return 0;
}

/* vfio_df_ioctl_detach_pt(): detaching what is not attached does nothing. */
static int pf_detach(struct pf_file *f, void *arg)
{
	struct iopfd_vfio_device_detach_iommufd_pt dt;
	char path[96], rest[64], body[64];
	bool pasid;
	int slot = -1;

	int rc;

	memset(&dt, 0, sizeof(dt));
	rc = pf_vfio_copy_in(&dt, arg, IOPFD_VFIO_MIN_DETACH, IOPFD_VFIO_DEVICE_DETACH_PASID,
			     offsetof(struct iopfd_vfio_device_detach_iommufd_pt, pasid), &dt.pasid);
	if (rc < 0)
		return rc;
	pasid = rc;
	if (pasid) {
		slot = pf_pasid_slot(f, dt.pasid);
		if (slot < 0)
			return 0;
	} else if (!f->rid_attached) {
		return 0;
	}
	snprintf(rest, sizeof(rest), "/devices/%" PRIu32 "/detach", f->dev_id);
	pf_ctx_path(path, sizeof(path), f->ctx, rest);
	if (pasid)
		snprintf(body, sizeof(body), "{\"pasid\":%" PRIu32 "}", dt.pasid);
	else
		snprintf(body, sizeof(body), "{}");
	if (pf_rest("POST", path, f->ctx->token, body, NULL) < 0)
		return -errno;
	if (pasid)
		f->pasids[slot] = f->pasids[--f->npasids];
	else
		f->rid_attached = false;
	return 0;
}

/**
 * pf_device_ioctl() - vfio_device_fops_unl_ioctl() on a cdev: BIND first,
 * then everything else needs the device bound (EINVAL before). The
 * device's own ioctls (regions, irqs, reset) are not emulated: ENOTTY.
 */
static int pf_device_ioctl(struct pf_file *f, unsigned long request, void *arg)
{
	if (request == IOPFD_VFIO_DEVICE_BIND_IOMMUFD)
		return arg ? pf_bind(f, arg) : -EFAULT;
	if (!f->bound)
		return -EINVAL;
	if (request == IOPFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT)
		return arg ? pf_attach(f, arg) : -EFAULT;
	if (request == IOPFD_VFIO_DEVICE_DETACH_IOMMUFD_PT)
		return arg ? pf_detach(f, arg) : -EFAULT;
	return -ENOTTY;
}

PF_EXPORT int ioctl(int fd, unsigned long request, ...)
{
	struct pf_file *f;
	va_list ap;
	void *arg;
	int rc;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	pf_init();
	pthread_mutex_lock(&pf_lock);
	f = pf_get(fd);
	if (f && f->kind != PF_FAULT)
		f->fdrefs++; /* as fdget(): a close during the call releases the file after it */
	pthread_mutex_unlock(&pf_lock);
	if (!f || f->kind == PF_FAULT)
		return real_ioctl(fd, request, arg);
	pthread_mutex_lock(&pf_ioctl_lock);
	if (f->kind == PF_IOMMUFD)
		rc = pf_iommufd_ioctl(f->ctx, request, arg);
	else
		rc = pf_device_ioctl(f, request, arg);
	pthread_mutex_unlock(&pf_ioctl_lock);
	pf_file_put(f);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}
