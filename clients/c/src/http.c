/* SPDX-License-Identifier: MIT */
/*
 * http.c - the small HTTP/1.1 client shared by libiopfd and iopfd-preload.so
 * (see http.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int iopfd_url_parse(const char *url, struct iopfd_url *out)
{
	const char *p = url, *host, *host_end, *port = NULL, *path;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!url)
		goto bad;
	if (!strncasecmp(p, "http://", 7))
		p += 7;
	else if (!strncasecmp(p, "ws://", 5))
		p += 5;
	else if (strstr(p, "://"))
		goto bad; /* https, wss: no TLS here */
	if (*p == '[') {
		host = p + 1;
		host_end = strchr(host, ']');
		if (!host_end)
			goto bad;
		p = host_end + 1;
	} else {
		host = p;
		p += strcspn(p, ":/?#");
		host_end = p;
	}
	if (*p == ':') {
		port = ++p;
		p += strspn(p, "0123456789");
		if (p == port || p - port > 5 || atoi(port) < 1 || atoi(port) > 65535)
			goto bad;
	}
	if (*p && *p != '/')
		goto bad;
	path = p;
	n = (size_t)(host_end - host);
	if (n == 0 || n >= sizeof(out->host))
		goto bad;
	memcpy(out->host, host, n);
	if (port)
		snprintf(out->port, sizeof(out->port), "%d", atoi(port));
	else
		strcpy(out->port, "80");
	n = strcspn(path, "?#");
	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n >= sizeof(out->prefix))
		goto bad;
	memcpy(out->prefix, path, n);
	if (strchr(out->host, ':'))
		snprintf(out->hostport, sizeof(out->hostport), "[%s]:%s", out->host, out->port);
	else
		snprintf(out->hostport, sizeof(out->hostport), "%s:%s", out->host, out->port);
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

/** Milliseconds on the monotonic clock. */
static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Wait for @events on @fd until @deadline (now_ms()); 0, or -1 with ETIMEDOUT. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		long long left = deadline - now_ms();
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

int iopfd_tcp_connect(const struct iopfd_url *u, int timeout_ms)
{
	struct addrinfo hints, *res = NULL, *ai;
	long long deadline = now_ms() + timeout_ms;
	int fd = -1, err = ECONNREFUSED, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc) {
		errno = rc == EAI_SYSTEM ? errno : (rc == EAI_MEMORY ? ENOMEM : ENOENT);
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1, flags;
		socklen_t len = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		flags = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				err = errno;
				goto next;
			}
			if (wait_fd(fd, POLLOUT, deadline) < 0) {
				err = errno;
				goto next;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
				goto next;
		}
		fcntl(fd, F_SETFL, flags);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		freeaddrinfo(res);
		return fd;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	errno = err ? err : ECONNREFUSED;
	return -1;
}

int iopfd_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/**
 * recv_some() - one recv() of at most @room bytes at @buf + *@len once @fd
 * is readable (before @deadline); NUL-terminates. Return: 0, or -1 with
 * errno (EPROTO when the peer closed, ETIMEDOUT).
 */
static int recv_some(int fd, char *buf, size_t *len, size_t room, long long deadline)
{
	for (;;) {
		ssize_t r;

		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
		r = recv(fd, buf + *len, room, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EPROTO;
			return -1;
		}
		*len += (size_t)r;
		buf[*len] = 0;
		return 0;
	}
}

int iopfd_read_head(int fd, char *buf, size_t cap, size_t *len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t have = 0;

	for (;;) {
		char *end;

		if (have + 1 >= cap) {
			errno = EPROTO;
			return -1;
		}
		if (recv_some(fd, buf, &have, cap - 1 - have, deadline) < 0)
			return -1;
		end = strstr(buf, "\r\n\r\n");
		if (end) {
			*len = have;
			return (int)(end + 4 - buf);
		}
	}
}

int iopfd_read_more(int fd, char *buf, size_t cap, size_t *len, size_t want, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	if (want > cap - 1)
		want = cap - 1;
	while (*len < want)
		if (recv_some(fd, buf, len, want - *len, deadline) < 0)
			return -1;
	return 0;
}

int iopfd_http_status(const char *head)
{
	int status;

	if (strncmp(head, "HTTP/1.", 7) || sscanf(head + 7, "%*c %3d", &status) != 1 || status < 100 || status > 599) {
		errno = EPROTO;
		return -1;
	}
	return status;
}

int iopfd_http_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line && line[2] != '\r' && line[2]) {
		const char *p = line + 2, *eol = strstr(p, "\r\n");

		if (!eol)
			break;
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;
			size_t vl;

			while (*v == ' ' || *v == '\t')
				v++;
			vl = (size_t)(eol - v);
			while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			if (vl >= cap)
				return -1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return 0;
		}
		line = eol;
	}
	return -1;
}

int iopfd_http_request(const struct iopfd_url *u, const char *method, const char *path,
		       const char *token, const char *body, struct iopfd_http_response *resp)
{
	long long deadline = now_ms() + IOPFD_HTTP_TIMEOUT_MS;
	size_t blen = body ? strlen(body) : 0, cap = 8192, have = 0, want = (size_t)-1;
	char *req = NULL, *buf = NULL, *hdr_end = NULL;
	int fd, err, n;

	memset(resp, 0, sizeof(*resp));
	fd = iopfd_tcp_connect(u, IOPFD_HTTP_TIMEOUT_MS);
	if (fd < 0)
		return -1;
	n = asprintf(&req,
		     "%s %s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAccept: application/json\r\n"
		     "%s%s%s%s%zu\r\n\r\n%s",
		     method, u->prefix, path, u->hostport,
		     token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
		     body ? "Content-Type: application/json\r\nContent-Length: " : "Content-Length: ",
		     blen, body ? body : "");
	if (n < 0) {
		req = NULL;
		err = ENOMEM;
		goto fail;
	}
	if (iopfd_write_all(fd, req, (size_t)n) < 0) {
		err = errno;
		goto fail;
	}
	buf = malloc(cap);
	if (!buf) {
		err = ENOMEM;
		goto fail;
	}
	for (;;) {
		ssize_t r;

		if (hdr_end && have >= want)
			break;
		if (have + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				err = ENOMEM;
				goto fail;
			}
			buf = nb;
			cap *= 2;
			if (hdr_end)
				hdr_end = NULL; /* recomputed below */
		}
		if (wait_fd(fd, POLLIN, deadline) < 0) {
			err = errno;
			goto fail;
		}
		r = recv(fd, buf + have, cap - 1 - have, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			err = errno;
			goto fail;
		}
		if (r == 0)
			break;
		have += (size_t)r;
		buf[have] = 0;
		if (!hdr_end && (hdr_end = strstr(buf, "\r\n\r\n"))) {
			char cl[32];

			*hdr_end = 0;
			if (iopfd_http_header(buf, "Content-Length", cl, sizeof(cl)) == 0)
				want = (size_t)(hdr_end + 4 - buf) + strtoull(cl, NULL, 10);
			*hdr_end = '\r';
		}
	}
	buf[have] = 0;
	hdr_end = strstr(buf, "\r\n\r\n");
	if (!hdr_end || (resp->status = iopfd_http_status(buf)) < 0) {
		err = EPROTO;
		goto fail;
	}
	resp->body_len = have - (size_t)(hdr_end + 4 - buf);
	memmove(buf, hdr_end + 4, resp->body_len + 1);
	resp->body = buf;
	free(req);
	close(fd);
	return 0;
fail:
	free(req);
	free(buf);
	close(fd);
	resp->status = 0;
	errno = err;
	return -1;
}

/** The errno names of the daemon's wire (its errno vocabulary). */
static const struct {
	const char *name;
	int value;
} errno_names[] = {
	{ "EPERM", EPERM },	    { "ENOENT", ENOENT },	{ "EIO", EIO },
	{ "E2BIG", E2BIG },	    { "EAGAIN", EAGAIN },	{ "ENOMEM", ENOMEM },
	{ "EACCES", EACCES },	    { "EFAULT", EFAULT },	{ "EBUSY", EBUSY },
	{ "EEXIST", EEXIST },	    { "ENODEV", ENODEV },	{ "EINVAL", EINVAL },
	{ "ENOSPC", ENOSPC },	    { "ESPIPE", ESPIPE },	{ "EOPNOTSUPP", EOPNOTSUPP },
	{ "EOVERFLOW", EOVERFLOW }, { "ETIMEDOUT", ETIMEDOUT }, { "EMSGSIZE", EMSGSIZE },
	{ "EPROTO", EPROTO },	    { "ENOTTY", ENOTTY },	{ "EBADF", EBADF },
};

int iopfd_errno_of_name(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (!strcmp(errno_names[i].name, name))
			return errno_names[i].value;
	return -1;
}

int iopfd_http_errno(const struct iopfd_http_response *resp)
{
	char name[32];
	int e;

	if (!resp->body || iopfd_json_str(resp->body, "errno", name, sizeof(name)) < 0)
		return EPROTO;
	e = iopfd_errno_of_name(name);
	return e < 0 ? EPROTO : e;
}

/** The first `"key"` followed by ':' in @json: a pointer past the ':' and blanks, or NULL. */
static const char *json_find(const char *json, const char *key)
{
	size_t n = strlen(key);
	const char *p = json;

	while ((p = strchr(p, '"'))) {
		if (!strncmp(p + 1, key, n) && p[n + 1] == '"') {
			const char *q = p + n + 2;

			while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
				q++;
			if (*q == ':') {
				q++;
				while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
					q++;
				return q;
			}
		}
		p++;
	}
	return NULL;
}

int iopfd_json_u64(const char *json, const char *key, uint64_t *out)
{
	const char *p = json_find(json, key);
	char *end;
	int quoted;

	if (!p)
		return -1;
	quoted = *p == '"';
	if (quoted)
		p++;
	if (!(*p >= '0' && *p <= '9'))
		return -1;
	errno = 0;
	*out = strtoull(p, &end, quoted ? 0 : 10);
	if (errno || end == p || (quoted && *end != '"'))
		return -1;
	return 0;
}

int iopfd_json_str(const char *json, const char *key, char *out, size_t cap)
{
	const char *p = json_find(json, key);
	size_t n = 0;

	if (!p || *p != '"')
		return -1;
	for (p++; *p && *p != '"'; p++) {
		if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		if (n + 1 >= cap)
			return -1;
		out[n++] = *p;
	}
	if (*p != '"')
		return -1;
	out[n] = 0;
	return 0;
}
