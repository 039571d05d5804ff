/* SPDX-License-Identifier: MIT */
/*
 * DOC: preload-uapi.h - the kernel uAPI structs the preload shim decodes
 *
 * The shim's own copies of the ioctl argument structs of
 * include/uapi/linux/iommufd.h and include/uapi/linux/vfio.h (the iommufd
 * cdev part, v6.15+ with PASID attach and v6.17+ with the bind token; the
 * vIOMMU, vDEVICE and vEVENTQ of v6.13+/v6.16+), so
 * the shim builds on a host whose kernel headers predate them. Every size
 * and offset is checked by _Static_assert against the kernel's layout.
 *
 * IOPFD_IOCTL_MIN_* are the kernel's minimum sizes: offsetofend() of the
 * last field of the first version of each struct (iommufd's ioctl table in
 * drivers/iommu/iommufd/main.c, the vfio cdev handlers in
 * drivers/vfio/device_cdev.c).
 */
#ifndef IOPFD_PRELOAD_UAPI_H
#define IOPFD_PRELOAD_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define IOPFD_OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* ---- include/uapi/linux/iommufd.h ---------------------------------------- */

#define IOPFD_IOMMUFD_TYPE (';')
#define IOPFD_IOMMUFD_CMD_BASE 0x80
#define IOPFD_IOMMUFD_CMD_LAST 0x94 /* IOMMUFD_CMD_HW_QUEUE_ALLOC */

enum {
	IOPFD_CMD_DESTROY = 0x80,
	IOPFD_CMD_IOAS_ALLOC = 0x81,
	IOPFD_CMD_IOAS_MAP = 0x85,
	IOPFD_CMD_IOAS_UNMAP = 0x86,
	IOPFD_CMD_HWPT_ALLOC = 0x89,
	IOPFD_CMD_HWPT_INVALIDATE = 0x8d,
	IOPFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
	IOPFD_CMD_VIOMMU_ALLOC = 0x90,
	IOPFD_CMD_VDEVICE_ALLOC = 0x91,
	IOPFD_CMD_VEVENTQ_ALLOC = 0x93,
};

struct iopfd_iommu_destroy {
	uint32_t size;
	uint32_t id;
};

struct iopfd_iommu_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};

#define IOPFD_IOAS_MAP_FIXED_IOVA (1u << 0)
#define IOPFD_IOAS_MAP_WRITEABLE (1u << 1)
#define IOPFD_IOAS_MAP_READABLE (1u << 2)

struct iopfd_iommu_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va __attribute__((aligned(8)));
	uint64_t length __attribute__((aligned(8)));
	uint64_t iova __attribute__((aligned(8)));
};

struct iopfd_iommu_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova __attribute__((aligned(8)));
	uint64_t length __attribute__((aligned(8)));
};

#define IOPFD_HWPT_ALLOC_NEST_PARENT (1u << 0)
#define IOPFD_HWPT_ALLOC_DIRTY_TRACKING (1u << 1)
#define IOPFD_HWPT_FAULT_ID_VALID (1u << 2)
#define IOPFD_HWPT_ALLOC_PASID (1u << 3)

#define IOPFD_HWPT_DATA_NONE 0u
#define IOPFD_HWPT_DATA_VTD_S1 1u
#define IOPFD_HWPT_DATA_ARM_SMMUV3 2u

struct iopfd_iommu_hwpt_vtd_s1 {
	uint64_t flags __attribute__((aligned(8)));
	uint64_t pgtbl_addr __attribute__((aligned(8)));
	uint32_t addr_width;
	uint32_t __reserved;
};

/* struct iommu_hwpt_arm_smmuv3: the guest STE's first two words, little-endian. */
struct iopfd_iommu_hwpt_arm_smmuv3 {
	uint64_t ste[2] __attribute__((aligned(8)));
};

struct iopfd_iommu_hwpt_alloc {
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

#define IOPFD_HWPT_INVALIDATE_DATA_VTD_S1 0u
#define IOPFD_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 1u

/* struct iommu_viommu_arm_smmuv3_invalidate: one 128-bit CMDQ command, little-endian. */
struct iopfd_iommu_viommu_arm_smmuv3_invalidate {
	uint64_t cmd[2] __attribute__((aligned(8)));
};

struct iopfd_iommu_hwpt_vtd_s1_invalidate {
	uint64_t addr __attribute__((aligned(8)));
	uint64_t npages __attribute__((aligned(8)));
	uint32_t flags;
	uint32_t __reserved;
};

struct iopfd_iommu_hwpt_invalidate {
	uint32_t size;
	uint32_t hwpt_id;
	uint64_t data_uptr __attribute__((aligned(8)));
	uint32_t data_type;
	uint32_t entry_len;
	uint32_t entry_num;
	uint32_t __reserved;
};

struct iopfd_iommu_fault_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_fault_id;
	uint32_t out_fault_fd;
};

#define IOPFD_VIOMMU_TYPE_DEFAULT 0u
#define IOPFD_VIOMMU_TYPE_ARM_SMMUV3 1u

/* struct iommu_viommu_alloc (data_len, __reserved and data_uptr came in v6.16) */
struct iopfd_iommu_viommu_alloc {
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

struct iopfd_iommu_vdevice_alloc {
	uint32_t size;
	uint32_t viommu_id;
	uint32_t dev_id;
	uint32_t out_vdevice_id;
	uint64_t virt_id __attribute__((aligned(8)));
};

#define IOPFD_VEVENTQ_TYPE_DEFAULT 0u
#define IOPFD_VEVENTQ_TYPE_ARM_SMMUV3 1u

struct iopfd_iommu_veventq_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t viommu_id;
	uint32_t type;
	uint32_t veventq_depth;
	uint32_t out_veventq_id;
	uint32_t out_veventq_fd;
	uint32_t __reserved;
};

#define IOPFD_IOMMU_DESTROY _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_DESTROY)
#define IOPFD_IOMMU_IOAS_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_IOAS_ALLOC)
#define IOPFD_IOMMU_IOAS_MAP _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_IOAS_MAP)
#define IOPFD_IOMMU_IOAS_UNMAP _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_IOAS_UNMAP)
#define IOPFD_IOMMU_HWPT_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_HWPT_ALLOC)
#define IOPFD_IOMMU_HWPT_INVALIDATE _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_HWPT_INVALIDATE)
#define IOPFD_IOMMU_FAULT_QUEUE_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_FAULT_QUEUE_ALLOC)
#define IOPFD_IOMMU_VIOMMU_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_VIOMMU_ALLOC)
#define IOPFD_IOMMU_VDEVICE_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_VDEVICE_ALLOC)
#define IOPFD_IOMMU_VEVENTQ_ALLOC _IO(IOPFD_IOMMUFD_TYPE, IOPFD_CMD_VEVENTQ_ALLOC)

/* The kernel's op->min_size for each emulated command. */
#define IOPFD_IOCTL_MIN_DESTROY IOPFD_OFFSETOFEND(struct iopfd_iommu_destroy, id)
#define IOPFD_IOCTL_MIN_IOAS_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_ioas_alloc, out_ioas_id)
#define IOPFD_IOCTL_MIN_IOAS_MAP IOPFD_OFFSETOFEND(struct iopfd_iommu_ioas_map, iova)
#define IOPFD_IOCTL_MIN_IOAS_UNMAP IOPFD_OFFSETOFEND(struct iopfd_iommu_ioas_unmap, length)
#define IOPFD_IOCTL_MIN_HWPT_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_hwpt_alloc, __reserved)
#define IOPFD_IOCTL_MIN_HWPT_INVALIDATE IOPFD_OFFSETOFEND(struct iopfd_iommu_hwpt_invalidate, __reserved)
#define IOPFD_IOCTL_MIN_FAULT_QUEUE_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_fault_alloc, out_fault_fd)
#define IOPFD_IOCTL_MIN_VIOMMU_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_viommu_alloc, out_viommu_id)
#define IOPFD_IOCTL_MIN_VDEVICE_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_vdevice_alloc, virt_id)
#define IOPFD_IOCTL_MIN_VEVENTQ_ALLOC IOPFD_OFFSETOFEND(struct iopfd_iommu_veventq_alloc, __reserved)
#define IOPFD_MIN_ARM_SMMUV3 IOPFD_OFFSETOFEND(struct iopfd_iommu_hwpt_arm_smmuv3, ste)
#define IOPFD_MIN_ARM_SMMUV3_INVALIDATE IOPFD_OFFSETOFEND(struct iopfd_iommu_viommu_arm_smmuv3_invalidate, cmd)
#define IOPFD_MIN_VTD_S1 IOPFD_OFFSETOFEND(struct iopfd_iommu_hwpt_vtd_s1, __reserved)
#define IOPFD_MIN_VTD_S1_INVALIDATE IOPFD_OFFSETOFEND(struct iopfd_iommu_hwpt_vtd_s1_invalidate, __reserved)

/* ---- include/uapi/linux/vfio.h (the iommufd cdev ioctls) ------------------ */

#define IOPFD_VFIO_TYPE (';')
#define IOPFD_VFIO_BASE 100

#define IOPFD_VFIO_DEVICE_BIND_FLAG_TOKEN (1u << 0)

struct iopfd_vfio_device_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
	uint64_t token_uuid_ptr __attribute__((aligned(8)));
};

#define IOPFD_VFIO_DEVICE_ATTACH_PASID (1u << 0)

struct iopfd_vfio_device_attach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
	uint32_t pasid;
};

#define IOPFD_VFIO_DEVICE_DETACH_PASID (1u << 0)

struct iopfd_vfio_device_detach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pasid;
};

#define IOPFD_VFIO_DEVICE_BIND_IOMMUFD _IO(IOPFD_VFIO_TYPE, IOPFD_VFIO_BASE + 18)
#define IOPFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(IOPFD_VFIO_TYPE, IOPFD_VFIO_BASE + 19)
#define IOPFD_VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(IOPFD_VFIO_TYPE, IOPFD_VFIO_BASE + 20)

#define IOPFD_VFIO_MIN_BIND IOPFD_OFFSETOFEND(struct iopfd_vfio_device_bind_iommufd, out_devid)
#define IOPFD_VFIO_MIN_ATTACH IOPFD_OFFSETOFEND(struct iopfd_vfio_device_attach_iommufd_pt, pt_id)
#define IOPFD_VFIO_MIN_DETACH IOPFD_OFFSETOFEND(struct iopfd_vfio_device_detach_iommufd_pt, flags)

/* ---- the kernel's layout, byte for byte ----------------------------------- */

#define IOPFD_AT(type, field, off) \
	_Static_assert(offsetof(struct type, field) == (off), #type "." #field)
#define IOPFD_SIZE(type, n) _Static_assert(sizeof(struct type) == (n), #type " size")

IOPFD_SIZE(iopfd_iommu_destroy, 8);
IOPFD_AT(iopfd_iommu_destroy, size, 0);
IOPFD_AT(iopfd_iommu_destroy, id, 4);

IOPFD_SIZE(iopfd_iommu_ioas_alloc, 12);
IOPFD_AT(iopfd_iommu_ioas_alloc, size, 0);
IOPFD_AT(iopfd_iommu_ioas_alloc, flags, 4);
IOPFD_AT(iopfd_iommu_ioas_alloc, out_ioas_id, 8);

IOPFD_SIZE(iopfd_iommu_ioas_map, 40);
IOPFD_AT(iopfd_iommu_ioas_map, size, 0);
IOPFD_AT(iopfd_iommu_ioas_map, flags, 4);
IOPFD_AT(iopfd_iommu_ioas_map, ioas_id, 8);
IOPFD_AT(iopfd_iommu_ioas_map, __reserved, 12);
IOPFD_AT(iopfd_iommu_ioas_map, user_va, 16);
IOPFD_AT(iopfd_iommu_ioas_map, length, 24);
IOPFD_AT(iopfd_iommu_ioas_map, iova, 32);

IOPFD_SIZE(iopfd_iommu_ioas_unmap, 24);
IOPFD_AT(iopfd_iommu_ioas_unmap, size, 0);
IOPFD_AT(iopfd_iommu_ioas_unmap, ioas_id, 4);
IOPFD_AT(iopfd_iommu_ioas_unmap, iova, 8);
IOPFD_AT(iopfd_iommu_ioas_unmap, length, 16);

IOPFD_SIZE(iopfd_iommu_hwpt_vtd_s1, 24);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1, flags, 0);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1, pgtbl_addr, 8);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1, addr_width, 16);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1, __reserved, 20);

IOPFD_SIZE(iopfd_iommu_hwpt_alloc, 48);
IOPFD_AT(iopfd_iommu_hwpt_alloc, size, 0);
IOPFD_AT(iopfd_iommu_hwpt_alloc, flags, 4);
IOPFD_AT(iopfd_iommu_hwpt_alloc, dev_id, 8);
IOPFD_AT(iopfd_iommu_hwpt_alloc, pt_id, 12);
IOPFD_AT(iopfd_iommu_hwpt_alloc, out_hwpt_id, 16);
IOPFD_AT(iopfd_iommu_hwpt_alloc, __reserved, 20);
IOPFD_AT(iopfd_iommu_hwpt_alloc, data_type, 24);
IOPFD_AT(iopfd_iommu_hwpt_alloc, data_len, 28);
IOPFD_AT(iopfd_iommu_hwpt_alloc, data_uptr, 32);
IOPFD_AT(iopfd_iommu_hwpt_alloc, fault_id, 40);
IOPFD_AT(iopfd_iommu_hwpt_alloc, __reserved2, 44);

IOPFD_SIZE(iopfd_iommu_hwpt_vtd_s1_invalidate, 24);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1_invalidate, addr, 0);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1_invalidate, npages, 8);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1_invalidate, flags, 16);
IOPFD_AT(iopfd_iommu_hwpt_vtd_s1_invalidate, __reserved, 20);

IOPFD_SIZE(iopfd_iommu_hwpt_invalidate, 32);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, size, 0);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, hwpt_id, 4);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, data_uptr, 8);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, data_type, 16);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, entry_len, 20);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, entry_num, 24);
IOPFD_AT(iopfd_iommu_hwpt_invalidate, __reserved, 28);

IOPFD_SIZE(iopfd_iommu_fault_alloc, 16);
IOPFD_AT(iopfd_iommu_fault_alloc, size, 0);
IOPFD_AT(iopfd_iommu_fault_alloc, flags, 4);
IOPFD_AT(iopfd_iommu_fault_alloc, out_fault_id, 8);
IOPFD_AT(iopfd_iommu_fault_alloc, out_fault_fd, 12);

IOPFD_SIZE(iopfd_iommu_hwpt_arm_smmuv3, 16);
IOPFD_AT(iopfd_iommu_hwpt_arm_smmuv3, ste, 0);

IOPFD_SIZE(iopfd_iommu_viommu_arm_smmuv3_invalidate, 16);
IOPFD_AT(iopfd_iommu_viommu_arm_smmuv3_invalidate, cmd, 0);

IOPFD_SIZE(iopfd_iommu_viommu_alloc, 40);
IOPFD_AT(iopfd_iommu_viommu_alloc, size, 0);
IOPFD_AT(iopfd_iommu_viommu_alloc, flags, 4);
IOPFD_AT(iopfd_iommu_viommu_alloc, type, 8);
IOPFD_AT(iopfd_iommu_viommu_alloc, dev_id, 12);
IOPFD_AT(iopfd_iommu_viommu_alloc, hwpt_id, 16);
IOPFD_AT(iopfd_iommu_viommu_alloc, out_viommu_id, 20);
IOPFD_AT(iopfd_iommu_viommu_alloc, data_len, 24);
IOPFD_AT(iopfd_iommu_viommu_alloc, __reserved, 28);
IOPFD_AT(iopfd_iommu_viommu_alloc, data_uptr, 32);

IOPFD_SIZE(iopfd_iommu_vdevice_alloc, 24);
IOPFD_AT(iopfd_iommu_vdevice_alloc, size, 0);
IOPFD_AT(iopfd_iommu_vdevice_alloc, viommu_id, 4);
IOPFD_AT(iopfd_iommu_vdevice_alloc, dev_id, 8);
IOPFD_AT(iopfd_iommu_vdevice_alloc, out_vdevice_id, 12);
IOPFD_AT(iopfd_iommu_vdevice_alloc, virt_id, 16);

IOPFD_SIZE(iopfd_iommu_veventq_alloc, 32);
IOPFD_AT(iopfd_iommu_veventq_alloc, size, 0);
IOPFD_AT(iopfd_iommu_veventq_alloc, flags, 4);
IOPFD_AT(iopfd_iommu_veventq_alloc, viommu_id, 8);
IOPFD_AT(iopfd_iommu_veventq_alloc, type, 12);
IOPFD_AT(iopfd_iommu_veventq_alloc, veventq_depth, 16);
IOPFD_AT(iopfd_iommu_veventq_alloc, out_veventq_id, 20);
IOPFD_AT(iopfd_iommu_veventq_alloc, out_veventq_fd, 24);
IOPFD_AT(iopfd_iommu_veventq_alloc, __reserved, 28);

IOPFD_SIZE(iopfd_vfio_device_bind_iommufd, 24);
IOPFD_AT(iopfd_vfio_device_bind_iommufd, argsz, 0);
IOPFD_AT(iopfd_vfio_device_bind_iommufd, flags, 4);
IOPFD_AT(iopfd_vfio_device_bind_iommufd, iommufd, 8);
IOPFD_AT(iopfd_vfio_device_bind_iommufd, out_devid, 12);
IOPFD_AT(iopfd_vfio_device_bind_iommufd, token_uuid_ptr, 16);

IOPFD_SIZE(iopfd_vfio_device_attach_iommufd_pt, 16);
IOPFD_AT(iopfd_vfio_device_attach_iommufd_pt, argsz, 0);
IOPFD_AT(iopfd_vfio_device_attach_iommufd_pt, flags, 4);
IOPFD_AT(iopfd_vfio_device_attach_iommufd_pt, pt_id, 8);
IOPFD_AT(iopfd_vfio_device_attach_iommufd_pt, pasid, 12);

IOPFD_SIZE(iopfd_vfio_device_detach_iommufd_pt, 12);
IOPFD_AT(iopfd_vfio_device_detach_iommufd_pt, argsz, 0);
IOPFD_AT(iopfd_vfio_device_detach_iommufd_pt, flags, 4);
IOPFD_AT(iopfd_vfio_device_detach_iommufd_pt, pasid, 8);

/* The ioctl numbers the kernel defines (_IO: no size or direction bits). */
_Static_assert(IOPFD_IOMMU_DESTROY == 0x3b80, "IOMMU_DESTROY");
_Static_assert(IOPFD_IOMMU_FAULT_QUEUE_ALLOC == 0x3b8e, "IOMMU_FAULT_QUEUE_ALLOC");
_Static_assert(IOPFD_IOMMU_VIOMMU_ALLOC == 0x3b90, "IOMMU_VIOMMU_ALLOC");
_Static_assert(IOPFD_IOMMU_VDEVICE_ALLOC == 0x3b91, "IOMMU_VDEVICE_ALLOC");
_Static_assert(IOPFD_IOMMU_VEVENTQ_ALLOC == 0x3b93, "IOMMU_VEVENTQ_ALLOC");
_Static_assert(IOPFD_VFIO_DEVICE_BIND_IOMMUFD == 0x3b76, "VFIO_DEVICE_BIND_IOMMUFD");
_Static_assert(IOPFD_VFIO_DEVICE_DETACH_IOMMUFD_PT == 0x3b78, "VFIO_DEVICE_DETACH_IOMMUFD_PT");

#endif /* IOPFD_PRELOAD_UAPI_H */
