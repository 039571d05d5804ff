/* SPDX-License-Identifier: MIT */
/*
 * DOC: uapi-vmm.c - a VMM's fault path written only against the kernel uAPI
 *
 *   uapi-vmm [--pasid P] [--rules] [--lifecycle] [--arm] DEVICE INVALID_MASK ANSWER_LIMIT
 *
 * Nothing here knows iopfd: the program opens /dev/iommu and
 * /dev/vfio/devices/DEVICE, binds the device (VFIO_DEVICE_BIND_IOMMUFD),
 * allocates an IOAS and maps memory into it (IOMMU_IOAS_ALLOC,
 * IOMMU_IOAS_MAP), a fault queue (IOMMU_FAULT_QUEUE_ALLOC) and a
 * fault-capable hwpt on the IOAS (IOMMU_HWPT_ALLOC with
 * IOMMU_HWPT_FAULT_ID_VALID, and IOMMU_HWPT_ALLOC_PASID), attaches the
 * device's RID to it (VFIO_DEVICE_ATTACH_IOMMUFD_PT; with --pasid also PASID
 * P), prints
 *
 *   ready dev_id=D ioas_id=I fault_id=F hwpt_id=H
 *
 * and serves the fault fd with fault-loop.h until it ends (groups whose
 * address has a bit of INVALID_MASK are answered INVALID; after
 * ANSWER_LIMIT answered groups, later ones are read and held, never
 * answered; -1 = no limit). With --rules it first checks, and prints as
 * "rule NAME ok", the kernel's ioctl rules it relies on (extensible struct
 * sizes, E2BIG, ENOTTY, EOPNOTSUPP, EBUSY on a device or an open fault
 * queue, the fault fd's ESPIPE and EINVAL); a broken rule prints
 * "rule NAME FAILED ..." and exits 1. With --lifecycle it then, instead of
 * serving, allocates a nested (vtd_s1) hwpt, invalidates it, replaces the
 * RID's attachment, attaches and detaches a PASID, unmaps, and closes its
 * files one by one, the /dev/iommu one's dup() and F_DUPFD_CLOEXEC copy
 * last ("step NAME", then a line on stdin to go on). With --arm (a device
 * behind an SMMUv3) it does a VMM's vSMMU instead of the fault path: a
 * vIOMMU, a vDEVICE, a nested hwpt with the guest's STE, invalidation
 * commands on the vIOMMU and a vEVENTQ, whose fd it reads one event from
 * (arm_flow()).
 *
 * Run on a kernel with iommufd and a PRI-capable device, or unmodified
 * under iopfd-preload.so (test/native/preload.test.ts). The structs are
 * this program's own copies of <linux/iommufd.h> and <linux/vfio.h>,
 * checked by _Static_assert on size and every offset, so it builds where
 * the installed headers predate them.
 */
#define _GNU_SOURCE
#include "fault-loop.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- include/uapi/linux/iommufd.h (this program's copy) ------------------ */

#define IOMMUFD_TYPE (';')

struct iommu_destroy {
	uint32_t size;
	uint32_t id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)

struct iommu_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)

#define IOMMU_IOAS_MAP_FIXED_IOVA (1 << 0)
#define IOMMU_IOAS_MAP_WRITEABLE (1 << 1)
#define IOMMU_IOAS_MAP_READABLE (1 << 2)

struct iommu_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va __attribute__((aligned(8)));
	uint64_t length __attribute__((aligned(8)));
	uint64_t iova __attribute__((aligned(8)));
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)

struct iommu_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova __attribute__((aligned(8)));
	uint64_t length __attribute__((aligned(8)));
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)

#define IOMMU_HWPT_FAULT_ID_VALID (1 << 2)
#define IOMMU_HWPT_ALLOC_PASID (1 << 3)
#define IOMMU_HWPT_DATA_NONE 0

struct iommu_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t __reserved;
	uint32_t data_type;
	uint32_t data_len;
	uint64_t data_uptr __attribute__((aligned(8)));
	uint32_t fault_id;
	uint32_t __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, 0x89)

#define IOMMU_HWPT_ALLOC_NEST_PARENT (1 << 0)
#define IOMMU_HWPT_DATA_VTD_S1 1

struct iommu_hwpt_vtd_s1 {
	uint64_t flags __attribute__((aligned(8)));
	uint64_t pgtbl_addr __attribute__((aligned(8)));
	uint32_t addr_width;
	uint32_t __reserved;
};

#define IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 0

struct iommu_hwpt_vtd_s1_invalidate {
	uint64_t addr __attribute__((aligned(8)));
	uint64_t npages __attribute__((aligned(8)));
	uint32_t flags;
	uint32_t __reserved;
};

struct iommu_hwpt_invalidate {
	uint32_t size;
	uint32_t hwpt_id;
	uint64_t data_uptr __attribute__((aligned(8)));
	uint32_t data_type;
	uint32_t entry_len;
	uint32_t entry_num;
	uint32_t __reserved;
};
#define IOMMU_HWPT_INVALIDATE _IO(IOMMUFD_TYPE, 0x8d)

struct iommu_fault_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_fault_id;
	uint32_t out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, 0x8e)

/* The vIOMMU (v6.13+; struct iommu_viommu_alloc grew data_len/data_uptr in v6.16). */
#define IOMMU_HWPT_DATA_ARM_SMMUV3 2
struct iommu_hwpt_arm_smmuv3 {
	uint64_t ste[2] __attribute__((aligned(8))); /* __aligned_le64 */
};
#define IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 1
struct iommu_viommu_arm_smmuv3_invalidate {
	uint64_t cmd[2] __attribute__((aligned(8))); /* __aligned_le64 */
};
#define IOMMU_VIOMMU_TYPE_DEFAULT 0
#define IOMMU_VIOMMU_TYPE_ARM_SMMUV3 1
struct iommu_viommu_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t type;
	uint32_t dev_id;
	uint32_t hwpt_id;
	uint32_t out_viommu_id;
	uint32_t data_len;
	uint32_t __reserved;
	uint64_t data_uptr __attribute__((aligned(8)));
};
#define IOMMU_VIOMMU_ALLOC _IO(IOMMUFD_TYPE, 0x90)
struct iommu_vdevice_alloc {
	uint32_t size;
	uint32_t viommu_id;
	uint32_t dev_id;
	uint32_t out_vdevice_id;
	uint64_t virt_id __attribute__((aligned(8)));
};
#define IOMMU_VDEVICE_ALLOC _IO(IOMMUFD_TYPE, 0x91)
#define IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 1
struct iommu_veventq_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t viommu_id;
	uint32_t type;
	uint32_t veventq_depth;
	uint32_t out_veventq_id;
	uint32_t out_veventq_fd;
	uint32_t __reserved;
};
#define IOMMU_VEVENTQ_ALLOC _IO(IOMMUFD_TYPE, 0x93)
#define IOMMU_VEVENTQ_FLAG_LOST_EVENTS (1U << 0)
struct iommufd_vevent_header {
	uint32_t flags;
	uint32_t sequence;
};
struct iommu_vevent_arm_smmuv3 {
	uint64_t evt[4] __attribute__((aligned(8))); /* __aligned_le64 */
};

/* ---- include/uapi/linux/vfio.h, the iommufd cdev part (this program's copy) */

#define VFIO_TYPE (';')
#define VFIO_BASE 100

struct vfio_device_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
	uint64_t token_uuid_ptr __attribute__((aligned(8)));
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
struct vfio_device_attach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
	uint32_t pasid;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

#define VFIO_DEVICE_DETACH_PASID (1 << 0)
struct vfio_device_detach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pasid;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)

#define VM_AT(t, f, o) _Static_assert(offsetof(struct t, f) == (o), #t "." #f)
#define VM_SIZE(t, n) _Static_assert(sizeof(struct t) == (n), #t " size")
VM_SIZE(iommu_destroy, 8);
VM_AT(iommu_destroy, size, 0);
VM_AT(iommu_destroy, id, 4);
VM_SIZE(iommu_ioas_alloc, 12);
VM_AT(iommu_ioas_alloc, size, 0);
VM_AT(iommu_ioas_alloc, flags, 4);
VM_AT(iommu_ioas_alloc, out_ioas_id, 8);
VM_SIZE(iommu_ioas_map, 40);
VM_AT(iommu_ioas_map, size, 0);
VM_AT(iommu_ioas_map, flags, 4);
VM_AT(iommu_ioas_map, ioas_id, 8);
VM_AT(iommu_ioas_map, __reserved, 12);
VM_AT(iommu_ioas_map, user_va, 16);
VM_AT(iommu_ioas_map, length, 24);
VM_AT(iommu_ioas_map, iova, 32);
VM_SIZE(iommu_ioas_unmap, 24);
VM_AT(iommu_ioas_unmap, size, 0);
VM_AT(iommu_ioas_unmap, ioas_id, 4);
VM_AT(iommu_ioas_unmap, iova, 8);
VM_AT(iommu_ioas_unmap, length, 16);
VM_SIZE(iommu_hwpt_alloc, 48);
VM_AT(iommu_hwpt_alloc, size, 0);
VM_AT(iommu_hwpt_alloc, flags, 4);
VM_AT(iommu_hwpt_alloc, dev_id, 8);
VM_AT(iommu_hwpt_alloc, pt_id, 12);
VM_AT(iommu_hwpt_alloc, out_hwpt_id, 16);
VM_AT(iommu_hwpt_alloc, __reserved, 20);
VM_AT(iommu_hwpt_alloc, data_type, 24);
VM_AT(iommu_hwpt_alloc, data_len, 28);
VM_AT(iommu_hwpt_alloc, data_uptr, 32);
VM_AT(iommu_hwpt_alloc, fault_id, 40);
VM_AT(iommu_hwpt_alloc, __reserved2, 44);
VM_SIZE(iommu_hwpt_vtd_s1, 24);
VM_AT(iommu_hwpt_vtd_s1, flags, 0);
VM_AT(iommu_hwpt_vtd_s1, pgtbl_addr, 8);
VM_AT(iommu_hwpt_vtd_s1, addr_width, 16);
VM_AT(iommu_hwpt_vtd_s1, __reserved, 20);
VM_SIZE(iommu_hwpt_vtd_s1_invalidate, 24);
VM_AT(iommu_hwpt_vtd_s1_invalidate, addr, 0);
VM_AT(iommu_hwpt_vtd_s1_invalidate, npages, 8);
VM_AT(iommu_hwpt_vtd_s1_invalidate, flags, 16);
VM_AT(iommu_hwpt_vtd_s1_invalidate, __reserved, 20);
VM_SIZE(iommu_hwpt_invalidate, 32);
VM_AT(iommu_hwpt_invalidate, size, 0);
VM_AT(iommu_hwpt_invalidate, hwpt_id, 4);
VM_AT(iommu_hwpt_invalidate, data_uptr, 8);
VM_AT(iommu_hwpt_invalidate, data_type, 16);
VM_AT(iommu_hwpt_invalidate, entry_len, 20);
VM_AT(iommu_hwpt_invalidate, entry_num, 24);
VM_AT(iommu_hwpt_invalidate, __reserved, 28);
VM_SIZE(iommu_fault_alloc, 16);
VM_AT(iommu_fault_alloc, size, 0);
VM_AT(iommu_fault_alloc, flags, 4);
VM_AT(iommu_fault_alloc, out_fault_id, 8);
VM_AT(iommu_fault_alloc, out_fault_fd, 12);
VM_SIZE(iommu_hwpt_arm_smmuv3, 16);
VM_SIZE(iommu_viommu_arm_smmuv3_invalidate, 16);
VM_SIZE(iommu_viommu_alloc, 40);
VM_AT(iommu_viommu_alloc, type, 8);
VM_AT(iommu_viommu_alloc, dev_id, 12);
VM_AT(iommu_viommu_alloc, hwpt_id, 16);
VM_AT(iommu_viommu_alloc, out_viommu_id, 20);
VM_AT(iommu_viommu_alloc, data_len, 24);
VM_AT(iommu_viommu_alloc, __reserved, 28);
VM_AT(iommu_viommu_alloc, data_uptr, 32);
VM_SIZE(iommu_vdevice_alloc, 24);
VM_AT(iommu_vdevice_alloc, viommu_id, 4);
VM_AT(iommu_vdevice_alloc, dev_id, 8);
VM_AT(iommu_vdevice_alloc, out_vdevice_id, 12);
VM_AT(iommu_vdevice_alloc, virt_id, 16);
VM_SIZE(iommu_veventq_alloc, 32);
VM_AT(iommu_veventq_alloc, viommu_id, 8);
VM_AT(iommu_veventq_alloc, type, 12);
VM_AT(iommu_veventq_alloc, veventq_depth, 16);
VM_AT(iommu_veventq_alloc, out_veventq_id, 20);
VM_AT(iommu_veventq_alloc, out_veventq_fd, 24);
VM_AT(iommu_veventq_alloc, __reserved, 28);
VM_SIZE(iommufd_vevent_header, 8);
VM_SIZE(iommu_vevent_arm_smmuv3, 32);
VM_SIZE(vfio_device_bind_iommufd, 24);
VM_AT(vfio_device_bind_iommufd, argsz, 0);
VM_AT(vfio_device_bind_iommufd, flags, 4);
VM_AT(vfio_device_bind_iommufd, iommufd, 8);
VM_AT(vfio_device_bind_iommufd, out_devid, 12);
VM_AT(vfio_device_bind_iommufd, token_uuid_ptr, 16);
VM_SIZE(vfio_device_attach_iommufd_pt, 16);
VM_AT(vfio_device_attach_iommufd_pt, argsz, 0);
VM_AT(vfio_device_attach_iommufd_pt, flags, 4);
VM_AT(vfio_device_attach_iommufd_pt, pt_id, 8);
VM_AT(vfio_device_attach_iommufd_pt, pasid, 12);
VM_SIZE(vfio_device_detach_iommufd_pt, 12);
VM_AT(vfio_device_detach_iommufd_pt, argsz, 0);
VM_AT(vfio_device_detach_iommufd_pt, flags, 4);
VM_AT(vfio_device_detach_iommufd_pt, pasid, 8);

/* ---- the program ------------------------------------------------------------- */

static void die(const char *what)
{
	fprintf(stderr, "uapi-vmm: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int failures;

/** rule() - an ioctl that must fail with @want (0: succeed). */
static void rule(const char *name, int rc, int want)
{
	int got = rc < 0 ? errno : 0;

	if (got == want) {
		printf("rule %s ok\n", name);
	} else {
		printf("rule %s FAILED: expected %s, got %s\n", name, want ? strerror(want) : "success",
		       got ? strerror(got) : "success");
		failures++;
	}
	fflush(stdout);
}

/** check_rules() - the kernel's rules this program relies on. */
static void check_rules(int iommufd, int devfd, const char *devpath, uint32_t dev_id, uint32_t fault_id,
			int fault_fd)
{
	unsigned char big[32], wide[sizeof(struct vfio_device_bind_iommufd) + 8];
	struct iommu_ioas_alloc *ia = (struct iommu_ioas_alloc *)big;
	struct iommu_destroy d;
	struct iommu_ioas_map map;
	struct iommu_ioas_unmap un;
	struct iommu_hwpt_alloc hw;
	struct vfio_device_bind_iommufd bind;
	struct vfio_device_attach_iommufd_pt at;
	struct iommu_hwpt_page_response resp = { .cookie = 0xfffffff0u, .code = IOMMUFD_PAGE_RESP_SUCCESS };
	struct iommu_hwpt_pgfault rec[2];
	uint32_t ioas2;
	struct epoll_event ev;
	int p[2], n = -1, unbound, other, ep;

	memset(big, 0, sizeof(big));
	ia->size = 8;
	rule("ioas_alloc_size_below_first_version_einval", ioctl(iommufd, IOMMU_IOAS_ALLOC, ia), EINVAL);
	ia->size = sizeof(big);
	big[20] = 1;
	rule("ioas_alloc_nonzero_tail_e2big", ioctl(iommufd, IOMMU_IOAS_ALLOC, ia), E2BIG);
	big[20] = 0;
	rule("ioas_alloc_zero_tail_ok", ioctl(iommufd, IOMMU_IOAS_ALLOC, ia), 0);
	ioas2 = ia->out_ioas_id;
	rule("ioas_alloc_copies_back_only_its_struct", big[12] || big[20] ? -1 : 0, 0);
	memset(big, 0, sizeof(big));
	ia->size = sizeof(*ia);
	ia->flags = 1;
	rule("ioas_alloc_flags_eopnotsupp", ioctl(iommufd, IOMMU_IOAS_ALLOC, ia), EOPNOTSUPP);
	ia->flags = 0;
	rule("unknown_iommufd_ioctl_enotty", ioctl(iommufd, _IO(IOMMUFD_TYPE, 0x7f), ia), ENOTTY);

	memset(&map, 0, sizeof(map));
	map.size = sizeof(map);
	map.ioas_id = ioas2;
	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
	map.length = 4096;
	map.iova = 0x40000000;
	map.user_va = (uintptr_t)big;
	rule("ioas_map_without_access_einval", ioctl(iommufd, IOMMU_IOAS_MAP, &map), EINVAL);
	map.flags |= IOMMU_IOAS_MAP_READABLE | (1 << 7);
	rule("ioas_map_unknown_flag_eopnotsupp", ioctl(iommufd, IOMMU_IOAS_MAP, &map), EOPNOTSUPP);
	memset(&un, 0, sizeof(un));
	un.size = sizeof(un);
	un.ioas_id = ioas2;
	un.length = UINT64_MAX;
	rule("ioas_unmap_all_of_nothing_ok", ioctl(iommufd, IOMMU_IOAS_UNMAP, &un), 0);
	rule("ioas_unmap_all_of_nothing_length_0", un.length == 0 ? 0 : -1, 0);

	memset(&hw, 0, sizeof(hw));
	hw.size = sizeof(hw);
	hw.dev_id = dev_id;
	hw.pt_id = ioas2;
	hw.__reserved = 1;
	rule("hwpt_alloc_reserved_eopnotsupp", ioctl(iommufd, IOMMU_HWPT_ALLOC, &hw), EOPNOTSUPP);
	hw.__reserved = 0;
	hw.data_len = 8;
	rule("hwpt_alloc_data_len_without_type_einval", ioctl(iommufd, IOMMU_HWPT_ALLOC, &hw), EINVAL);

	d.size = sizeof(d);
	d.id = ioas2;
	rule("destroy_ok", ioctl(iommufd, IOMMU_DESTROY, &d), 0);
	rule("destroy_again_enoent", ioctl(iommufd, IOMMU_DESTROY, &d), ENOENT);
	d.id = dev_id;
	rule("destroy_device_ebusy", ioctl(iommufd, IOMMU_DESTROY, &d), EBUSY);
	d.id = fault_id;
	rule("destroy_open_fault_queue_ebusy", ioctl(iommufd, IOMMU_DESTROY, &d), EBUSY);

	memset(&bind, 0, sizeof(bind));
	bind.argsz = sizeof(bind);
	bind.iommufd = iommufd;
	rule("bind_twice_einval", ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL);

	/* A second, unbound file of the same device: refused before any bind happens. */
	unbound = open(devpath, O_RDWR | O_CLOEXEC);
	if (unbound < 0)
		die(devpath);
	memset(&at, 0, sizeof(at));
	at.argsz = sizeof(at);
	rule("attach_unbound_einval", ioctl(unbound, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EINVAL);
	memset(wide, 0, sizeof(wide));
	memcpy(wide, &bind, sizeof(bind));
	((struct vfio_device_bind_iommufd *)wide)->argsz = sizeof(wide);
	wide[sizeof(bind) + 3] = 1;
	rule("bind_nonzero_tail_e2big", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, wide), E2BIG);
	bind.argsz = 12;
	rule("bind_argsz_below_first_version_einval", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL);
	bind.argsz = sizeof(bind);
	bind.iommufd = -1;
	rule("bind_negative_iommufd_einval", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL);
	bind.iommufd = unbound;
	rule("bind_not_an_iommufd_ebadfd", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, &bind), EBADFD);
	bind.iommufd = 1000000;
	rule("bind_closed_fd_ebadf", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, &bind), EBADF);
	bind.iommufd = iommufd;
	bind.flags = 2;
	rule("bind_unknown_flag_einval", ioctl(unbound, VFIO_DEVICE_BIND_IOMMUFD, &bind), EINVAL);
	close(unbound);
	memset(&at, 0, sizeof(at));
	at.argsz = 8;
	rule("attach_argsz_below_first_version_einval", ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EINVAL);
	at.argsz = sizeof(at);
	at.flags = 2;
	rule("attach_unknown_flag_einval", ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EINVAL);

	rule("fault_read_not_whole_records_espipe", (int)read(fault_fd, rec, sizeof(rec[0]) - 1), ESPIPE);
	rule("fault_write_not_whole_responses_espipe", (int)write(fault_fd, &resp, sizeof(resp) - 1), ESPIPE);
	rule("fault_write_unknown_cookie_einval", (int)write(fault_fd, &resp, sizeof(resp)), EINVAL);

	/* The iommufd and device files have no poll: epoll refuses them. */
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	rule("epoll_on_iommufd_eperm", epoll_ctl(ep, EPOLL_CTL_ADD, iommufd, &ev), EPERM);
	rule("epoll_on_device_eperm", epoll_ctl(ep, EPOLL_CTL_ADD, devfd, &ev), EPERM);
	close(ep);

	/* Every other descriptor and ioctl is the kernel's, also on a number an iommufd had. */
	other = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (other < 0)
		die("open /dev/iommu again");
	if (close_range((unsigned int)other, (unsigned int)other, 0) < 0)
		die("close_range");
	other = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (other < 0)
		die("open /dev/null");
	memset(big, 0, sizeof(big));
	ia->size = sizeof(*ia);
	rule("ioctl_on_a_reused_number_passes_through", ioctl(other, IOMMU_IOAS_ALLOC, ia), ENOTTY);
	close(other);
	if (pipe(p) < 0)
		die("pipe");
	if (write(p[1], "abc", 3) != 3)
		die("write pipe");
	rule("pipe_fionread_passes_through", ioctl(p[0], FIONREAD, &n), 0);
	rule("pipe_fionread_value", n == 3 ? 0 : -1, 0);
	close(p[0]);
	close(p[1]);
	if (failures)
		exit(1);
}

/** step() - print "step @name" and wait for a line on stdin (the test looks meanwhile). */
static void step(const char *name)
{
	char line[64];

	printf("step %s\n", name);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		exit(3);
}

/**
 * lifecycle() - nested translation, invalidation, replace, PASID detach and
 * unmap, then the files closed one by one: the context lives while any of
 * the /dev/iommu file (and its dups), the bound device or the fault fd does.
 */
static void lifecycle(int iommufd, int devfd, int fault_fd, uint32_t dev_id, uint32_t ioas_id, uint32_t fault_id,
		      uint64_t auto_iova)
{
	struct iommu_hwpt_alloc parent, nested;
	struct iommu_hwpt_vtd_s1 s1 = { .flags = 0, .pgtbl_addr = 1ull << 30, .addr_width = 48 };
	struct iommu_hwpt_vtd_s1_invalidate ents[3], *many;
	struct { struct iommu_hwpt_vtd_s1_invalidate e; uint64_t tail; } wide[2];
	struct iommu_hwpt_invalidate inv;
	struct vfio_device_attach_iommufd_pt at;
	struct vfio_device_detach_iommufd_pt dt;
	struct iommu_ioas_unmap un;
	int dupfd, fdupfd, i;

	memset(&parent, 0, sizeof(parent));
	parent.size = sizeof(parent);
	parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	parent.dev_id = dev_id;
	parent.pt_id = ioas_id;
	rule("hwpt_alloc_nest_parent", ioctl(iommufd, IOMMU_HWPT_ALLOC, &parent), 0);
	memset(&nested, 0, sizeof(nested));
	nested.size = sizeof(nested);
	nested.flags = IOMMU_HWPT_FAULT_ID_VALID;
	nested.dev_id = dev_id;
	nested.pt_id = parent.out_hwpt_id;
	nested.data_type = IOMMU_HWPT_DATA_VTD_S1;
	nested.data_len = sizeof(s1) - 4;
	nested.data_uptr = (uintptr_t)&s1;
	nested.fault_id = fault_id;
	rule("hwpt_alloc_vtd_s1_short_data_einval", ioctl(iommufd, IOMMU_HWPT_ALLOC, &nested), EINVAL);
	nested.data_len = sizeof(s1);
	rule("hwpt_alloc_nested_vtd_s1", ioctl(iommufd, IOMMU_HWPT_ALLOC, &nested), 0);

	memset(ents, 0, sizeof(ents));
	ents[0].addr = 0;
	ents[0].npages = 1;
	ents[1].addr = 0x1000;
	ents[1].npages = 2;
	ents[2].addr = 0x1001; /* not 4 KiB aligned */
	ents[2].npages = 1;
	memset(&inv, 0, sizeof(inv));
	inv.size = sizeof(inv);
	inv.hwpt_id = nested.out_hwpt_id;
	inv.data_uptr = (uintptr_t)ents;
	inv.data_type = IOMMU_HWPT_INVALIDATE_DATA_VTD_S1;
	inv.entry_len = sizeof(ents[0]);
	inv.entry_num = 2;
	rule("hwpt_invalidate_ok", ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv), 0);
	rule("hwpt_invalidate_entry_num_2", inv.entry_num == 2 ? 0 : -1, 0);
	inv.entry_num = 3;
	rule("hwpt_invalidate_unaligned_einval", ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv), EINVAL);
	rule("hwpt_invalidate_stops_at_the_bad_entry", inv.entry_num == 2 ? 0 : -1, 0);
	memset(wide, 0, sizeof(wide));
	wide[0].e.npages = 1;
	wide[1].e.npages = 1;
	wide[1].tail = 1;
	inv.data_uptr = (uintptr_t)wide;
	inv.entry_len = sizeof(wide[0]);
	inv.entry_num = 2;
	rule("hwpt_invalidate_entry_tail_e2big", ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv), E2BIG);
	rule("hwpt_invalidate_e2big_entry_num_1", inv.entry_num == 1 ? 0 : -1, 0);

	/* More entries than one request of the shim carries: handled in order, the count exact. */
	many = calloc(3000, sizeof(*many));
	if (!many)
		die("calloc");
	for (i = 0; i < 3000; i++) {
		many[i].addr = (uint64_t)i << 12;
		many[i].npages = 1;
	}
	inv.data_uptr = (uintptr_t)many;
	inv.entry_len = sizeof(*many);
	inv.entry_num = 3000;
	rule("hwpt_invalidate_3000", ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv), 0);
	rule("hwpt_invalidate_3000_entry_num", inv.entry_num == 3000 ? 0 : -1, 0);
	many[2500].addr |= 0x800; /* not 4 KiB aligned */
	inv.entry_num = 3000;
	rule("hwpt_invalidate_bad_entry_2500_einval", ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv), EINVAL);
	rule("hwpt_invalidate_bad_entry_2500_entry_num", inv.entry_num == 2500 ? 0 : -1, 0);
	free(many);

	memset(&at, 0, sizeof(at));
	at.argsz = sizeof(at);
	at.pt_id = nested.out_hwpt_id;
	rule("attach_again_replaces", ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), 0);
	rule("attach_returns_the_hwpt", at.pt_id == nested.out_hwpt_id ? 0 : -1, 0);
	at.flags = VFIO_DEVICE_ATTACH_PASID;
	at.pasid = 9;
	at.pt_id = ioas_id;
	rule("attach_pasid_to_an_ioas", ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), 0);
	rule("attach_pasid_returns_the_automatic_hwpt", at.pt_id != ioas_id && at.pt_id != 0 ? 0 : -1, 0);
	memset(&dt, 0, sizeof(dt));
	dt.argsz = sizeof(dt);
	dt.flags = VFIO_DEVICE_DETACH_PASID;
	dt.pasid = 9;
	rule("detach_pasid", ioctl(devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
	rule("detach_pasid_again_is_a_no_op", ioctl(devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
	dt.argsz = 8;
	rule("detach_pasid_short_argsz_einval", ioctl(devfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), EINVAL);

	memset(&un, 0, sizeof(un));
	un.size = sizeof(un);
	un.ioas_id = ioas_id;
	un.iova = auto_iova;
	un.length = 64 << 10;
	rule("ioas_unmap", ioctl(iommufd, IOMMU_IOAS_UNMAP, &un), 0);
	rule("ioas_unmap_length", un.length == 64 << 10 ? 0 : -1, 0);
	rule("ioas_unmap_again_enoent", ioctl(iommufd, IOMMU_IOAS_UNMAP, &un), ENOENT);
	if (failures)
		exit(1);

	dupfd = dup(iommufd);
	fdupfd = fcntl(iommufd, F_DUPFD_CLOEXEC, 0);
	if (dupfd < 0 || fdupfd < 0)
		die("dup");
	close(iommufd);
	step("closed-iommufd");
	close(dupfd);
	step("closed-dup");
	close(devfd);
	step("closed-device");
	close(fault_fd);
	step("closed-fault");
	close(fdupfd);
	step("closed-fcntl-dup");
}

/** The vSID this program gives its device in the vIOMMU. */
#define ARM_VSID 0x99u
/** STE word 0: V, Config = S1_TRANS (0b101), S1ContextPtr = 0x1000 (the guest's CD table, zeroed: an invalid CD). */
#define ARM_STE0 (1ull | (5ull << 1) | 0x1000ull)

/** arm_invalidate() - IOMMU_HWPT_INVALIDATE of @n commands of @entry_len bytes at @cmds on @viommu; entry_num back in *@done. */
static int arm_invalidate(int iommufd, uint32_t viommu, const void *cmds, uint32_t entry_len, uint32_t n, uint32_t *done)
{
	struct iommu_hwpt_invalidate inv = {
		.size = sizeof(inv),
		.hwpt_id = viommu,
		.data_uptr = (uintptr_t)cmds,
		.data_type = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
		.entry_len = entry_len,
		.entry_num = n,
	};
	int rc = ioctl(iommufd, IOMMU_HWPT_INVALIDATE, &inv);

	*done = inv.entry_num;
	return rc;
}

/**
 * arm_flow() - a VMM's vSMMU: an IOAS for guest RAM, a NEST_PARENT hwpt,
 * a vIOMMU on it, the device's vDEVICE (vSID ARM_VSID), a nested hwpt with
 * the guest's STE (its CD table in zeroed guest RAM), a vEVENTQ; the rules
 * of those ioctls ("rule NAME ok"); then "ready …", and one event read from
 * the vEVENTQ fd ("vevent seq=S flags=F id=0xID sid=0xSID addr=0xADDR")
 * once the device faults (the node test makes it DMA).
 */
static int arm_flow(int iommufd, int devfd, uint32_t dev_id, uint32_t ioas_id)
{
	struct iommu_ioas_map map = { .size = sizeof(map) };
	struct iommu_hwpt_alloc parent = { .size = sizeof(parent) }, nested = { .size = sizeof(nested) };
	struct iommu_viommu_alloc va = { .size = sizeof(va) };
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd) };
	struct iommu_veventq_alloc vq = { .size = sizeof(vq) }, vq2;
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { ARM_STE0, 0 } };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct iommu_destroy d = { .size = sizeof(d) };
	unsigned char big[sizeof(va) + 8], wide[24];
	struct iommu_viommu_arm_smmuv3_invalidate cmds[3];
	unsigned char wcmds[2][24];
	struct pollfd pfd;
	unsigned char buf[64];
	struct iommufd_vevent_header h;
	struct iommu_vevent_arm_smmuv3 e;
	uint32_t done;
	ssize_t r;
	int vfd;

	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	map.ioas_id = ioas_id;
	map.length = 1 << 20;
	map.iova = 0;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");
	parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	parent.dev_id = dev_id;
	parent.pt_id = ioas_id;
	if (ioctl(iommufd, IOMMU_HWPT_ALLOC, &parent))
		die("IOMMU_HWPT_ALLOC nest parent");

	/* IOMMU_VIOMMU_ALLOC: the sizes, the type. */
	va.type = IOMMU_VIOMMU_TYPE_DEFAULT;
	va.dev_id = dev_id;
	va.hwpt_id = parent.out_hwpt_id;
	rule("viommu_alloc_default_type_eopnotsupp", ioctl(iommufd, IOMMU_VIOMMU_ALLOC, &va), EOPNOTSUPP);
	va.type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
	va.size = 20;
	rule("viommu_alloc_size_below_first_version_einval", ioctl(iommufd, IOMMU_VIOMMU_ALLOC, &va), EINVAL);
	memset(big, 0, sizeof(big));
	va.size = sizeof(big);
	memcpy(big, &va, sizeof(va));
	big[sizeof(va) + 3] = 1;
	rule("viommu_alloc_nonzero_tail_e2big", ioctl(iommufd, IOMMU_VIOMMU_ALLOC, big), E2BIG);
	big[sizeof(va) + 3] = 0;
	rule("viommu_alloc_zero_tail_ok", ioctl(iommufd, IOMMU_VIOMMU_ALLOC, big), 0);
	memcpy(&va, big, sizeof(va));
	va.size = sizeof(va);
	d.id = va.out_viommu_id;
	rule("viommu_destroy", ioctl(iommufd, IOMMU_DESTROY, &d), 0);
	va.size = 24; /* the v6.13 struct: no data_len/data_uptr */
	if (ioctl(iommufd, IOMMU_VIOMMU_ALLOC, &va))
		die("IOMMU_VIOMMU_ALLOC");

	vd.viommu_id = va.out_viommu_id;
	vd.dev_id = dev_id;
	vd.virt_id = ARM_VSID;
	if (ioctl(iommufd, IOMMU_VDEVICE_ALLOC, &vd))
		die("IOMMU_VDEVICE_ALLOC");
	rule("vdevice_alloc_twice_eexist", ioctl(iommufd, IOMMU_VDEVICE_ALLOC, &vd), EEXIST);

	/* The nested hwpt: the guest's STE. */
	nested.dev_id = dev_id;
	nested.pt_id = va.out_viommu_id;
	nested.data_type = IOMMU_HWPT_DATA_ARM_SMMUV3;
	nested.data_uptr = (uintptr_t)&ste;
	nested.data_len = 8;
	rule("hwpt_alloc_arm_short_data_einval", ioctl(iommufd, IOMMU_HWPT_ALLOC, &nested), EINVAL);
	memset(wide, 0, sizeof(wide));
	memcpy(wide, &ste, sizeof(ste));
	wide[20] = 1;
	nested.data_uptr = (uintptr_t)wide;
	nested.data_len = sizeof(wide);
	rule("hwpt_alloc_arm_data_nonzero_tail_e2big", ioctl(iommufd, IOMMU_HWPT_ALLOC, &nested), E2BIG);
	wide[20] = 0;
	if (ioctl(iommufd, IOMMU_HWPT_ALLOC, &nested))
		die("IOMMU_HWPT_ALLOC arm_smmuv3");
	at.pt_id = nested.out_hwpt_id;
	if (ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT nested");

	/* Invalidation on the vIOMMU: TLBI_NSNH_ALL, CFGI_CD of our vSID, CFGI_CD of an unknown one. */
	memset(cmds, 0, sizeof(cmds));
	cmds[0].cmd[0] = 0x30;
	cmds[1].cmd[0] = 0x05 | ((uint64_t)ARM_VSID << 32);
	cmds[2].cmd[0] = 0x05 | (0x42ull << 32);
	rule("viommu_invalidate_ok", arm_invalidate(iommufd, va.out_viommu_id, cmds, sizeof(cmds[0]), 2, &done), 0);
	rule("viommu_invalidate_ok_entry_num", done == 2 ? 0 : -1, 0);
	rule("viommu_invalidate_bad_vsid_eio", arm_invalidate(iommufd, va.out_viommu_id, cmds, sizeof(cmds[0]), 3, &done), EIO);
	rule("viommu_invalidate_eio_entry_num", done == 2 ? 0 : -1, 0);
	memset(wcmds, 0, sizeof(wcmds));
	memcpy(wcmds[0], &cmds[0], 16);
	memcpy(wcmds[1], &cmds[1], 16);
	wcmds[1][17] = 1;
	rule("viommu_invalidate_entry_tail_e2big", arm_invalidate(iommufd, va.out_viommu_id, wcmds, 24, 2, &done), E2BIG);
	rule("viommu_invalidate_e2big_entry_num", done == 0 ? 0 : -1, 0);
	wcmds[1][17] = 0;
	rule("viommu_invalidate_empty_einval", arm_invalidate(iommufd, va.out_viommu_id, cmds, sizeof(cmds[0]), 0, &done), EINVAL);
	rule("viommu_invalidate_no_such_viommu_enoent", arm_invalidate(iommufd, 0xfffff, cmds, sizeof(cmds[0]), 0, &done), ENOENT);
	rule("viommu_invalidate_long_entries_ok", arm_invalidate(iommufd, va.out_viommu_id, wcmds, 24, 2, &done), 0);

	/* IOMMU_VEVENTQ_ALLOC */
	vq.viommu_id = va.out_viommu_id;
	vq.type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3;
	vq.veventq_depth = 0;
	rule("veventq_alloc_depth_0_einval", ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &vq), EINVAL);
	vq.__reserved = 1;
	vq.veventq_depth = 8;
	rule("veventq_alloc_reserved_eopnotsupp", ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &vq), EOPNOTSUPP);
	vq.__reserved = 0;
	if (ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &vq))
		die("IOMMU_VEVENTQ_ALLOC");
	vfd = (int)vq.out_veventq_fd;
	vq2 = vq;
	rule("veventq_alloc_second_of_type_eexist", ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &vq2), EEXIST);
	d.id = vq.out_veventq_id;
	rule("veventq_destroy_with_fd_open_ebusy", ioctl(iommufd, IOMMU_DESTROY, &d), EBUSY);
	if (failures)
		return 1;

	printf("ready dev_id=%" PRIu32 " viommu_id=%" PRIu32 " vdevice_id=%" PRIu32 " hwpt_id=%" PRIu32
	       " veventq_id=%" PRIu32 "\n",
	       dev_id, va.out_viommu_id, vd.out_vdevice_id, nested.out_hwpt_id, vq.out_veventq_id);
	fflush(stdout);

	pfd.fd = vfd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 60000) != 1)
		die("poll vEVENTQ");
	r = read(vfd, buf, sizeof(buf));
	if (r < (ssize_t)sizeof(h))
		die("read vEVENTQ");
	memcpy(&h, buf, sizeof(h));
	printf("vevent seq=%" PRIu32 " flags=%" PRIu32, h.sequence, h.flags);
	if (!(h.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) && r >= (ssize_t)(sizeof(h) + sizeof(e))) {
		memcpy(&e, buf + sizeof(h), sizeof(e));
		printf(" id=0x%x sid=0x%x addr=0x%" PRIx64, (unsigned)(e.evt[0] & 0xff), (unsigned)(e.evt[0] >> 32), e.evt[2]);
	}
	printf(" bytes=%zd\n", r);
	fflush(stdout);
	close(vfd);
	d.id = vq.out_veventq_id;
	rule("veventq_destroy_after_close", ioctl(iommufd, IOMMU_DESTROY, &d), 0);
	close(devfd);
	close(iommufd);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_ioas_map map;
	struct iommu_fault_alloc fault = { .size = sizeof(fault) };
	struct iommu_hwpt_alloc hwpt;
	struct vfio_device_bind_iommufd bind;
	struct vfio_device_attach_iommufd_pt at;
	struct fault_loop_config cfg;
	struct fault_loop_stats st;
	char path[128];
	int iommufd, devfd, fault_fd, rules = 0, life = 0, arm = 0, argi = 1;
	uint64_t auto_iova;
	long pasid = -1;
	void *mem;

	for (; argi < argc && !strncmp(argv[argi], "--", 2); argi++) {
		if (!strcmp(argv[argi], "--rules"))
			rules = 1;
		else if (!strcmp(argv[argi], "--lifecycle"))
			life = 1;
		else if (!strcmp(argv[argi], "--arm"))
			arm = 1;
		else if (!strcmp(argv[argi], "--pasid") && argi + 1 < argc)
			pasid = strtol(argv[++argi], NULL, 0);
		else
			break;
	}
	if (argc - argi != 3) {
		fprintf(stderr, "usage: uapi-vmm [--pasid P] [--rules] [--lifecycle] [--arm] DEVICE INVALID_MASK ANSWER_LIMIT\n");
		return 2;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.invalid_mask = strtoull(argv[argi + 1], NULL, 0);
	cfg.answer_limit = strtol(argv[argi + 2], NULL, 0);
	cfg.stop_after = -1;
	cfg.log = stdout;

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		die("open /dev/iommu");
	snprintf(path, sizeof(path), "/dev/vfio/devices/%s", argv[argi]);
	devfd = open(path, O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		die(path);

	memset(&bind, 0, sizeof(bind));
	bind.argsz = sizeof(bind);
	bind.iommufd = iommufd;
	if (ioctl(devfd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &ioas))
		die("IOMMU_IOAS_ALLOC");
	if (arm)
		return arm_flow(iommufd, devfd, bind.out_devid, ioas.out_ioas_id);

	/* Guest RAM: 2 MiB at IOVA 1 GiB, and 64 KiB wherever the IOMMU likes. */
	mem = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	memset(&map, 0, sizeof(map));
	map.size = sizeof(map);
	map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	map.ioas_id = ioas.out_ioas_id;
	map.user_va = (uintptr_t)mem;
	map.length = 2 << 20;
	map.iova = 1ull << 30;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP fixed");
	map.flags = IOMMU_IOAS_MAP_READABLE;
	map.length = 64 << 10;
	map.iova = 0;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");
	if (map.iova % 4096 || (map.iova < (1ull << 30) + (2 << 20) && map.iova + map.length > 1ull << 30)) {
		fprintf(stderr, "uapi-vmm: IOMMU_IOAS_MAP picked iova 0x%" PRIx64 "\n", (uint64_t)map.iova);
		return 2;
	}
	auto_iova = map.iova;

	if (ioctl(iommufd, IOMMU_FAULT_QUEUE_ALLOC, &fault))
		die("IOMMU_FAULT_QUEUE_ALLOC");
	fault_fd = (int)fault.out_fault_fd;

	memset(&hwpt, 0, sizeof(hwpt));
	hwpt.size = sizeof(hwpt);
	hwpt.flags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
	hwpt.dev_id = bind.out_devid;
	hwpt.pt_id = ioas.out_ioas_id;
	hwpt.data_type = IOMMU_HWPT_DATA_NONE;
	hwpt.fault_id = fault.out_fault_id;
	if (ioctl(iommufd, IOMMU_HWPT_ALLOC, &hwpt))
		die("IOMMU_HWPT_ALLOC");

	memset(&at, 0, sizeof(at));
	at.argsz = sizeof(at);
	at.pt_id = hwpt.out_hwpt_id;
	if (ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	if (at.pt_id != hwpt.out_hwpt_id) {
		fprintf(stderr, "uapi-vmm: attached pt_id %" PRIu32 ", not hwpt %" PRIu32 "\n", at.pt_id, hwpt.out_hwpt_id);
		return 2;
	}
	if (pasid >= 0) {
		at.flags = VFIO_DEVICE_ATTACH_PASID;
		at.pasid = (uint32_t)pasid;
		at.pt_id = hwpt.out_hwpt_id;
		if (ioctl(devfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
			die("VFIO_DEVICE_ATTACH_IOMMUFD_PT pasid");
	}
	if (rules)
		check_rules(iommufd, devfd, path, bind.out_devid, fault.out_fault_id, fault_fd);

	printf("ready dev_id=%" PRIu32 " ioas_id=%" PRIu32 " fault_id=%" PRIu32 " hwpt_id=%" PRIu32 "\n", bind.out_devid,
	       ioas.out_ioas_id, fault.out_fault_id, hwpt.out_hwpt_id);
	fflush(stdout);
	if (life) {
		lifecycle(iommufd, devfd, fault_fd, bind.out_devid, ioas.out_ioas_id, fault.out_fault_id, auto_iova);
		printf("end\n");
		return 0;
	}
	if (fault_loop_run(fault_fd, &cfg, &st) < 0)
		return 1;
	fprintf(stderr, "uapi-vmm: %lu groups answered (%lu invalid), %lu held\n", st.groups, st.invalid, st.held);
	close(fault_fd);
	close(devfd);
	close(iommufd);
	return 0;
}
