/* SPDX-License-Identifier: MIT */
/*
 * ws.c - a minimal RFC 6455 client (see ws.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ws.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept ---------------------- */

static uint32_t rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80], a, b, c, d, e, t;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (i = 0; i < 80; i++) {
		uint32_t f, k;

		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		t = rol32(a, 5) + f + e + k + w[i];
		e = d, d = c, c = rol32(b, 30), b = a, a = t;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const void *data, size_t len, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	const unsigned char *p = data;
	unsigned char tail[128];
	size_t i, rest = len % 64, tl;
	uint64_t bits = (uint64_t)len * 8;

	for (i = 0; i + 64 <= len; i += 64)
		sha1_block(h, p + i);
	memset(tail, 0, sizeof(tail));
	memcpy(tail, p + i, rest);
	tail[rest] = 0x80;
	tl = rest < 56 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
	sha1_block(h, tail);
	if (tl == 128)
		sha1_block(h, tail + 64);
	for (i = 0; i < 20; i++)
		out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*out++ = tab[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*out++ = tab[in[i + 2] & 63];
	}
	if (len - i == 1) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[(in[i] & 3) << 4];
		*out++ = '=';
		*out++ = '=';
	} else if (len - i == 2) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*out++ = tab[(in[i + 1] & 15) << 2];
		*out++ = '=';
	}
	*out = 0;
}

/* ---- randomness: the handshake key and the masking keys ---------------------- */

static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rng_state;

/** Bytes for keys: getrandom() when it answers, else a seeded xorshift (masks need no secrecy). */
static void random_bytes(void *out, size_t len)
{
	unsigned char *p = out;

	if (getrandom(out, len, GRND_NONBLOCK) == (ssize_t)len)
		return;
	pthread_mutex_lock(&rng_lock);
	if (!rng_state) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		rng_state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16) ^ 0x9e3779b97f4a7c15ull;
	}
	while (len--) {
		rng_state ^= rng_state << 13;
		rng_state ^= rng_state >> 7;
		rng_state ^= rng_state << 17;
		*p++ = (unsigned char)rng_state;
	}
	pthread_mutex_unlock(&rng_lock);
}

/** A masking key: a per-thread xorshift seeded once (RFC 6455 masks need unpredictability against proxies, not secrecy). */
static void mask_key(unsigned char out[4])
{
	static __thread uint64_t state;

	if (!state) {
		random_bytes(&state, sizeof(state));
		state |= 1;
	}
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	memcpy(out, &state, 4);
}

/* ---- the opening handshake --------------------------------------------------- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int ws_handshake(int fd, const struct iopfd_url *u, const char *path, const char *token,
		 const char *subprotocol, struct ws_reader *rd, int timeout_ms)
{
	unsigned char nonce[16], digest[20];
	char key[32], accept_want[32], concat[96], value[128], *req = NULL;
	char head[8192];
	size_t have;
	int n, hlen, status;

	random_bytes(nonce, sizeof(nonce));
	base64(nonce, sizeof(nonce), key);
	n = asprintf(&req,
		     "GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"
		     "%s%s%s\r\n",
		     u->prefix, path, u->hostport, key, subprotocol,
		     token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
	if (n < 0) {
		errno = ENOMEM;
		return -1;
	}
	if (iopfd_write_all(fd, req, (size_t)n) < 0) {
		free(req);
		return -1;
	}
	free(req);
	hlen = iopfd_read_head(fd, head, sizeof(head), &have, timeout_ms);
	if (hlen < 0)
		return -1;
	status = iopfd_http_status(head);
	if (status < 0)
		return -1;
	if (status != 101) {
		/* A refusal: the daemon's {errno, message} body, which may come after the head. */
		struct iopfd_http_response r = { .status = status };

		if (iopfd_http_header(head, "Content-Length", value, sizeof(value)) == 0)
			iopfd_read_more(fd, head, sizeof(head), &have, (size_t)hlen + strtoul(value, NULL, 10), timeout_ms);
		r.body = head + hlen;
		r.body_len = have - (size_t)hlen;

		errno = iopfd_http_errno(&r);
		return -1;
	}
	snprintf(concat, sizeof(concat), "%s%s", key, WS_GUID);
	sha1(concat, strlen(concat), digest);
	base64(digest, sizeof(digest), accept_want);
	/* Frames that came with the head. */
	if (have > (size_t)hlen) {
		size_t extra = have - (size_t)hlen;
		unsigned char *b = malloc(extra > 65536 ? extra : 65536);

		if (!b) {
			errno = ENOMEM;
			return -1;
		}
		memcpy(b, head + hlen, extra);
		free(rd->buf);
		rd->buf = b;
		rd->cap = extra > 65536 ? extra : 65536;
		rd->pos = 0;
		rd->len = extra;
	}
	head[hlen] = 0;
	if (iopfd_http_header(head, "Sec-WebSocket-Accept", value, sizeof(value)) < 0 || strcmp(value, accept_want) ||
	    iopfd_http_header(head, "Sec-WebSocket-Protocol", value, sizeof(value)) < 0 || strcmp(value, subprotocol) ||
	    iopfd_http_header(head, "Upgrade", value, sizeof(value)) < 0 || strcasecmp(value, "websocket")) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* ---- reading frames ------------------------------------------------------------ */

void ws_reader_init(struct ws_reader *rd)
{
	memset(rd, 0, sizeof(*rd));
}

void ws_reader_free(struct ws_reader *rd)
{
	free(rd->buf);
	free(rd->msg);
	ws_reader_init(rd);
}

void ws_reader_compact(struct ws_reader *rd)
{
	if (rd->pos == 0)
		return;
	memmove(rd->buf, rd->buf + rd->pos, rd->len - rd->pos);
	rd->len -= rd->pos;
	rd->pos = 0;
}

long ws_reader_fill(struct ws_reader *rd, int fd)
{
	ssize_t r;

	ws_reader_compact(rd);
	if (rd->cap - rd->len < 65536) {
		size_t cap = rd->cap ? rd->cap * 2 : 256 * 1024;
		unsigned char *b;

		if (cap > WS_MAX_MESSAGE + 65536 && rd->cap >= WS_MAX_MESSAGE + 16)
			cap = rd->cap; /* a full frame fits: no more growth */
		b = cap == rd->cap ? rd->buf : realloc(rd->buf, cap);
		if (!b) {
			errno = ENOMEM;
			return -1;
		}
		rd->buf = b;
		rd->cap = cap;
	}
	if (rd->cap == rd->len) {
		errno = EPROTO;
		return -1;
	}
	do
		r = recv(fd, rd->buf + rd->len, rd->cap - rd->len, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		rd->len += (size_t)r;
	return (long)r;
}

/** Append @len bytes to the message being reassembled. */
static int msg_append(struct ws_reader *rd, const unsigned char *p, size_t len)
{
	if (rd->msg_len + len > WS_MAX_MESSAGE) {
		errno = EPROTO;
		return -1;
	}
	if (rd->msg_len + len > rd->msg_cap) {
		size_t cap = rd->msg_cap ? rd->msg_cap : 65536;
		unsigned char *m;

		while (cap < rd->msg_len + len)
			cap *= 2;
		m = realloc(rd->msg, cap);
		if (!m) {
			errno = ENOMEM;
			return -1;
		}
		rd->msg = m;
		rd->msg_cap = cap;
	}
	memcpy(rd->msg + rd->msg_len, p, len);
	rd->msg_len += len;
	return 0;
}

int ws_reader_next(struct ws_reader *rd, struct ws_message *out)
{
	for (;;) {
		const unsigned char *p = rd->buf + rd->pos;
		size_t avail = rd->len - rd->pos, hl = 2;
		uint64_t plen;
		int fin, op;

		if (avail < 2)
			return 0;
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		if ((p[0] & 0x70) || (p[1] & 0x80)) /* RSV bits (no extension), or a masked server frame */
			goto bad;
		plen = p[1] & 0x7f;
		if (plen == 126) {
			if (avail < 4)
				return 0;
			plen = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (plen == 127) {
			int i;

			if (avail < 10)
				return 0;
			for (plen = 0, i = 2; i < 10; i++)
				plen = plen << 8 | p[i];
			hl = 10;
		}
		if (plen > WS_MAX_MESSAGE)
			goto bad;
		if (avail < hl + plen)
			return 0;
		rd->pos += hl + (size_t)plen;
		p += hl;
		if (op >= 0x8) { /* control: unfragmented, ≤ 125 bytes */
			if (!fin || plen > 125 || (op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG))
				goto bad;
			out->op = op;
			out->data = p;
			out->len = (size_t)plen;
			return 1;
		}
		if (op == WS_OP_CONT) {
			if (!rd->msg_op)
				goto bad;
		} else if (op == WS_OP_TEXT || op == WS_OP_BINARY) {
			if (rd->msg_op)
				goto bad;
			if (fin) { /* the common case: a whole message in one frame, no copy */
				out->op = op;
				out->data = p;
				out->len = (size_t)plen;
				return 1;
			}
			rd->msg_op = op;
			rd->msg_len = 0;
		} else {
			goto bad;
		}
		if (msg_append(rd, p, (size_t)plen) < 0)
			return -1;
		if (fin) {
			out->op = rd->msg_op;
			out->data = rd->msg;
			out->len = rd->msg_len;
			rd->msg_op = 0;
			return 1;
		}
	}
bad:
	errno = EPROTO;
	return -1;
}

/* ---- writing frames ------------------------------------------------------------ */

int ws_send(int fd, int op, const void *data, size_t len)
{
	unsigned char stackbuf[4096], *frame = stackbuf, mask[4];
	const unsigned char *in = data;
	size_t hl, i;
	int rc;

	hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
	if (hl + 4 + len > sizeof(stackbuf)) {
		frame = malloc(hl + 4 + len);
		if (!frame) {
			errno = ENOMEM;
			return -1;
		}
	}
	frame[0] = (unsigned char)(0x80 | op);
	if (hl == 2) {
		frame[1] = (unsigned char)(0x80 | len);
	} else if (hl == 4) {
		frame[1] = 0x80 | 126;
		frame[2] = (unsigned char)(len >> 8);
		frame[3] = (unsigned char)len;
	} else {
		frame[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			frame[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	mask_key(mask);
	memcpy(frame + hl, mask, 4);
	for (i = 0; i < len; i++)
		frame[hl + 4 + i] = in[i] ^ mask[i & 3];
	rc = iopfd_write_all(fd, frame, hl + 4 + len);
	if (frame != stackbuf) {
		int e = errno;

		free(frame);
		errno = e;
	}
	return rc;
}
