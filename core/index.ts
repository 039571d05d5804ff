/**
 * The public entry of the core: what the server and tests use. The server
 * imports nothing from core but this file.
 */
export * from './sched.js';
export * from './platform.js';
export { KERNEL_PROFILES, LATEST_PROFILE, kernelProfile, type KernelProfile } from './iommu/profiles.js';
export { IommuError, type CoreErrno } from './iommu/errors.js';
export { IopfGroup, IommuDevice, IOMMU_NO_PASID } from './iommu/iommu.js';
export { IommufdCtx, IommufdObject, DEFAULT_LIMITS } from './iommufd/main.js';
export type { IommufdLimits, IommufdObserver, AutoCause, IommufdObjType, AllocSite } from './iommufd/main.js';
export { IommufdIoas, iommufdIoasAlloc } from './iommufd/ioas.js';
export { IommufdHwpt, IommufdHwptPaging, IommufdHwptNested, iommufdHwptAlloc, iommufdHwptInvalidate, type HwptAllocRequest } from './iommufd/hw-pagetable.js';
export { IommufdDevice, iommufdDeviceBind, iommufdDeviceAttach, iommufdDeviceReplace, iommufdDeviceDetach } from './iommufd/device.js';
export {
  IommufdFault,
  IommufdFaultConn,
  iommufdFaultAlloc,
  faultGroupDevId,
  respondErrorMessage,
  RESPOND_OK,
  RESPOND_BAD_CODE,
  RESPOND_BAD_COOKIE,
} from './iommufd/eventq.js';
export type { FaultListener, RevokeCause, FaultCounters, RespondStatus } from './iommufd/eventq.js';
export { IommufdViommu, IommufdVdevice, iommufdViommuAlloc, iommufdVdeviceAlloc, iommufdViommuInvalidate } from './iommufd/viommu.js';
export { IommufdVeventq, iommufdVeventqAlloc, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, type IommufdVevent, type VeventqListener } from './iommufd/veventq.js';
export type { IommuViommuType, IommuViommuInvalidateResult } from './iommu/viommu.js';
export type { DmaRequest, DmaResult, DmaStatus, TrafficStatus, ResponseLogEntry } from './hw/pcie-function.js';
export type { WalkTrace, WalkS1Level, WalkS2Step } from './hw/walk-trace.js';
