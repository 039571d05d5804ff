/* SPDX-License-Identifier: MIT */
/*
 * DOC: http.h - the small HTTP/1.1 client libiopfd and iopfd-preload.so share
 *
 * URL parsing, a TCP connection with a deadline, one request with a JSON
 * body and its response (Connection: close), the daemon's `{errno, message}`
 * error bodies as errno values, and the few JSON field extractions the
 * clients need (no JSON library: the daemon's bodies are flat and small).
 * Every function returns -1 with errno set on failure; none prints.
 */
#ifndef IOPFD_HTTP_H
#define IOPFD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __GNUC__
#define IOPFD_HIDDEN __attribute__((visibility("hidden")))
#define IOPFD_EXPORT __attribute__((visibility("default")))
#else
#define IOPFD_HIDDEN
#define IOPFD_EXPORT
#endif

/** Default deadline of a connect + request + response, milliseconds. */
#define IOPFD_HTTP_TIMEOUT_MS 10000

/**
 * struct iopfd_url - a parsed "http://host[:port][/prefix]" (or ws://)
 * @host: the host name or address, without IPv6 brackets
 * @port: the port, as a string for getaddrinfo()
 * @prefix: the path prefix without a trailing '/', "" for none
 * @hostport: the Host header's value
 */
struct iopfd_url {
	char host[256];
	char port[8];
	char prefix[256];
	char hostport[272];
};

/**
 * struct iopfd_http_response - a response read by iopfd_http_request()
 * @status: the HTTP status
 * @body: the body, NUL-terminated, malloc()ed (free it), "" when none
 * @body_len: its length
 */
struct iopfd_http_response {
	int status;
	char *body;
	size_t body_len;
};

/** iopfd_url_parse() - parse @url into @out. Return: 0, or -1 with errno EINVAL. */
IOPFD_HIDDEN int iopfd_url_parse(const char *url, struct iopfd_url *out);

/**
 * iopfd_tcp_connect() - a connected TCP socket (close-on-exec, TCP_NODELAY)
 * @u: the daemon
 * @timeout_ms: the connect deadline
 *
 * Return: the socket, or -1 with errno (ECONNREFUSED, ETIMEDOUT, ENOENT for
 * a host that does not resolve, ...).
 */
IOPFD_HIDDEN int iopfd_tcp_connect(const struct iopfd_url *u, int timeout_ms);

/** iopfd_write_all() - send all of @buf on @fd (MSG_NOSIGNAL, EINTR retried). Return: 0 or -1. */
IOPFD_HIDDEN int iopfd_write_all(int fd, const void *buf, size_t len);

/**
 * iopfd_read_head() - read an HTTP response head (up to and including the
 * blank line) within @timeout_ms; bytes read past it are kept in @buf after
 * the head.
 * @fd: the socket
 * @buf: the buffer
 * @cap: its size
 * @len: set to the bytes in @buf
 * @timeout_ms: the deadline
 *
 * Return: the head's length, or -1 with errno (EPROTO: no head in @cap
 * bytes or the peer closed first; ETIMEDOUT).
 */
IOPFD_HIDDEN int iopfd_read_head(int fd, char *buf, size_t cap, size_t *len, int timeout_ms);

/**
 * iopfd_read_more() - receive into @buf until it holds @want bytes, the
 * peer closes, @buf is full or @timeout_ms passed; NUL-terminated.
 * @fd: the socket
 * @buf: the buffer, @len bytes in it already
 * @cap: its size
 * @len: updated
 * @want: the bytes wanted in all
 * @timeout_ms: the deadline
 *
 * Return: 0 when @want bytes are there, else -1 with errno.
 */
IOPFD_HIDDEN int iopfd_read_more(int fd, char *buf, size_t cap, size_t *len, size_t want, int timeout_ms);

/**
 * iopfd_http_status() - the status of a response head ("HTTP/1.x NNN ...")
 * Return: the status, or -1 with errno EPROTO when @head is not HTTP.
 */
IOPFD_HIDDEN int iopfd_http_status(const char *head);

/**
 * iopfd_http_header() - a header's value in a response head
 * @head: the head (NUL-terminated)
 * @name: the header name, any case
 * @out: its value, trimmed
 * @cap: the size of @out
 *
 * Return: 0, or -1 when absent (or too long).
 */
IOPFD_HIDDEN int iopfd_http_header(const char *head, const char *name, char *out, size_t cap);

/**
 * iopfd_http_request() - one request on a new connection
 * @u: the daemon
 * @method: "GET", "POST", "DELETE"
 * @path: the path below @u's prefix, with its query
 * @token: a bearer token, or NULL
 * @body: a JSON body, or NULL for none
 * @resp: the response (free @resp->body)
 *
 * Return: 0 when a response arrived (whatever its status), -1 with errno
 * when none did (ECONNREFUSED, ETIMEDOUT, EPROTO, ENOMEM).
 */
IOPFD_HIDDEN int iopfd_http_request(const struct iopfd_url *u, const char *method, const char *path,
				    const char *token, const char *body, struct iopfd_http_response *resp);

/**
 * iopfd_errno_of_name() - the errno named @name ("ENOENT") or -1 when unknown.
 */
IOPFD_HIDDEN int iopfd_errno_of_name(const char *name);

/**
 * iopfd_http_errno() - the errno of a failed response: the body's `errno`
 * field when it is the daemon's `{errno, message}`, else EPROTO (the peer
 * is not an iopfd).
 */
IOPFD_HIDDEN int iopfd_http_errno(const struct iopfd_http_response *resp);

/**
 * iopfd_json_u64() - the number of top-level-or-nested key "@key" in @json
 * (the first occurrence of `"key":`), decimal or a "0x…" string.
 * Return: 0, or -1 when absent or not a number.
 */
IOPFD_HIDDEN int iopfd_json_u64(const char *json, const char *key, uint64_t *out);

/**
 * iopfd_json_str() - the string value of key "@key" in @json (first
 * occurrence; escapes other than \" and \\ are copied as is).
 * Return: 0, or -1 when absent, not a string or longer than @cap - 1.
 */
IOPFD_HIDDEN int iopfd_json_str(const char *json, const char *key, char *out, size_t cap);

#endif /* IOPFD_HTTP_H */
