/* SPDX-License-Identifier: MIT */
/*
 * DOC: libiopfd - an iopfd fault queue as a file descriptor
 *
 * iopfd_fault_fd() opens a fault queue's binary stream (WebSocket
 * subprotocol `iopf.v1.uapi` on GET /v1/contexts/:ctx/faults/:id/stream)
 * and returns an ordinary descriptor with the semantics of the fd that
 * IOMMU_FAULT_QUEUE_ALLOC returns (the kernel's iommufd_fault_fops_read and
 * iommufd_fault_fops_write):
 *
 * - read() of a multiple of 40 bytes returns whole groups of
 *   struct iommu_hwpt_pgfault records (as many as fit), blocking until one
 *   is waiting, or EAGAIN with O_NONBLOCK; a size that is not a multiple of
 *   40 is ESPIPE;
 * - write() of struct iommu_hwpt_page_response entries (a multiple of 8
 *   bytes, else ESPIPE) returns the bytes consumed, stopping at the first
 *   bad entry; -1 with the kernel's errno (EINVAL) when the first is bad.
 *   It is pipelined: checked locally (the code; the cookie is one this
 *   fd's read() returned and nothing answered since) and returned before
 *   the daemon confirms; a cookie the fd cannot judge makes it wait for the
 *   daemon's verdict. An entry the daemon refuses after all (its cookie
 *   expired or was revoked in the meantime) makes the next write() fail
 *   once with EIO (the entries after it are sent again, none is lost);
 * - poll()/epoll/select report POLLIN exactly when a group is waiting;
 * - close() waits until the daemon has processed every answer written,
 *   then closes the stream: the daemon redelivers the groups that were
 *   read and not answered.
 *
 * The library defines read(), write() and close() (they forward to libc for
 * every descriptor that is not one of its own), so a program written with
 * plain read()/write()/close() gets these semantics when linked with
 * libiopfd; iopfd_read()/iopfd_write()/iopfd_close() are the same calls
 * under their own names. clients/c/README.md says what is exact and what
 * is approximate.
 *
 * Opening fails with -1 and errno: ECONNREFUSED (no daemon at the URL),
 * EACCES (bad token), ENOENT (no such queue), EPROTO (the peer is not an
 * iopfd), EINVAL (a URL that is not http://host[:port][/]), ENOMEM, EMFILE,
 * or another errno of socket()/connect().
 */
#ifndef IOPFD_H
#define IOPFD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The kernel's uAPI (include/uapi/linux/iommufd.h), byte for byte. A
 * program that includes <linux/iommufd.h> first (new enough to define
 * IOMMU_FAULT_QUEUE_ALLOC) gets the kernel's own definitions; the asserts
 * below hold for both.
 */
#if !defined(IOPFD_UAPI_PGFAULT_DEFINED) && !defined(IOMMU_FAULT_QUEUE_ALLOC)
#define IOPFD_UAPI_PGFAULT_DEFINED 1

/** enum iommu_hwpt_pgfault_flags - flags of struct iommu_hwpt_pgfault */
enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = (1 << 0),
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = (1 << 1),
};

/** enum iommu_hwpt_pgfault_perm - perm bits of struct iommu_hwpt_pgfault */
enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = (1 << 0),
	IOMMU_PGFAULT_PERM_WRITE = (1 << 1),
	IOMMU_PGFAULT_PERM_EXEC = (1 << 2),
	IOMMU_PGFAULT_PERM_PRIV = (1 << 3),
};

/**
 * struct iommu_hwpt_pgfault - one page request record (40 bytes)
 * @flags: IOMMU_PGFAULT_FLAGS_*
 * @dev_id: the device's object id in the context
 * @pasid: the PASID, valid with IOMMU_PGFAULT_FLAGS_PASID_VALID
 * @grpid: the page request group index
 * @perm: IOMMU_PGFAULT_PERM_*
 * @__reserved: 0
 * @addr: the faulting page address
 * @length: 0
 * @cookie: names the group in its response; the same on all its records
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

/** enum iommufd_page_response_code - the code of a page response */
enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/**
 * struct iommu_hwpt_page_response - one response (8 bytes)
 * @cookie: the group's cookie
 * @code: enum iommufd_page_response_code
 */
struct iommu_hwpt_page_response {
	uint32_t cookie;
	uint32_t code;
};
#endif

#if !defined(__cplusplus)
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
#endif

/**
 * iopfd_fault_fd() - open a fault queue's stream as a fault fd
 * @url: the daemon, "http://host[:port]" (default port 80)
 * @ctx: the context id
 * @token: the context's token
 * @fault_id: the fault queue's object id
 *
 * Return: the fd (close-on-exec), or -1 with errno (see the DOC above).
 */
int iopfd_fault_fd(const char *url, uint32_t ctx, const char *token, uint32_t fault_id);

/**
 * iopfd_veventq_fd() - open a vEVENTQ's stream (`vevent.v1.uapi`) as the fd
 * IOMMU_VEVENTQ_ALLOC returns: read() returns whole events (an 8-byte
 * struct iommufd_vevent_header, then its payload), nothing is answered;
 * write() is EINVAL.
 * @url: the daemon
 * @ctx: the context id
 * @token: the context's token
 * @veventq_id: the vEVENTQ's object id
 *
 * Return: the fd, or -1 with errno; ENOENT when the daemon has no such
 * vEVENTQ (or no vEVENTQ routes).
 */
int iopfd_veventq_fd(const char *url, uint32_t ctx, const char *token, uint32_t veventq_id);

/** iopfd_read() - read() on an iopfd fd with the kernel's semantics; plain read() otherwise. */
ssize_t iopfd_read(int fd, void *buf, size_t count);

/** iopfd_write() - write() on an iopfd fd with the kernel's semantics; plain write() otherwise. */
ssize_t iopfd_write(int fd, const void *buf, size_t count);

/** iopfd_close() - close an iopfd fd (its stream too); plain close() otherwise. */
int iopfd_close(int fd);

/** iopfd_is_fd() - 1 if @fd was returned by iopfd_fault_fd()/iopfd_veventq_fd() and is open, else 0. */
int iopfd_is_fd(int fd);

#ifdef __cplusplus
}
#endif

#endif /* IOPFD_H */
