/**
 * DOC: REST schemas and the command table
 *
 * zod schemas for every REST route of the contract and ONE table, %COMMANDS,
 * from which the server builds its routes, the docs and the OpenAPI document.
 *
 * Conventions (all schemas):
 * - objects are strict: an unknown key is refused (EINVAL);
 * - u64 fields (addresses, byte lengths) are `"0x…"` strings parsed to bigint
 *   (zU64), so a JSON number there is refused; other numbers are u32;
 * - `flags` and `__reserved` accept any u32: a nonzero value that must be 0 is
 *   the core's EOPNOTSUPP, not a schema error;
 * - an optional field with a contract default gets it on parse, so the parsed
 *   body (z.output) is what the core consumes, and the result types (z.input)
 *   are what the server sends.
 *
 * A request that fails its schema is EINVAL with formatZodError()'s message.
 */
import { z } from 'zod';
import { ERRNOS, type Errno } from './errno.js';
import { zDecimalU32, zHexData, zU32, zU64 } from './u64.js';
import { expectMessage, objectMessage } from './zod-errors.js';

export { formatZodError } from './zod-errors.js';

/* ---------------------------------------------------------------- scalars */

const zBool = z.boolean({ error: expectMessage('a boolean') });

/** zObjectId - an object id in a result (u32 ≥ 1; 0 never names an object). */
const zObjectId = zU32.min(1, { error: 'expected an object id (≥ 1)' });

/** zDeviceName - a platform device name (also used in URL paths). */
export const zDeviceName = z.string({ error: expectMessage('a device name string') }).regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, {
  error: 'expected a device name (1 to 64 of letters, digits, ".", "_", ":", "-"; starting with a letter or digit)',
});

/** zBdf - a PCI address, `DDDD:BB:dd.f` or `BB:dd.f` (hex). */
export const zBdf = z.string({ error: expectMessage('a bdf string') }).regex(/^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]$/, {
  error: 'expected a bdf such as "0000:00:03.0" or "00:03.0"',
});

function strict<T extends z.core.$ZodLooseShape>(shape: T, what = 'an object') {
  return z.strictObject(shape, { error: objectMessage(what) });
}

function arrayOf<T extends z.ZodType>(item: T, what: string) {
  return z.array(item, { error: expectMessage(`an array of ${what}`) });
}

/** zEmptyBody - the body of a route that takes none: `{}` (an absent body counts as `{}`). */
export const zEmptyBody = strict({}, 'an empty object');

/** zEmptyResult - the result of a non-204 route with nothing to report: `{}`. */
export const zEmptyResult = strict({}, 'an empty object');

/**
 * zErrorBody - every error response: `{errno, message}`, and `done` (the
 * entries handled before the bad one) from a command that processes an
 * array, as an invalidation.
 */
export const zErrorBody = strict({
  errno: z.enum(ERRNOS as [Errno, ...Errno[]], { error: expectMessage('an errno name') }),
  message: z.string(),
  /** Invalidation errors: the entries or commands handled before the bad one. */
  done: zU32.optional(),
});
/** ErrorBody - an error response body. */
export type ErrorBody = z.infer<typeof zErrorBody>;

/* ----------------------------------------------------------------- params */

/** zCtxParams - `:ctx`. */
export const zCtxParams = strict({ ctx: zDecimalU32 }, 'path parameters');
/** zObjectParams - `:ctx` and `:id` (an object of the context). */
export const zObjectParams = strict({ ctx: zDecimalU32, id: zDecimalU32 }, 'path parameters');
/** zDevIdParams - `:ctx` and `:dev_id` (a device object of the context). */
export const zDevIdParams = strict({ ctx: zDecimalU32, dev_id: zDecimalU32 }, 'path parameters');
/** zDeviceNameParams - `:name` (a platform device). */
export const zDeviceNameParams = strict({ name: zDeviceName }, 'path parameters');
/** zSvaParams - `:name` and `:pasid`. */
export const zSvaParams = strict({ name: zDeviceName, pasid: zDecimalU32 }, 'path parameters');

/* --------------------------------------------------------------- platform */

/** IOMMU_MODELS - the simulated IOMMU models. */
export const IOMMU_MODELS = ['vtd', 'smmuv3', 'generic'] as const;

const capsFields = {
  pasid_bits: zU32.max(20, { error: 'expected pasid_bits 0..20' }),
  pri: zBool,
  pri_outstanding: zU32.min(1, { error: 'expected pri_outstanding 1..512' }).max(512, { error: 'expected pri_outstanding 1..512' }),
  ats: zBool,
  is_vf: zBool,
  prg_response_needs_pasid: zBool,
};

/** zDeviceCaps - a device's capabilities, all present (results); `stall` only on an SMMUv3-model device. */
export const zDeviceCaps = strict({ ...capsFields, stall: zBool.optional() }, 'a caps object');
/** DeviceCaps - a device's capabilities. */
export type DeviceCaps = z.infer<typeof zDeviceCaps>;

/**
 * zDeviceCapsBody - capabilities in a request: every field optional with the
 * contract defaults (pasid_bits 20, pri true, pri_outstanding 512, ats true,
 * is_vf false, prg_response_needs_pasid true).
 */
export const zDeviceCapsBody = strict(
  {
    pasid_bits: capsFields.pasid_bits.default(20),
    pri: capsFields.pri.default(true),
    pri_outstanding: capsFields.pri_outstanding.default(512),
    ats: capsFields.ats.default(true),
    is_vf: capsFields.is_vf.default(false),
    prg_response_needs_pasid: capsFields.prg_response_needs_pasid.default(true),
    /** SMMUv3-model devices only (default true there; EINVAL elsewhere). */
    stall: zBool.optional(),
  },
  'a caps object',
);

/** zAddDeviceBody - POST /v1/platform/devices (caps defaults applied). */
export const zAddDeviceBody = strict({
  name: zDeviceName,
  iommu: z
    .string({ error: expectMessage('an IOMMU name') })
    .min(1)
    .optional(),
  bdf: zBdf.optional(),
  caps: zDeviceCapsBody.prefault({}),
});
/** AddDeviceBody - a parsed device-add body. */
export type AddDeviceBody = z.output<typeof zAddDeviceBody>;

/**
 * deviceStateFields - the read-only state GET /v1/platform reports with each
 * device. `ctx` (extension) is the context the device is bound to, or null.
 */
const deviceStateFields = {
  bound: zBool,
  pri_enabled: zBool,
  pri_status: strict({ response_failure: zBool, stopped: zBool }, 'a pri_status object'),
  ctx: zObjectId.nullable(),
};

/** zPlatformDevice - a platform device as reported (`ctx` is an extension). */
export const zPlatformDevice = strict({
  name: zDeviceName,
  bdf: zBdf,
  iommu: z.string(),
  caps: zDeviceCaps,
  ...deviceStateFields,
});
/** PlatformDevice - a platform device as reported (wire form). */
export type PlatformDevice = z.input<typeof zPlatformDevice>;

/** zHostVaBits - the host CPU's virtual address width an IOMMU driver assumes (48 or 57, LA57). */
const zHostVaBits = z.union([z.literal(48), z.literal(57)], { error: 'expected host_va_bits 48 or 57' });

/** zIommu - an IOMMU unit as reported (extension: host_va_bits, default 48). */
export const zIommu = strict({ name: z.string(), model: z.enum(IOMMU_MODELS), prq_depth: zU32, host_va_bits: zHostVaBits.optional() });

/** zPlatform - GET /v1/platform (extension: `kernel`, the kernel profile that runs). */
export const zPlatform = strict({ kernel: z.string().optional(), iommus: arrayOf(zIommu, 'IOMMUs'), devices: arrayOf(zPlatformDevice, 'devices') });
/** Platform - GET /v1/platform result (wire form). */
export type Platform = z.input<typeof zPlatform>;

/**
 * zPlatformFileDevice - a device of a platform file: as POST
 * /v1/platform/devices takes it, or as GET /v1/platform reports it (the
 * read-only state, bound, pri_enabled, pri_status and ctx, is accepted and
 * ignored: a new daemon starts with every device unbound, PRI off).
 */
const zPlatformFileDevice = zAddDeviceBody
  .extend({
    bound: deviceStateFields.bound.optional(),
    pri_enabled: deviceStateFields.pri_enabled.optional(),
    pri_status: deviceStateFields.pri_status.optional(),
    ctx: deviceStateFields.ctx.optional(),
  })
  .transform(
    ({ name, iommu, bdf, caps }): AddDeviceBody => ({
      name,
      ...(iommu === undefined ? {} : { iommu }),
      ...(bdf === undefined ? {} : { bdf }),
      caps,
    }),
  );

/**
 * zPlatformFile - a `--platform FILE` description: IOMMUs as GET
 * /v1/platform reports them and devices as POST /v1/platform/devices takes
 * them (caps defaults applied). The output of GET /v1/platform is one.
 */
export const zPlatformFile = strict({
  // GET /v1/platform's `kernel`, accepted so its output loads as a file; the daemon's --kernel decides.
  kernel: z.string().optional(),
  iommus: arrayOf(
    strict(
      { name: zDeviceName, model: z.enum(IOMMU_MODELS), prq_depth: zU32.min(1, { error: 'expected prq_depth ≥ 1' }), host_va_bits: zHostVaBits.optional() },
      'an IOMMU object',
    ),
    'IOMMUs',
  ).min(1, { error: 'expected at least one IOMMU' }),
  devices: arrayOf(zPlatformFileDevice, 'devices'),
});
/** PlatformFile - a parsed platform description. */
export type PlatformFile = z.output<typeof zPlatformFile>;

/** DMA_STATUS - outcomes of a simulated DMA. */
export const DMA_STATUS = ['ok', 'invalid', 'failure', 'pri_disabled', 'stage2_fault', 'timeout'] as const;

/** zDmaBody - POST /v1/platform/devices/:name/dma (priv, exec false; timeout_ms 10000 by default). */
export const zDmaBody = strict({
  pasid: zU32.optional(),
  iova: zU64,
  length: zU64,
  access: z.enum(['read', 'write'], { error: expectMessage('"read" or "write"') }),
  data: zHexData.optional(),
  priv: zBool.default(false),
  exec: zBool.default(false),
  timeout_ms: zU32.default(10000),
});
/** DmaBody - a parsed DMA request. */
export type DmaBody = z.output<typeof zDmaBody>;

/** zDmaResult - the outcome of a DMA (HTTP 200 whatever it is). */
export const zDmaResult = strict({
  status: z.enum(DMA_STATUS),
  page_requests: zU32,
  retries: zU32,
  data: zHexData.optional(),
});
/** DmaResult - a DMA outcome (wire form). */
export type DmaResult = z.input<typeof zDmaResult>;

/** zPageRequestBody - POST /v1/platform/devices/:name/page-requests (grpid is a 9-bit PRG index). */
export const zPageRequestBody = strict({
  pasid: zU32.optional(),
  grpid: zU32.max(511, { error: 'expected a 9-bit PRG index (0..511)' }),
  addr: zU64,
  perm: zU32,
  last: zBool,
});
/** PageRequestBody - a parsed injected page request. */
export type PageRequestBody = z.output<typeof zPageRequestBody>;

/** zResponsesQuery - `?since=seq`: only responses with a larger seq. */
export const zResponsesQuery = strict({ since: zDecimalU32.optional() }, 'query parameters');

/** zDeviceResponses - every page group response a device received (seq from 1). */
export const zDeviceResponses = strict({
  responses: arrayOf(
    strict({ pasid: zU32.optional(), grpid: zU32, code: z.enum(['success', 'invalid', 'failure']), seq: zObjectId }, 'a response object'),
    'responses',
  ),
});
/** DeviceResponses - GET .../responses result (wire form). */
export type DeviceResponses = z.input<typeof zDeviceResponses>;

/** zSvaBindBody - POST /v1/platform/devices/:name/sva (VMA read, write default true; exec false). */
export const zSvaBindBody = strict({
  pasid: zU32,
  vmas: arrayOf(
    strict({ start: zU64, length: zU64, read: zBool.default(true), write: zBool.default(true), exec: zBool.default(false) }, 'a VMA object'),
    'VMAs',
  ),
});
/** SvaBindBody - a parsed SVA bind. */
export type SvaBindBody = z.output<typeof zSvaBindBody>;

/** TRAFFIC_BASE - the traffic generator's default first page address. */
export const TRAFFIC_BASE = '0x100000000';

/**
 * zTrafficBody - POST /v1/platform/devices/:name/traffic. Defaults:
 * pages_per_group 1, base 0x100000000, perm READ; in_flight defaults to the
 * device's pri_outstanding budget (so it stays absent here).
 */
export const zTrafficBody = strict({
  count: zU32.min(1, { error: 'expected a count ≥ 1' }),
  pages_per_group: zU32.min(1, { error: 'expected pages_per_group ≥ 1' }).default(1),
  in_flight: zU32.min(1, { error: 'expected in_flight ≥ 1' }).optional(),
  pasid: zU32.optional(),
  base: zU64.prefault(TRAFFIC_BASE),
  perm: zU32.default(1),
});
/** TrafficBody - a parsed traffic run. */
export type TrafficBody = z.output<typeof zTrafficBody>;

/** zTrafficStatus - GET .../traffic: the current or last run. */
export const zTrafficStatus = strict({
  running: zBool,
  sent: zU32,
  answered: zU32,
  by_code: strict({ success: zU32, invalid: zU32, failure: zU32 }, 'a by_code object'),
  elapsed_ms: zU32,
  latency_us: strict({ p50: zU32, p99: zU32, max: zU32 }, 'a latency object'),
});
/** TrafficStatus - traffic status (wire form). */
export type TrafficStatus = z.input<typeof zTrafficStatus>;

/* ------------------------------------------------------------ observation */

/** zWalkQuery - GET .../walk: `?pasid=&addr=0x…&perm=` (perm as in a page request, READ by default). */
export const zWalkQuery = strict({ pasid: zDecimalU32.optional(), addr: zU64, perm: zDecimalU32.optional() }, 'query parameters');

/** zWalkS2 - one stage-2 translation of a walk: `hpa` absent when stage 2 maps nothing there. */
const zWalkS2 = strict({ gpa: zU64, hpa: zU64.optional(), read: zBool, write: zBool }, 'a stage-2 step');

/**
 * zWalkResult - the translation walk of (device, pasid, addr, perm) as the
 * tables are now: the context's stages, each stage-1 level read (root
 * first: the entry's address, its stage-2 translation when nested, the
 * entry), the stage-2 translation of the result, and the outcome. An
 * SMMUv3 nested context (`smmuv3`) adds the guest STE's fields, the
 * context descriptor read and its T0SZ; its levels are the AArch64 ones.
 */
export const zWalkResult = strict({
  device: zDeviceName,
  pasid: zU32.optional(),
  addr: zU64,
  perm: zU32,
  context: z.enum(['none', 's1', 's2', 'nested', 'smmuv3']),
  ste: strict({ config: zU32, s1_context_ptr: zU64, s1_cd_max: zU32, s1dss: zU32 }, 'the guest STE fields').optional(),
  cd: strict(
    { index: zU32, entry_gpa: zU64, s2: zWalkS2.optional(), words: arrayOf(zU64, 'CD words 0 and 1').optional() },
    'a context descriptor read',
  ).optional(),
  t0sz: zU32.optional(),
  s1_root: zU64.optional(),
  addr_width: z.union([z.literal(48), z.literal(57)]).optional(),
  stage1: arrayOf(strict({ level: zU32, entry_gpa: zU64, s2: zWalkS2.optional(), entry: zU64.optional() }, 'a stage-1 level'), 'stage-1 levels'),
  stage2: zWalkS2.optional(),
  result: strict(
    {
      kind: z.enum(['ok', 'fault']),
      hpa: zU64.optional(),
      stage: zU32.optional(),
      reason: z.string().optional(),
      level: zU32.optional(),
    },
    'a walk outcome',
  ),
});
/** WalkResult - a walk (wire form). */
export type WalkResult = z.input<typeof zWalkResult>;

/** OBSERVE_EVENT_KINDS - what happened to a sampled group. */
export const OBSERVE_EVENT_KINDS = ['reported', 'delivered', 'answered', 'auto'] as const;

/**
 * zObserveGroupEvent - one sampled group event of the observation feed:
 * the group (device, pasid, grpid, addr, perm of its last request), its
 * fault queue (ctx, queue), its cookie once delivered, the answer's code
 * and latency (answered, auto) and the automatic cause (auto).
 */
export const zObserveGroupEvent = strict({
  t: z.number(),
  kind: z.enum(OBSERVE_EVENT_KINDS),
  device: z.string(),
  pasid: zU32.optional(),
  grpid: zU32,
  addr: zU64,
  perm: zU32,
  ctx: zU32,
  queue: zU32,
  cookie: zU32.optional(),
  code: z.enum(['success', 'invalid']).optional(),
  latency_ms: z.number().optional(),
  cause: z.string().optional(),
});
/** ObserveGroupEvent - a group event (wire form). */
export type ObserveGroupEvent = z.input<typeof zObserveGroupEvent>;

/**
 * zObserveSnapshot - the feed's once-a-second `snapshot` event: per device
 * (PRI budget in use, PRQ occupancy, IOPF on/off), per fault queue (queued,
 * outstanding, connections, counters), per context (objects by type), and
 * totals over the last interval (groups/s reported, answered by a client,
 * answered by the daemon; latency percentiles in ms of the groups answered).
 * `events` counts the group events sent and those the sampling left out;
 * `dropped` the messages this subscriber missed because it read too slowly.
 */
export const zObserveSnapshot = strict({
  t: z.number(),
  interval_ms: z.number(),
  devices: arrayOf(
    strict(
      {
        name: zDeviceName,
        iommu: z.string(),
        pri_enabled: zBool,
        iopf: zBool,
        pri_budget: strict({ in_use: zU32, total: zU32 }, 'a budget object'),
        prq: strict({ used: zU32, depth: zU32, overflow: zBool }, 'a prq object'),
      },
      'a device object',
    ),
    'devices',
  ),
  queues: arrayOf(
    strict({ ctx: zU32, id: zU32, queued: zU32, outstanding: zU32, connections: zU32, counters: z.record(z.string(), zU32) }, 'a queue object'),
    'queues',
  ),
  contexts: arrayOf(strict({ ctx: zU32, objects: z.record(z.string(), zU32) }, 'a context object'), 'contexts'),
  totals: strict(
    {
      reported_per_s: z.number(),
      answered_per_s: z.number(),
      auto_answered_per_s: z.number(),
      latency_ms: strict({ count: zU32, p50: z.number(), p90: z.number(), p99: z.number(), max: z.number() }, 'a latency object'),
    },
    'a totals object',
  ),
  events: strict({ sent: zU32, sampled_out: zU32 }, 'an events object'),
  dropped: zU32,
});
/** ObserveSnapshot - a snapshot (wire form). */
export type ObserveSnapshot = z.input<typeof zObserveSnapshot>;

/** zObserveGroups - the feed's `groups` event: the sampled group events since the last one, oldest first. */
export const zObserveGroups = strict({ events: arrayOf(zObserveGroupEvent, 'group events') }, 'a groups object');

/** zObserveQuery - GET /v1/platform/observe: `?events=0` for snapshots only. */
export const zObserveQuery = strict({ events: z.enum(['0', '1']).optional() }, 'query parameters');
/** zCount - a count or a duration that may exceed a u32 (a whole number ≥ 0). */
const zCount = z
  .number({ error: expectMessage('a number') })
  .int()
  .min(0);

/**
 * zContextInfo - one open context as the administrator sees it: the
 * devices bound to it (by name), its object count, its open fault streams
 * and its age.
 */
export const zContextInfo = strict({
  ctx: zObjectId,
  devices: arrayOf(zDeviceName, 'device names'),
  objects: zCount,
  streams: zCount,
  age_ms: zCount,
});
/** ContextInfo - one open context (wire form). */
export type ContextInfo = z.input<typeof zContextInfo>;

/** zContextList - GET /v1/platform/contexts (oldest first). */
export const zContextList = strict({ contexts: arrayOf(zContextInfo, 'contexts') });
/** ContextList - GET /v1/platform/contexts result (wire form). */
export type ContextList = z.input<typeof zContextList>;

/* --------------------------------------------------------------- contexts */

/** zContextCreated - POST /v1/contexts result. */
export const zContextCreated = strict({ ctx: zObjectId, token: z.string().min(1) });
/** ContextCreated - a new context and its token (wire form). */
export type ContextCreated = z.input<typeof zContextCreated>;

/** OBJECT_TYPES - the object types of a context (kernel IOMMUFD_OBJ_*). */
export const OBJECT_TYPES = ['device', 'ioas', 'hwpt_paging', 'hwpt_nested', 'fault', 'viommu', 'vdevice', 'veventq'] as const;
/** ObjectType - one of %OBJECT_TYPES. */
export type ObjectType = (typeof OBJECT_TYPES)[number];

/** zObjectList - GET /v1/contexts/:ctx/objects: `{id, type, ...}` (more fields per type). */
export const zObjectList = strict({
  objects: arrayOf(z.looseObject({ id: zObjectId, type: z.enum(OBJECT_TYPES) }), 'objects'),
});
/** ObjectList - the objects of a context (wire form). */
export type ObjectList = z.input<typeof zObjectList>;

/** zBindBody - POST /v1/contexts/:ctx/devices. */
export const zBindBody = strict({ name: zDeviceName });
/** BindBody - a parsed bind. */
export type BindBody = z.output<typeof zBindBody>;

/** zDevIdResult - `{dev_id}`. */
export const zDevIdResult = strict({ dev_id: zObjectId });

/** zIdResult - `{id}` of a new object. */
export const zIdResult = strict({ id: zObjectId });

/** zIoasMapBody - POST .../ioas/:id/map (read, write default true). */
export const zIoasMapBody = strict({ iova: zU64, length: zU64, read: zBool.default(true), write: zBool.default(true) });
/** IoasMapBody - a parsed map. */
export type IoasMapBody = z.output<typeof zIoasMapBody>;

/** zIovaRangeBody - `{iova, length}` (unmap, memory read). */
export const zIovaRangeBody = strict({ iova: zU64, length: zU64 });
/** IovaRangeBody - a parsed IOVA range. */
export type IovaRangeBody = z.output<typeof zIovaRangeBody>;

/** zUnmapResult - `{unmapped}`: bytes unmapped (u64). */
export const zUnmapResult = strict({ unmapped: zU64 });

/** zMemoryWriteBody - POST .../ioas/:id/memory/write: all or nothing. */
export const zMemoryWriteBody = strict({
  writes: arrayOf(strict({ iova: zU64, data: zHexData }, 'a write object'), 'writes'),
});
/** MemoryWriteBody - parsed guest memory writes. */
export type MemoryWriteBody = z.output<typeof zMemoryWriteBody>;

/** zMemoryReadResult - `{data}`. */
export const zMemoryReadResult = strict({ data: zHexData });

/** HWPT_DATA_TYPES - hwpt data types (kernel IOMMU_HWPT_DATA_NONE, _VTD_S1, _ARM_SMMUV3). */
export const HWPT_DATA_TYPES = ['none', 'vtd_s1', 'arm_smmuv3'] as const;

/** zSteWords - the guest STE's first two words (struct iommu_hwpt_arm_smmuv3), `["0x…", "0x…"]`. */
const zSteWords = z.tuple([zU64, zU64], { error: expectMessage('two u64 words ["0x…", "0x…"]') });

/** zArmSmmuv3Data - struct iommu_hwpt_arm_smmuv3: the guest STE of a nested hwpt on a vIOMMU. */
export const zArmSmmuv3Data = strict({ ste: zSteWords }, 'an arm_smmuv3 data object');

/** zVtdS1Data - struct iommu_hwpt_vtd_s1: the guest's stage-1 table. */
export const zVtdS1Data = strict(
  {
    flags: zU32,
    pgtbl_addr: zU64,
    addr_width: z.union([z.literal(48), z.literal(57)], { error: 'expected addr_width 48 or 57' }),
  },
  'a vtd_s1 data object',
);

/**
 * zHwptData - the driver data of a nested hwpt: the fields of vtd_s1
 * (zVtdS1Data) or of arm_smmuv3 (zArmSmmuv3Data), each checked as there;
 * which ones must be present follows from data_type (the server checks).
 */
export const zHwptData = strict(
  { ...zVtdS1Data.shape, ...zArmSmmuv3Data.shape },
  'a vtd_s1 {flags, pgtbl_addr, addr_width} or arm_smmuv3 {ste} data object',
).partial();
/** HwptData - parsed hwpt data. */
export type HwptData = z.output<typeof zHwptData>;

/**
 * zHwptAllocBody - POST .../hwpt (IOMMU_HWPT_ALLOC). flags and __reserved
 * default to 0; fault_id is read only with FAULT_ID_VALID.
 */
export const zHwptAllocBody = strict({
  dev_id: zU32,
  pt_id: zU32,
  flags: zU32.default(0),
  data_type: z.enum(HWPT_DATA_TYPES, { error: expectMessage('data_type "none", "vtd_s1" or "arm_smmuv3"') }).optional(),
  data: zHwptData.optional(),
  fault_id: zU32.optional(),
  __reserved: zU32.default(0),
});
/** HwptAllocBody - a parsed hwpt allocation. */
export type HwptAllocBody = z.output<typeof zHwptAllocBody>;

/** NPAGES_ALL - the u64 all-ones npages of an invalidation (with addr 0: everything). */
export const NPAGES_ALL = '0xffffffffffffffff';

/**
 * zHwptInvalidateBody - POST .../hwpt/:id/invalidate: struct
 * iommu_hwpt_vtd_s1_invalidate entries. `npages` is a u32 or the string
 * "0xffffffffffffffff" (U64_MAX, parsed as a bigint); `flags` (default 0)
 * may carry LEAF 1.
 */
export const zHwptInvalidateBody = strict({
  entries: arrayOf(
    strict(
      {
        addr: zU64,
        npages: z.union([zU32, z.literal(NPAGES_ALL).transform(() => 0xffff_ffff_ffff_ffffn)], {
          error: `expected npages a u32 or "${NPAGES_ALL}"`,
        }),
        flags: zU32.default(0),
      },
      'an entry object',
    ),
    'entries',
  ),
});
/** HwptInvalidateBody - parsed invalidation entries. */
export type HwptInvalidateBody = z.output<typeof zHwptInvalidateBody>;

/** zHwptInvalidateResult - `{done}`: entries processed. */
export const zHwptInvalidateResult = strict({ done: zU32 });

/** zAttachBody - attach or replace: `{pt_id, pasid?}` (no pasid: the RID). */
export const zAttachBody = strict({ pt_id: zU32, pasid: zU32.optional() });
/** AttachBody - a parsed attach or replace. */
export type AttachBody = z.output<typeof zAttachBody>;

/** zDetachBody - detach: `{pasid?}`. */
export const zDetachBody = strict({ pasid: zU32.optional() });
/** DetachBody - a parsed detach. */
export type DetachBody = z.output<typeof zDetachBody>;

/** OVERFLOW_POLICIES - how a full fault queue answers a new group. */
export const OVERFLOW_POLICIES = ['success', 'invalid'] as const;

/**
 * zFaultAllocBody - POST .../faults (IOMMU_FAULT_QUEUE_ALLOC). Defaults are
 * the kernel's: flags 0, depth 0 (unbounded), overflow "success",
 * response_timeout_ms 0 (never).
 */
export const zFaultAllocBody = strict({
  flags: zU32.default(0),
  depth: zU32.default(0),
  overflow: z.enum(OVERFLOW_POLICIES, { error: expectMessage('overflow "success" or "invalid"') }).default('success'),
  response_timeout_ms: zU32.default(0),
});
/** FaultAllocBody - a parsed fault queue allocation. */
export type FaultAllocBody = z.output<typeof zFaultAllocBody>;

/** zFaultCreated - `{id, stream}`: stream is the path of the fault stream. */
export const zFaultCreated = strict({ id: zObjectId, stream: z.string() });
/** FaultCreated - a new fault queue (wire form). */
export type FaultCreated = z.input<typeof zFaultCreated>;

/**
 * zFaultStatus - GET .../faults/:id: `queued` (waiting for delivery,
 * including groups returned by a closed connection), `outstanding`
 * (delivered on open connections, unanswered), `connections` (open streams),
 * `counters` (totals keyed by cause).
 */
export const zFaultStatus = strict({
  id: zObjectId,
  queued: zU32,
  outstanding: zU32,
  connections: zU32,
  counters: z.record(z.string(), zU32),
});
/** FaultStatus - fault queue status (wire form). */
export type FaultStatus = z.input<typeof zFaultStatus>;

/** VIOMMU_TYPES - vIOMMU and vEVENTQ types (kernel IOMMU_VIOMMU_TYPE_ARM_SMMUV3, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3). */
export const VIOMMU_TYPES = ['arm_smmuv3'] as const;
const zViommuType = z.enum(VIOMMU_TYPES, { error: expectMessage('type "arm_smmuv3"') });

/** zViommuAllocBody - POST .../viommu (IOMMU_VIOMMU_ALLOC): on a NEST_PARENT hwpt of the device's SMMUv3. */
export const zViommuAllocBody = strict({ type: zViommuType, dev_id: zU32, hwpt_id: zU32, flags: zU32.default(0) });
/** ViommuAllocBody - a parsed vIOMMU allocation. */
export type ViommuAllocBody = z.output<typeof zViommuAllocBody>;

/** zVdeviceAllocBody - POST .../vdevice (IOMMU_VDEVICE_ALLOC): virt_id is the vSID, a u64. */
export const zVdeviceAllocBody = strict({ viommu_id: zU32, dev_id: zU32, virt_id: zU64 });
/** VdeviceAllocBody - a parsed vDEVICE allocation. */
export type VdeviceAllocBody = z.output<typeof zVdeviceAllocBody>;

/** zVeventqAllocBody - POST .../veventq (IOMMU_VEVENTQ_ALLOC): depth ≥ 1 events. */
export const zVeventqAllocBody = strict({ viommu_id: zU32, type: zViommuType, depth: zU32, flags: zU32.default(0), __reserved: zU32.default(0) });
/** VeventqAllocBody - a parsed vEVENTQ allocation. */
export type VeventqAllocBody = z.output<typeof zVeventqAllocBody>;

/** zVeventqCreated - `{id, stream}`: stream is the path of the vEVENTQ stream. */
export const zVeventqCreated = strict({ id: zObjectId, stream: z.string() });
/** VeventqCreated - a new vEVENTQ (wire form). */
export type VeventqCreated = z.input<typeof zVeventqCreated>;

/**
 * zVeventqStatus - GET .../veventq/:id: `queued` (entries a read would
 * return now, the LOST_EVENTS header included), `depth`, `sequence` (the
 * next one), `lost` (events dropped so far), `connections` (open streams).
 */
export const zVeventqStatus = strict({ id: zObjectId, queued: zU32, depth: zU32, sequence: zU32, lost: zU32, connections: zU32 });
/** VeventqStatus - vEVENTQ status (wire form). */
export type VeventqStatus = z.input<typeof zVeventqStatus>;

/** zViommuInvalidateBody - POST .../viommu/:id/invalidate: SMMUv3 commands, two u64 words each. */
export const zViommuInvalidateBody = strict({ data_type: zViommuType, commands: arrayOf(zSteWords, 'commands') });
/** ViommuInvalidateBody - parsed vIOMMU invalidation commands. */
export type ViommuInvalidateBody = z.output<typeof zViommuInvalidateBody>;

/** zHealth - GET /healthz. */
export const zHealth = strict({ status: z.literal('ok') });

/* ---------------------------------------------------------- command table */

/** HttpMethod - the methods the REST API uses. */
export type HttpMethod = 'GET' | 'POST' | 'DELETE';

/**
 * AuthKind - what a route requires: nothing, the admin token (when one is
 * configured), or the token of the context named by `:ctx`.
 */
export type AuthKind = 'none' | 'admin' | 'ctx';

/**
 * struct Command - one REST route.
 * @name: stable name, e.g. `ioas.map`.
 * @method: HTTP method.
 * @url: fastify-style path, e.g. `/v1/contexts/:ctx/ioas/:id/map`.
 * @auth: the token the route requires.
 * @params: path parameters schema (strings in, numbers out for ids).
 * @query: query string schema.
 * @body: request body schema; an absent body is validated as `{}`.
 * @response: success body schema (absent for 204).
 * @status: success HTTP status.
 * @summary: one line for the docs.
 * @kernel: the kernel operation it mirrors, if any.
 * @errnos: every errno it can return (EINVAL, EACCES, EMSGSIZE and EIO
 *   included where they apply).
 * @stream: `sse` for a route whose success body is a Server-Sent Events
 *   stream (text/event-stream) of @response-shaped `data` lines.
 * @inputEio: the bad input the kernel itself answers EIO for on this route
 *   (a guest STE, an invalidation command); that EIO is HTTP 400, a client
 *   error, while an unexpected failure stays EIO 500.
 */
export interface Command {
  readonly name: string;
  readonly method: HttpMethod;
  readonly url: string;
  readonly auth: AuthKind;
  readonly params?: z.ZodType;
  readonly query?: z.ZodType;
  readonly body?: z.ZodType;
  readonly response?: z.ZodType;
  readonly status: number;
  readonly summary: string;
  readonly kernel?: string;
  readonly errnos: readonly Errno[];
  readonly stream?: 'sse';
  readonly inputEio?: string;
}

/** The table entry as written below: route-specific errnos only. */
type CommandSpec = Omit<Command, 'errnos'> & { readonly errnos?: readonly Errno[] };

/**
 * command() - complete a table entry with the errnos every route of its kind
 * can return: EINVAL (schema, or a body where none is taken), EACCES (token),
 * EMSGSIZE (body size, on every method but GET), EIO.
 * @spec: the entry as written in %COMMANDS.
 *
 * Return: the frozen command, typed as written (its name a literal type,
 * its schemas their own types) so that ParamsOf<'ioas.map'> and the like
 * can be derived from the table.
 */
function command<const S extends CommandSpec>(spec: S): S & { readonly errnos: readonly Errno[] } {
  const all = new Set<Errno>(spec.errnos ?? []);
  // A request of any method but GET may carry a body, even where the route takes
  // none: it is then refused (EINVAL), or EMSGSIZE when over the size limit.
  const mayHaveBody = spec.body !== undefined || spec.method !== 'GET';
  if (spec.params || spec.query || mayHaveBody) all.add('EINVAL');
  if (spec.auth !== 'none') all.add('EACCES');
  if (mayHaveBody) all.add('EMSGSIZE');
  all.add('EIO');
  return Object.freeze({ ...spec, errnos: Object.freeze(ERRNOS.filter((e) => all.has(e))) });
}

const P = '/v1/platform';
const D = '/v1/platform/devices/:name';
const C = '/v1/contexts/:ctx';

/**
 * COMMAND_TABLE - every REST route of the protocol (docs/protocol.md: platform,
 * contexts and objects, operations), each entry typed as written. The fault
 * stream is not here: see STREAM_URL.
 */
const COMMAND_TABLE = Object.freeze([
  command({
    name: 'platform.get',
    method: 'GET',
    url: P,
    auth: 'admin',
    status: 200,
    response: zPlatform,
    summary: 'The simulated hardware: IOMMUs and PCIe functions',
  }),
  command({
    name: 'platform.device.add',
    method: 'POST',
    url: `${P}/devices`,
    auth: 'admin',
    status: 201,
    body: zAddDeviceBody,
    response: zPlatformDevice,
    summary: 'Hot-plug a PCIe function (caps default to PASID 20 bits, PRI 512, ATS)',
    errnos: ['EEXIST', 'ENOENT', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'platform.device.remove',
    method: 'DELETE',
    url: D,
    auth: 'admin',
    status: 204,
    params: zDeviceNameParams,
    summary: 'Hot-unplug: unbind from its context (outstanding groups answered INVALID), then remove',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.device.dma',
    method: 'POST',
    url: `${D}/dma`,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    body: zDmaBody,
    response: zDmaResult,
    summary: 'Perform a DMA through the IOMMU and wait for its outcome (200 whatever the outcome)',
    errnos: ['ENOENT', 'E2BIG', 'EOVERFLOW', 'ENOMEM'],
  }),
  command({
    name: 'platform.device.page-request',
    method: 'POST',
    url: `${D}/page-requests`,
    auth: 'admin',
    status: 202,
    params: zDeviceNameParams,
    body: zPageRequestBody,
    response: zEmptyResult,
    summary: "Inject one raw page request into the device's IOMMU page request queue",
    kernel: 'selftest TRIGGER_IOPF',
    errnos: ['ENOENT', 'ENOSPC'],
  }),
  command({
    name: 'platform.device.responses',
    method: 'GET',
    url: `${D}/responses`,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    query: zResponsesQuery,
    response: zDeviceResponses,
    summary: 'Every page group response the device received, in order (?since=seq for newer ones)',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.device.pri-reset',
    method: 'POST',
    url: `${D}/pri-reset`,
    auth: 'admin',
    status: 204,
    params: zDeviceNameParams,
    body: zEmptyBody,
    summary: 'Clear Response Failure and re-enable PRI',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.sva.bind',
    method: 'POST',
    url: `${D}/sva`,
    auth: 'admin',
    status: 201,
    params: zDeviceNameParams,
    body: zSvaBindBody,
    response: zEmptyResult,
    summary: 'Bind a simulated process address space to a PASID (faults resolved in the daemon)',
    kernel: 'iommu_sva_bind_device',
    errnos: ['ENOENT', 'EBUSY', 'ENOMEM'],
  }),
  command({
    name: 'platform.sva.unbind',
    method: 'DELETE',
    url: `${D}/sva/:pasid`,
    auth: 'admin',
    status: 204,
    params: zSvaParams,
    summary: 'Flush pending SVA work for the device, then unbind the PASID',
    kernel: 'iommu_sva_unbind_device',
    errnos: ['ENOENT', 'EBUSY'],
  }),
  command({
    name: 'platform.traffic.start',
    method: 'POST',
    url: `${D}/traffic`,
    auth: 'admin',
    status: 202,
    params: zDeviceNameParams,
    body: zTrafficBody,
    response: zEmptyResult,
    summary: "Start the device's traffic generator (one run per device at a time)",
    errnos: ['ENOENT', 'EBUSY', 'EOVERFLOW'],
  }),
  command({
    name: 'platform.traffic.status',
    method: 'GET',
    url: `${D}/traffic`,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    response: zTrafficStatus,
    summary: 'Progress and latency of the current or last traffic run',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.traffic.stop',
    method: 'DELETE',
    url: `${D}/traffic`,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    response: zTrafficStatus,
    summary: "Stop the device's traffic generator (extension): no new groups; those in flight are still answered. Returns the run's status",
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.device.get',
    method: 'GET',
    url: D,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    response: zPlatformDevice,
    summary: 'One platform device, as GET /v1/platform lists it (extension)',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.contexts.list',
    method: 'GET',
    url: `${P}/contexts`,
    auth: 'admin',
    status: 200,
    response: zContextList,
    summary: 'Every open context: its bound devices, object count, open streams and age (extension)',
  }),
  command({
    name: 'platform.contexts.release',
    method: 'DELETE',
    url: `${P}/contexts/:ctx`,
    auth: 'admin',
    status: 204,
    params: zCtxParams,
    summary: "Force-release a context whose token is lost, as its owner's DELETE would (extension)",
    kernel: 'iommufd_fops_release',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.device.walk',
    method: 'GET',
    url: `${D}/walk`,
    auth: 'admin',
    status: 200,
    params: zDeviceNameParams,
    query: zWalkQuery,
    response: zWalkResult,
    summary:
      "Re-run the translation walk of (pasid, addr, perm) as the tables are now: each stage-1 level's entry and its stage-2 translation; no side effect (no IOTLB fill, no Accessed/Dirty bit)",
    errnos: ['ENOENT'],
  }),
  command({
    name: 'platform.observe',
    method: 'GET',
    url: `${P}/observe`,
    auth: 'admin',
    status: 200,
    query: zObserveQuery,
    response: z.union([zObserveSnapshot, zObserveGroups]),
    stream: 'sse',
    summary: 'The read-only observation feed (Server-Sent Events): a snapshot each second and sampled group events; it never takes, delays or answers a group',
    errnos: ['ENOSPC'],
  }),
  command({
    name: 'context.create',
    method: 'POST',
    url: '/v1/contexts',
    auth: 'none',
    status: 201,
    body: zEmptyBody,
    response: zContextCreated,
    summary: 'Open a context; its token is returned once',
    kernel: 'open("/dev/iommu")',
    errnos: ['ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'context.destroy',
    method: 'DELETE',
    url: C,
    auth: 'ctx',
    status: 204,
    params: zCtxParams,
    summary: 'Release: destroy every object leaf first, answer outstanding groups INVALID, close streams (1001)',
    kernel: 'iommufd_fops_release',
  }),
  command({
    name: 'object.list',
    method: 'GET',
    url: `${C}/objects`,
    auth: 'ctx',
    status: 200,
    params: zCtxParams,
    response: zObjectList,
    summary: 'The objects of the context',
  }),
  command({
    name: 'object.destroy',
    method: 'DELETE',
    url: `${C}/objects/:id`,
    auth: 'ctx',
    status: 204,
    params: zObjectParams,
    summary: 'Destroy an object; EBUSY while anything depends on it',
    kernel: 'IOMMU_DESTROY',
    errnos: ['ENOENT', 'EBUSY'],
  }),
  command({
    name: 'device.bind',
    method: 'POST',
    url: `${C}/devices`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zBindBody,
    response: zDevIdResult,
    summary: 'Bind a platform device to the context',
    kernel: 'VFIO_DEVICE_BIND_IOMMUFD',
    errnos: ['ENODEV', 'EBUSY', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'ioas.alloc',
    method: 'POST',
    url: `${C}/ioas`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zEmptyBody,
    response: zIdResult,
    summary: 'Allocate an IO address space',
    kernel: 'IOMMU_IOAS_ALLOC',
    errnos: ['ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'ioas.map',
    method: 'POST',
    url: `${C}/ioas/:id/map`,
    auth: 'ctx',
    status: 201,
    params: zObjectParams,
    body: zIoasMapBody,
    response: zEmptyResult,
    summary: 'Map fresh zeroed memory at a 4 KiB aligned IOVA range (at most 256 MiB per call)',
    kernel: 'IOMMU_IOAS_MAP',
    errnos: ['ENOENT', 'EEXIST', 'EOVERFLOW', 'E2BIG', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'ioas.unmap',
    method: 'POST',
    url: `${C}/ioas/:id/unmap`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    body: zIovaRangeBody,
    response: zUnmapResult,
    summary: 'Unmap an IOVA range (invalidates stage 2)',
    kernel: 'IOMMU_IOAS_UNMAP',
    errnos: ['ENOENT', 'EOVERFLOW'],
  }),
  command({
    name: 'ioas.memory.write',
    method: 'POST',
    url: `${C}/ioas/:id/memory/write`,
    auth: 'ctx',
    status: 204,
    params: zObjectParams,
    body: zMemoryWriteBody,
    summary: 'Write guest memory; EFAULT if any byte is unmapped, and then nothing is written',
    errnos: ['ENOENT', 'EFAULT', 'EOVERFLOW', 'ENOMEM'],
  }),
  command({
    name: 'ioas.memory.read',
    method: 'POST',
    url: `${C}/ioas/:id/memory/read`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    body: zIovaRangeBody,
    response: zMemoryReadResult,
    summary: 'Read guest memory',
    errnos: ['ENOENT', 'EFAULT', 'EOVERFLOW', 'E2BIG'],
  }),
  command({
    name: 'hwpt.alloc',
    method: 'POST',
    url: `${C}/hwpt`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zHwptAllocBody,
    response: zIdResult,
    summary: 'Allocate a paging hwpt on an IOAS, a nested (vtd_s1) hwpt on a NEST_PARENT hwpt, or a nested (arm_smmuv3) hwpt on a vIOMMU (EIO for a bad STE)',
    kernel: 'IOMMU_HWPT_ALLOC',
    errnos: ['ENOENT', 'EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
    inputEio: 'a guest STE that arm_smmu_validate_vste refuses',
  }),
  command({
    name: 'hwpt.invalidate',
    method: 'POST',
    url: `${C}/hwpt/:id/invalidate`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    body: zHwptInvalidateBody,
    response: zHwptInvalidateResult,
    summary: 'Invalidate stage-1 IOTLB entries of a nested hwpt',
    kernel: 'IOMMU_HWPT_INVALIDATE',
    errnos: ['ENOENT', 'EOPNOTSUPP'],
  }),
  command({
    name: 'device.attach',
    method: 'POST',
    url: `${C}/devices/:dev_id/attach`,
    auth: 'ctx',
    status: 200,
    params: zDevIdParams,
    body: zAttachBody,
    response: zEmptyResult,
    summary: 'Attach the device (RID, or a PASID) to an hwpt',
    kernel: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
    errnos: ['ENOENT', 'ENODEV', 'EBUSY', 'EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'device.replace',
    method: 'POST',
    url: `${C}/devices/:dev_id/replace`,
    auth: 'ctx',
    status: 200,
    params: zDevIdParams,
    body: zAttachBody,
    response: zEmptyResult,
    summary: "Replace the attachment; the old attachment's groups are answered INVALID",
    kernel: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace)',
    errnos: ['ENOENT', 'ENODEV', 'EBUSY', 'EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'device.detach',
    method: 'POST',
    url: `${C}/devices/:dev_id/detach`,
    auth: 'ctx',
    status: 200,
    params: zDevIdParams,
    body: zDetachBody,
    response: zEmptyResult,
    summary: "Detach the device (RID, or a PASID); the attachment's groups are answered INVALID",
    kernel: 'VFIO_DEVICE_DETACH_IOMMUFD_PT',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'fault.alloc',
    method: 'POST',
    url: `${C}/faults`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zFaultAllocBody,
    response: zFaultCreated,
    summary: 'Allocate a fault queue; its stream is the fault fd',
    kernel: 'IOMMU_FAULT_QUEUE_ALLOC',
    errnos: ['EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'fault.get',
    method: 'GET',
    url: `${C}/faults/:id`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    response: zFaultStatus,
    summary: 'Fault queue state: queued, outstanding, connections, counters',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'viommu.alloc',
    method: 'POST',
    url: `${C}/viommu`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zViommuAllocBody,
    response: zIdResult,
    summary: 'Allocate a vIOMMU (arm_smmuv3) on a NEST_PARENT hwpt of a device behind the SMMUv3 model',
    kernel: 'IOMMU_VIOMMU_ALLOC',
    errnos: ['ENOENT', 'EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'viommu.invalidate',
    method: 'POST',
    url: `${C}/viommu/:id/invalidate`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    body: zViommuInvalidateBody,
    response: zHwptInvalidateResult,
    summary: 'Run guest SMMUv3 invalidation commands (vSIDs translated); EIO at the first bad one, with done',
    kernel: 'IOMMU_HWPT_INVALIDATE (vIOMMU)',
    errnos: ['ENOENT', 'EOPNOTSUPP'],
    inputEio: 'an unknown vSID or a command arm_vsmmu_convert_user_cmd refuses (the body carries done)',
  }),
  command({
    name: 'vdevice.alloc',
    method: 'POST',
    url: `${C}/vdevice`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zVdeviceAllocBody,
    response: zIdResult,
    summary: 'Name a device inside a vIOMMU by its virtual id (the vSID); EEXIST if taken or the device has one',
    kernel: 'IOMMU_VDEVICE_ALLOC',
    errnos: ['ENOENT', 'EEXIST', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'veventq.alloc',
    method: 'POST',
    url: `${C}/veventq`,
    auth: 'ctx',
    status: 201,
    params: zCtxParams,
    body: zVeventqAllocBody,
    response: zVeventqCreated,
    summary: 'Allocate a vEVENTQ of a vIOMMU; its stream is the vEVENTQ fd',
    kernel: 'IOMMU_VEVENTQ_ALLOC',
    errnos: ['ENOENT', 'EEXIST', 'EOPNOTSUPP', 'ENOSPC', 'ENOMEM'],
  }),
  command({
    name: 'veventq.get',
    method: 'GET',
    url: `${C}/veventq/:id`,
    auth: 'ctx',
    status: 200,
    params: zObjectParams,
    response: zVeventqStatus,
    summary: 'vEVENTQ state: queued, depth, sequence, lost, connections',
    errnos: ['ENOENT'],
  }),
  command({
    name: 'healthz',
    method: 'GET',
    url: '/healthz',
    auth: 'none',
    status: 200,
    response: zHealth,
    summary: 'Liveness',
  }),
] as const) satisfies readonly Command[];

/**
 * COMMANDS - every REST route of the contract, as plain Commands for
 * generic code (registration, docs, clients). The same entries carry their
 * own types for the route implementations: see CommandName, ParamsOf,
 * QueryOf, BodyOf, ResultOf.
 */
export const COMMANDS: readonly Command[] = COMMAND_TABLE;

/** AnyCommand - the type of one entry of %COMMANDS (a union, by name). */
type AnyCommand = (typeof COMMAND_TABLE)[number];

/** CommandName - the name of a command of %COMMANDS, e.g. `'ioas.map'`. */
export type CommandName = AnyCommand['name'];

/** CommandOf - the %COMMANDS entry named @K, with its own schema types. */
export type CommandOf<K extends CommandName> = Extract<AnyCommand, { readonly name: K }>;

/** The parsed value of part @Part of command @C: its schema's output, or `{}` when it has none. */
type PartOf<C, Part extends 'params' | 'query' | 'body'> = C extends { readonly [P in Part]: infer S extends z.ZodType } ? z.output<S> : Record<string, never>;

/** ParamsOf - the parsed path parameters of command @K (numbers for ids). */
export type ParamsOf<K extends CommandName> = PartOf<CommandOf<K>, 'params'>;

/** QueryOf - the parsed query string of command @K (`{}` without a query schema). */
export type QueryOf<K extends CommandName> = PartOf<CommandOf<K>, 'query'>;

/** BodyOf - the parsed body of command @K (bigints for u64, defaults applied). */
export type BodyOf<K extends CommandName> = PartOf<CommandOf<K>, 'body'>;

/** ResultOf - the success body of command @K in wire form (its response schema's input), void for a 204. */
// biome-ignore lint/suspicious/noConfusingVoidType: void, not undefined: a 204 command's result is the return type of a handler (and SDK method) that returns nothing
export type ResultOf<K extends CommandName> = CommandOf<K> extends { readonly response: infer S extends z.ZodType } ? z.input<S> : void;

/** AuthOf - the token command @K requires. */
export type AuthOf<K extends CommandName> = CommandOf<K>['auth'];

const byName = new Map(COMMANDS.map((c) => [c.name, c]));

/**
 * commandByName() - look up a command of %COMMANDS.
 * @name: its name, e.g. `ioas.map`.
 *
 * Return: the command.
 * Throws: Error if there is no such command (a programming error).
 */
export function commandByName(name: string): Command {
  const c = byName.get(name);
  if (!c) throw new Error(`no such command: ${name}`);
  return c;
}
