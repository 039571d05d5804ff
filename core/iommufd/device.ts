/**
 * Devices (drivers/iommu/iommufd/device.c): exclusive bind into a context,
 * attach / replace / detach at the RID or a PASID, and the auto-response of
 * an attachment's outstanding groups when it goes away.
 */
import { IommuError } from '../iommu/errors.js';
import {
  IOMMU_NO_PASID,
  IommuAttachHandle,
  iommuAttachGroupHandle,
  iommuDetachGroupHandle,
  iommuReplaceGroupHandle,
  iommuIopfPut,
  type IopfGroup,
} from '../iommu/iommu.js';
import { GroupList } from '../iommu/group-list.js';
import type { FaultAttachHandle } from './eventq.js';
import { IOMMU_HWPT_ALLOC_PASID, IommufdHwpt, IommufdHwptPaging } from './hw-pagetable.js';
import { IommufdIoas } from './ioas.js';
import { IommufdObject, type IommufdCtx, type IommufdPhysDevice } from './main.js';
import { iommufdDeviceRemoveVdev } from './viommu.js';

/** struct iommufd_attach_handle: the handle plus the device that attached. */
export class IommufdAttachHandle extends IommuAttachHandle implements FaultAttachHandle {
  readonly groups = new GroupList<IopfGroup, 'handle'>();
  constructor(
    readonly hwpt: IommufdHwpt,
    readonly idev: IommufdDevice,
  ) {
    super(hwpt.domain!);
  }
  get devId(): number {
    return this.idev.id;
  }
}

/** struct iommufd_device. */
export class IommufdDevice extends IommufdObject {
  readonly type = 'device' as const;
  /** pasid (IOMMU_NO_PASID = RID) → current attachment. */
  readonly attachments = new Map<number, IommufdAttachHandle>();
  /** Set by hot-unplug: detaches answer with cause `unplug`. */
  unplugging = false;

  constructor(
    ictx: IommufdCtx,
    readonly phys: IommufdPhysDevice,
  ) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return {
      name: this.phys.name,
      attachments: [...this.attachments].map(([pasid, h]) => (pasid === IOMMU_NO_PASID ? { pt_id: h.hwpt.id } : { pasid, pt_id: h.hwpt.id })),
    };
  }

  /** Unbind: its vDEVICE goes, it detaches everywhere (answering the attachments' groups), then the device is released. */
  destroy(): void {
    iommufdDeviceRemoveVdev(this);
    for (const pasid of [...this.attachments.keys()]) iommufdDeviceDetach(this, pasid === IOMMU_NO_PASID ? undefined : pasid);
    this.phys.dev.owner = undefined;
  }
}

/** vfio cdev bind: EBUSY if the device is bound to any context, ENODEV if unknown. */
export function iommufdDeviceBind(ictx: IommufdCtx, name: string): IommufdDevice {
  const phys = ictx.env.findDevice(name);
  if (!phys) throw new IommuError('ENODEV', `no device named ${JSON.stringify(name)}`);
  if (phys.dev.owner) throw new IommuError('EBUSY', `device ${name} is already bound to a context`);
  return ictx.create(new IommufdDevice(ictx, phys), (idev) => {
    phys.dev.owner = idev;
  });
}

/** Resolve pt_id for attach: a hwpt, or an IOAS (then an automatic paging hwpt is made). */
function resolvePt(idev: IommufdDevice, ptId: number): IommufdHwpt {
  const ictx = idev.ictx;
  const obj = ictx.get<IommufdObject>(ptId, 'hwpt_paging', 'hwpt_nested', 'ioas');
  if (!(obj instanceof IommufdIoas)) return obj as IommufdHwpt;
  return (
    findAuto(idev, obj) ??
    ictx.create(new IommufdHwptPaging(ictx), (h) => {
      h.auto = true;
      // Usable at the RID and at any PASID.
      h.flags = IOMMU_HWPT_ALLOC_PASID;
      h.iommuName = idev.phys.iommuName;
      h.domain = idev.phys.dev.ops.domainAllocPaging(idev.phys.dev, false);
      h.domain.owner = h;
      obj.addDomain(h.domain);
      h.ioas = obj;
      obj.users++;
    })
  );
}

/** iommufd_device_auto_get_domain: the automatic hwpt already made on `ioas` for this device's IOMMU. */
function findAuto(idev: IommufdDevice, ioas: IommufdIoas): IommufdHwptPaging | undefined {
  for (const o of idev.ictx.objects()) {
    if (o instanceof IommufdHwptPaging && o.auto && o.ioas === ioas && o.iommuName === idev.phys.iommuName) return o;
  }
  return undefined;
}

/** iommufd_hwpt_compatible_device and the PASID rules. EINVAL when not. */
function checkCompatible(idev: IommufdDevice, hwpt: IommufdHwpt, pasid: number): void {
  const phys = idev.phys;
  if (hwpt.iommuName !== phys.iommuName) throw new IommuError('EINVAL', `hwpt ${hwpt.id} belongs to IOMMU ${hwpt.iommuName}, device ${phys.name} sits behind ${phys.iommuName}`);
  if (hwpt.fault && phys.isVf && phys.pri) {
    throw new IommuError('EINVAL', `device ${phys.name} is a VF with PRI: it cannot use a fault-capable hwpt`);
  }
  if (pasid !== IOMMU_NO_PASID) {
    if (phys.pasidBits === 0) throw new IommuError('EINVAL', `device ${phys.name} has no PASID support`);
    if (pasid >= 2 ** phys.pasidBits) throw new IommuError('EINVAL', `pasid ${pasid} exceeds the device's ${phys.pasidBits} PASID bits`);
    if (!hwpt.pasidCapable) throw new IommuError('EINVAL', `hwpt ${hwpt.id} was not allocated with the PASID flag`);
  }
}

function checkPasidArg(pasid: number | undefined): number {
  if (pasid === undefined) return IOMMU_NO_PASID;
  if (pasid === IOMMU_NO_PASID) throw new IommuError('EINVAL', 'pasid 0 is the RID: omit pasid to use it');
  return pasid;
}

/** Drop an automatic hwpt once nothing uses it. */
function putAuto(hwpt: IommufdHwpt): void {
  if (hwpt instanceof IommufdHwptPaging && hwpt.auto && hwpt.users === 0 && hwpt.ictx.find(hwpt.id) === hwpt) {
    hwpt.ictx.destroyObject(hwpt.id);
  }
}

function slotName(pasid: number): string {
  return pasid === IOMMU_NO_PASID ? 'the RID' : `pasid ${pasid}`;
}

/**
 * Install a new attachment of `ptId` at (idev, pasid) through `install` (the
 * IOMMU core's attach or replace). On any failure nothing changes and an
 * automatic hwpt made for it is dropped again.
 */
function installHandle(
  idev: IommufdDevice,
  ptId: number,
  pasid: number,
  install: (dev: IommufdDevice['phys']['dev'], pasid: number, handle: IommufdAttachHandle) => unknown,
): IommufdHwpt {
  const hwpt = resolvePt(idev, ptId);
  try {
    checkCompatible(idev, hwpt, pasid);
    idev.ictx.mayFail('attach-handle');
    const handle = new IommufdAttachHandle(hwpt, idev);
    install(idev.phys.dev, pasid, handle);
    idev.attachments.set(pasid, handle);
  } catch (e) {
    putAuto(hwpt);
    throw e;
  }
  hwpt.users++;
  return hwpt;
}

/**
 * Attach `idev` at the RID (pasid undefined) or a PASID to `ptId` (a hwpt or
 * an IOAS). EBUSY if that slot is attached; EINVAL for an incompatible hwpt;
 * ENOENT if pt_id names nothing attachable.
 */
export function iommufdDeviceAttach(idev: IommufdDevice, ptId: number, pasidArg?: number): void {
  const pasid = checkPasidArg(pasidArg);
  if (idev.attachments.has(pasid)) throw new IommuError('EBUSY', `device ${idev.id} is already attached at ${slotName(pasid)}; use replace`);
  installHandle(idev, ptId, pasid, iommuAttachGroupHandle);
}

/**
 * Replace the attachment at (idev, pasid) with `ptId`. On failure nothing
 * changes. On success the old attachment's groups are answered INVALID
 * exactly once (intended semantics; the replace-drains-new quirk drains the new hwpt's
 * queue instead).
 */
export function iommufdDeviceReplace(idev: IommufdDevice, ptId: number, pasidArg?: number): void {
  const pasid = checkPasidArg(pasidArg);
  const old = idev.attachments.get(pasid);
  if (!old) throw new IommuError('EINVAL', `device ${idev.id} is not attached at ${slotName(pasid)}; use attach`);
  const existing = idev.ictx.find(ptId);
  if (existing === old.hwpt || (existing instanceof IommufdIoas && findAuto(idev, existing) === old.hwpt)) return;
  const hwpt = installHandle(idev, ptId, pasid, iommuReplaceGroupHandle);
  const target = idev.ictx.env.profile.replaceDrainsNew ? hwpt.fault : old.hwpt.fault;
  target?.autoResponse(old, 'replace');
  iommuIopfPut(idev.phys.dev, old);
  old.hwpt.users--;
  putAuto(old.hwpt);
}

/**
 * Detach (idev, pasid): the hardware queue is drained and the domain
 * detached, then every group of the attachment is answered INVALID exactly
 * once. EINVAL if not attached there.
 */
export function iommufdDeviceDetach(idev: IommufdDevice, pasidArg?: number): void {
  const pasid = checkPasidArg(pasidArg);
  const old = idev.attachments.get(pasid);
  if (!old) throw new IommuError('EINVAL', `device ${idev.id} is not attached at ${slotName(pasid)}`);
  iommuDetachGroupHandle(idev.phys.dev, pasid);
  idev.attachments.delete(pasid);
  old.hwpt.fault?.autoResponse(old, idev.unplugging ? 'unplug' : 'detach');
  iommuIopfPut(idev.phys.dev, old);
  old.hwpt.users--;
  putAuto(old.hwpt);
}
