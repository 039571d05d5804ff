/**
 * DOC: wire types of the REST API, derived from the protocol's zod schemas
 *
 * Request bodies are the schemas' *input* types (what a client sends: u64
 * as `"0x…"` strings, optional fields with contract defaults left out);
 * results are the wire form the daemon sends (also the input side of the
 * result schemas). `WireInput<S>` is zod's `z.input<S>`, spelled out so that
 * clients/ depends on protocol/ alone.
 */
import type {
  zAddDeviceBody,
  zAttachBody,
  zDetachBody,
  zDevIdResult,
  zDmaBody,
  zFaultAllocBody,
  zHealth,
  zHwptAllocBody,
  zHwptInvalidateBody,
  zHwptInvalidateResult,
  zIdResult,
  zIoasMapBody,
  zIovaRangeBody,
  zMemoryReadResult,
  zMemoryWriteBody,
  zPageRequestBody,
  zSvaBindBody,
  zTrafficBody,
  zUnmapResult,
  zVdeviceAllocBody,
  zVeventqAllocBody,
  zViommuAllocBody,
  zViommuInvalidateBody,
} from '../../protocol/index.js';

export type {
  ContextCreated,
  ContextInfo,
  ContextList,
  DeviceResponses,
  DmaResult,
  FaultCreated,
  FaultStatus,
  ObjectList,
  Platform,
  PlatformDevice,
  TrafficStatus,
  VeventqCreated,
  VeventqStatus,
} from '../../protocol/index.js';

/** WireInput - the input type of a zod schema (zod's `z.input<S>`). */
export type WireInput<S> = S extends { _zod: { input: infer I } } ? I : never;

/** AddDeviceRequest - POST /v1/platform/devices body. */
export type AddDeviceRequest = WireInput<typeof zAddDeviceBody>;
/** DmaRequest - POST /v1/platform/devices/:name/dma body. */
export type DmaRequest = WireInput<typeof zDmaBody>;
/** PageRequestRequest - POST /v1/platform/devices/:name/page-requests body. */
export type PageRequestRequest = WireInput<typeof zPageRequestBody>;
/** SvaBindRequest - POST /v1/platform/devices/:name/sva body. */
export type SvaBindRequest = WireInput<typeof zSvaBindBody>;
/** TrafficRequest - POST /v1/platform/devices/:name/traffic body. */
export type TrafficRequest = WireInput<typeof zTrafficBody>;
/** IoasMapRequest - POST .../ioas/:id/map body. */
export type IoasMapRequest = WireInput<typeof zIoasMapBody>;
/** IovaRange - `{iova, length}`: unmap and memory read bodies. */
export type IovaRange = WireInput<typeof zIovaRangeBody>;
/** MemoryWriteRequest - POST .../ioas/:id/memory/write body. */
export type MemoryWriteRequest = WireInput<typeof zMemoryWriteBody>;
/** HwptAllocRequest - POST .../hwpt body. */
export type HwptAllocRequest = WireInput<typeof zHwptAllocBody>;
/** HwptInvalidateRequest - POST .../hwpt/:id/invalidate body. */
export type HwptInvalidateRequest = WireInput<typeof zHwptInvalidateBody>;
/** AttachRequest - attach and replace body. */
export type AttachRequest = WireInput<typeof zAttachBody>;
/** DetachRequest - detach body. */
export type DetachRequest = WireInput<typeof zDetachBody>;
/** FaultAllocRequest - POST .../faults body. */
export type FaultAllocRequest = WireInput<typeof zFaultAllocBody>;

/** ViommuAllocRequest - POST .../viommu body. */
export type ViommuAllocRequest = WireInput<typeof zViommuAllocBody>;
/** VdeviceAllocRequest - POST .../vdevice body (virt_id a u64 string: the vSID). */
export type VdeviceAllocRequest = WireInput<typeof zVdeviceAllocBody>;
/** VeventqAllocRequest - POST .../veventq body. */
export type VeventqAllocRequest = WireInput<typeof zVeventqAllocBody>;
/** ViommuInvalidateRequest - POST .../viommu/:id/invalidate body. */
export type ViommuInvalidateRequest = WireInput<typeof zViommuInvalidateBody>;

/** IdResult - `{id}` of a new object. */
export type IdResult = WireInput<typeof zIdResult>;
/** DevIdResult - `{dev_id}` of a bound device. */
export type DevIdResult = WireInput<typeof zDevIdResult>;
/** UnmapResult - `{unmapped}` bytes (u64 string). */
export type UnmapResult = WireInput<typeof zUnmapResult>;
/** MemoryReadResult - `{data}` (hex). */
export type MemoryReadResult = WireInput<typeof zMemoryReadResult>;
/** HwptInvalidateResult - `{done}` entries. */
export type HwptInvalidateResult = WireInput<typeof zHwptInvalidateResult>;
/** Health - GET /healthz result. */
export type Health = WireInput<typeof zHealth>;
