/* SPDX-License-Identifier: MIT */
/*
 * DOC: ws.h - a minimal RFC 6455 client (no TLS, no extensions)
 *
 * The opening handshake (with the Sec-WebSocket-Accept check and one
 * subprotocol), masked client frames, and an incremental reader of server
 * frames that reassembles fragmented messages. Enough for the daemon's
 * binary stream subprotocols; nothing here knows about fault queues.
 */
#ifndef IOPFD_WS_H
#define IOPFD_WS_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* Opcodes (RFC 6455 §5.2). */
#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa

/** The largest message the reader accepts (the daemon's frames are ≤ 1 MiB). */
#define WS_MAX_MESSAGE (16u << 20)

/**
 * struct ws_reader - incremental reader of server frames
 * @buf: bytes received and not yet consumed
 * @pos: the first byte not yet consumed
 * @len: their count
 * @cap: @buf's size
 * @msg: the message being reassembled from fragments
 * @msg_len: its length
 * @msg_cap: @msg's size
 * @msg_op: its opcode (TEXT or BINARY), 0 when none is open
 */
struct ws_reader {
	unsigned char *buf;
	size_t pos, len, cap;
	unsigned char *msg;
	size_t msg_len, msg_cap;
	int msg_op;
};

/**
 * struct ws_message - one complete message or control frame
 * @op: WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE, WS_OP_PING or WS_OP_PONG
 * @data: the payload (valid until the next ws_reader_next() or ws_reader_fill())
 * @len: its length
 */
struct ws_message {
	int op;
	const unsigned char *data;
	size_t len;
};

/**
 * ws_handshake() - open a WebSocket on the connected socket @fd
 * @fd: a connected TCP socket
 * @u: the daemon (Host header, path prefix)
 * @path: the resource below the prefix, with its query
 * @token: sent as `Authorization: Bearer`, or NULL
 * @subprotocol: the one subprotocol offered (and required in the reply)
 * @rd: an initialised reader: bytes received after the head go into it
 * @timeout_ms: the deadline
 *
 * Return: 0, or -1 with errno: the daemon's errno for a refusal with an
 * `{errno, message}` body (EACCES, ENOENT, EINVAL, ...), EPROTO for any
 * other reply (not HTTP, no `{errno}`, a wrong accept key or subprotocol),
 * ETIMEDOUT, or the socket's errno.
 */
IOPFD_HIDDEN int ws_handshake(int fd, const struct iopfd_url *u, const char *path, const char *token,
			      const char *subprotocol, struct ws_reader *rd, int timeout_ms);

/** ws_reader_init() - an empty reader. */
IOPFD_HIDDEN void ws_reader_init(struct ws_reader *rd);

/** ws_reader_free() - free a reader's buffers. */
IOPFD_HIDDEN void ws_reader_free(struct ws_reader *rd);

/**
 * ws_reader_fill() - receive what the socket has (one recv()).
 * Return: bytes received (0: the peer closed), or -1 with errno.
 */
IOPFD_HIDDEN long ws_reader_fill(struct ws_reader *rd, int fd);

/**
 * ws_reader_next() - the next complete message in the buffer
 * @rd: the reader
 * @out: the message
 *
 * Call ws_reader_compact() once the messages are handled.
 * Return: 1 with @out set, 0 when more bytes are needed, -1 with errno
 * EPROTO on a frame the client must not accept (masked, reserved bits,
 * bad opcode or fragmentation, too large).
 */
IOPFD_HIDDEN int ws_reader_next(struct ws_reader *rd, struct ws_message *out);

/** ws_reader_compact() - drop the consumed bytes (invalidates earlier messages). */
IOPFD_HIDDEN void ws_reader_compact(struct ws_reader *rd);

/**
 * ws_send() - send one masked frame (FIN set)
 * @fd: the socket
 * @op: the opcode
 * @data: the payload
 * @len: its length
 *
 * Return: 0, or -1 with errno.
 */
IOPFD_HIDDEN int ws_send(int fd, int op, const void *data, size_t len);

#endif /* IOPFD_WS_H */
