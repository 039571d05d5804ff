/**
 * The simulated machine: IOMMU units with their drivers, PCIe functions,
 * host memory, SVA bindings, and the iommufd contexts opened on it. This is
 * the public face of the core that the server drives; everything here is
 * synchronous (a DMA reports its outcome through a callback).
 */
import { FrameAllocator, HwOutOfFrames, SparseMemory } from './hw/memory.js';
import { IommuUnit, type HwModel } from './hw/iommu-unit.js';
import {
  PcieFunction,
  type DmaRequest,
  type DmaResult,
  type PcieCaps,
  type ResponseLogEntry,
  type TrafficRequest,
  type TrafficStatus,
} from './hw/pcie-function.js';
import { VtdS1Builder, PTE } from './hw/vtd-s1.js';
import { traceWalk, type WalkTrace } from './hw/walk-trace.js';
import { SimIommu } from './drivers/sim-iommu.js';
import { IommuError } from './iommu/errors.js';
import { IOMMU_FAULT_PERM_EXEC, IOMMU_FAULT_PERM_READ, IOMMU_FAULT_PERM_WRITE, type IommuDevice } from './iommu/iommu.js';
import { iopfPartialCount } from './iopf/io-pgfault.js';
import { iommuSvaBindDevice, iommuSvaUnbindDevice, type IommuSva, type IommuSvaMm } from './iopf/iommu-sva.js';
import { IommufdDevice } from './iommufd/device.js';
import {
  DEFAULT_LIMITS,
  IommufdCtx,
  type IommufdEnv,
  type IommufdLimits,
  type IommufdObserver,
  type IommufdPhysDevice,
  type PhysMemory,
} from './iommufd/main.js';
import { LIMITS, MemoryBudget, type LimitName } from './iommufd/limits.js';
import type { Scheduler } from './sched.js';
import { LATEST_PROFILE, type KernelProfile } from './iommu/profiles.js';

export { LIMITS, MemoryBudget, type LimitName } from './iommufd/limits.js';

export interface IommuDesc {
  name: string;
  model: HwModel;
  prq_depth: number;
  /**
   * The host CPU's virtual address width the driver assumes (48: 4-level
   * paging, 57: LA57); VT-d's prq_event_thread() refuses request addresses
   * that are not canonical for it. Default 48.
   */
  host_va_bits?: 48 | 57 | undefined;
}

export interface DeviceCapsDesc {
  pasid_bits: number;
  pri: boolean;
  pri_outstanding: number;
  ats: boolean;
  is_vf: boolean;
  prg_response_needs_pasid: boolean;
  /** SMMUv3-model devices only: transactions can stall (default true). */
  stall?: boolean | undefined;
}

export interface DeviceDesc {
  name: string;
  iommu?: string | undefined;
  bdf?: string | undefined;
  caps?: Partial<DeviceCapsDesc> | undefined;
}

export interface PlatformDesc {
  iommus: IommuDesc[];
  devices: DeviceDesc[];
}

/** Device as GET /v1/platform lists it (docs/protocol.md, platform routes). */
export interface DeviceInfo {
  name: string;
  bdf: string;
  iommu: string;
  caps: DeviceCapsDesc;
  bound: boolean;
  pri_enabled: boolean;
  pri_status: { response_failure: boolean; stopped: boolean };
  /** The id of the context the device is bound to, or null (extension). */
  ctx: number | null;
}

/**
 * The embedded default platform: one VT-d model IOMMU with two PRI/PASID
 * functions, and an SMMUv3 model IOMMU with one stall-capable function (the
 * vIOMMU / vEVENTQ path).
 */
export const DEFAULT_PLATFORM: PlatformDesc = {
  iommus: [
    { name: 'dmar0', model: 'vtd', prq_depth: 4096 },
    { name: 'smmu0', model: 'smmuv3', prq_depth: 4096 },
  ],
  devices: [
    { name: 'nic0', bdf: '00:02.0' },
    { name: 'accel0', bdf: '00:03.0' },
    { name: 'arm0', iommu: 'smmu0', bdf: '00:04.0' },
  ],
};

export const DEFAULT_CAPS: DeviceCapsDesc = {
  pasid_bits: 20,
  pri: true,
  pri_outstanding: 512,
  ats: true,
  is_vf: false,
  prg_response_needs_pasid: true,
};

/**
 * DEFAULT_RESPONSE_LOG - responses each device's log holds by default (the
 * newest ones; 8 bytes each): a long-running daemon must not keep every
 * response it ever sent. 0 = keep every one.
 */
export const DEFAULT_RESPONSE_LOG = LIMITS.responseLog;

export interface PlatformOptions {
  sched: Scheduler;
  desc?: PlatformDesc;
  /** The kernel release whose behaviour runs (default `latest`). */
  profile?: KernelProfile;
  limits?: Partial<IommufdLimits> & { maxContexts?: number; maxDevices?: number; responseLog?: number; maxPartials?: number; memoryLimit?: number };
  observer?: IommufdObserver;
  /** Allocation-failure injection (tests). */
  failAlloc?: IommufdEnv['failAlloc'];
}

interface PlatformDevice extends IommufdPhysDevice {
  bdf: string;
  caps: DeviceCapsDesc;
  fn: PcieFunction;
  driver: SimIommu;
  svas: Map<number, IommuSva>;
}

/** One VMA of a simulated process (SVA). */
export interface SvaVma {
  start: bigint;
  length: bigint;
  read: boolean;
  write: boolean;
  exec: boolean;
}

const BDF_RE = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/i;

function ridOf(bdf: string): number {
  const m = BDF_RE.exec(bdf);
  if (!m) throw new IommuError('EINVAL', `bdf ${JSON.stringify(bdf)} is not of the form BB:DD.F`);
  const dev = parseInt(m[3]!, 16);
  if (dev > 0x1f) throw new IommuError('EINVAL', `bdf ${bdf}: device number above 0x1f`);
  return (parseInt(m[2]!, 16) << 8) | (dev << 3) | parseInt(m[4]!, 10);
}

function bdfOf(rid: number): string {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return `${h(rid >> 8, 2)}:${h((rid >> 3) & 0x1f, 2)}.${rid & 7}`;
}

/** A simulated process address space for SVA: VMAs and a page table in host memory. */
class SvaMm implements IommuSvaMm {
  readonly builder: VtdS1Builder;
  readonly frames: bigint[] = [];

  constructor(
    private readonly platform: Platform,
    readonly vmas: SvaVma[],
  ) {
    const mem = platform.mem;
    this.builder = new VtdS1Builder(
      () => {
        const f = platform.frames.alloc();
        this.frames.push(f);
        return f;
      },
      (pa) => mem.readU64(pa),
      (pa, v) => mem.writeU64(pa, v),
      48,
    );
  }

  get pgd(): bigint {
    return this.builder.root;
  }

  get addrWidth(): 48 {
    return 48;
  }

  handleMmFault(addr: bigint, perm: number): boolean {
    const vma = this.vmas.find((v) => addr >= v.start && addr < v.start + v.length);
    if (!vma) return false;
    // iommu_sva_handle_mm(): each of READ, WRITE, EXEC asked for must be
    // allowed by the VMA; a request asking for none is serviced.
    const read = (perm & IOMMU_FAULT_PERM_READ) !== 0;
    const write = (perm & IOMMU_FAULT_PERM_WRITE) !== 0;
    const exec = (perm & IOMMU_FAULT_PERM_EXEC) !== 0;
    if ((read && !vma.read) || (write && !vma.write) || (exec && !vma.exec)) return false;
    const page = addr & ~0xfffn;
    const pte = this.builder.lookupPte(page);
    if (pte !== undefined && (pte & PTE.P) !== 0n) return true;
    let frame: bigint;
    try {
      frame = this.platform.frames.alloc();
    } catch (e) {
      if (e instanceof HwOutOfFrames) return false;
      throw e;
    }
    this.frames.push(frame);
    this.builder.map(page, frame, { write: vma.write, exec: vma.exec, user: true });
    return true;
  }

  release(): void {
    for (const f of this.frames) this.platform.frames.free(f);
    this.frames.length = 0;
  }
}

export class Platform {
  readonly mem = new SparseMemory();
  readonly frames = new FrameAllocator(this.mem);
  readonly sched: Scheduler;
  readonly iommus = new Map<string, { desc: IommuDesc; unit: IommuUnit; driver: SimIommu }>();
  private readonly devices = new Map<string, PlatformDevice>();
  private readonly contexts = new Map<number, IommufdCtx>();
  readonly env: IommufdEnv;
  private readonly maxContexts: number;
  private readonly maxDevices: number;
  private readonly maxPartials: number;
  private readonly responseLog: number;
  /** The daemon-wide memory budget that mapped pages are charged to. */
  readonly budget: MemoryBudget;

  constructor(opts: PlatformOptions) {
    this.sched = opts.sched;
    const frames = this.frames;
    const mem = this.mem;
    const observer = opts.observer ?? {};
    const refused = (what: LimitName): void => observer.refused?.(what);
    this.budget = new MemoryBudget(opts.limits?.memoryLimit ?? LIMITS.memoryLimit, refused);
    const physMem: PhysMemory = {
      allocFrame: () => {
        try {
          return frames.alloc();
        } catch (e) {
          if (e instanceof HwOutOfFrames) throw new IommuError('ENOMEM', 'host memory exhausted');
          throw e;
        }
      },
      freeFrame: (hpa) => frames.free(hpa),
      read: (hpa, len) => mem.read(hpa, len),
      write: (hpa, data) => mem.write(hpa, data),
      budget: this.budget,
    };
    this.env = {
      sched: opts.sched,
      mem: physMem,
      findDevice: (name) => this.devices.get(name),
      limits: { ...DEFAULT_LIMITS, ...stripUndefined(opts.limits ?? {}) },
      profile: opts.profile ?? LATEST_PROFILE,
      observer,
      failAlloc: opts.failAlloc,
    };
    this.maxContexts = opts.limits?.maxContexts ?? LIMITS.maxContexts;
    this.maxDevices = opts.limits?.maxDevices ?? LIMITS.maxDevices;
    this.maxPartials = opts.limits?.maxPartials ?? LIMITS.maxPartials;
    this.responseLog = opts.limits?.responseLog ?? LIMITS.responseLog;
    const desc = opts.desc ?? DEFAULT_PLATFORM;
    if (desc.iommus.length === 0) throw new IommuError('EINVAL', 'a platform needs at least one IOMMU');
    for (const d of desc.iommus) this.addIommu(d);
    for (const d of desc.devices) this.addDevice(d);
  }

  private addIommu(d: IommuDesc): void {
    if (this.iommus.has(d.name)) throw new IommuError('EEXIST', `IOMMU ${d.name} exists`);
    if (!['vtd', 'smmuv3', 'generic'].includes(d.model)) throw new IommuError('EINVAL', `unknown IOMMU model ${d.model}`);
    if (!Number.isInteger(d.prq_depth) || d.prq_depth < 1) throw new IommuError('EINVAL', 'prq_depth must be ≥ 1');
    if (d.host_va_bits !== undefined && d.host_va_bits !== 48 && d.host_va_bits !== 57) throw new IommuError('EINVAL', 'host_va_bits must be 48 or 57');
    const unit = new IommuUnit(d.name, d.model, d.prq_depth, this.mem, this.sched);
    const driver = new SimIommu(unit, d.host_va_bits ?? 48, this.env.profile);
    driver.queue.profile = this.env.profile;
    this.iommus.set(d.name, { desc: d, unit, driver });
  }

  // ---- platform API (the /v1/platform routes) -----------------------------------

  describe(): { kernel: string; iommus: IommuDesc[]; devices: DeviceInfo[] } {
    return {
      kernel: this.env.profile.name,
      iommus: [...this.iommus.values()].map((i) => ({ ...i.desc, host_va_bits: i.driver.hostVaBits })),
      devices: this.listDevices(),
    };
  }

  listDevices(): DeviceInfo[] {
    return [...this.devices.values()].map((d) => this.info(d));
  }

  private info(d: PlatformDevice): DeviceInfo {
    return {
      name: d.name,
      bdf: d.bdf,
      iommu: d.iommuName,
      caps: { ...d.caps },
      bound: d.dev.owner !== undefined,
      pri_enabled: d.fn.priEnabled,
      pri_status: { response_failure: d.fn.responseFailure, stopped: d.fn.stopped },
      ctx: d.dev.owner instanceof IommufdDevice ? d.dev.owner.ictx.id : null,
    };
  }

  /** POST /v1/platform/devices. EEXIST for a duplicate name or bdf; ENOENT for an unknown IOMMU; EINVAL for bad caps. */
  addDevice(d: DeviceDesc): DeviceInfo {
    if (this.devices.size >= this.maxDevices) {
      this.env.observer.refused?.('devices');
      throw new IommuError('ENOSPC', `the platform holds its maximum of ${this.maxDevices} devices`);
    }
    if (this.devices.has(d.name)) throw new IommuError('EEXIST', `a device named ${d.name} exists`);
    const iommuName = d.iommu ?? this.iommus.keys().next().value!;
    const iommu = this.iommus.get(iommuName);
    if (!iommu) throw new IommuError('ENOENT', `no IOMMU named ${iommuName}`);
    const caps: DeviceCapsDesc = { ...DEFAULT_CAPS, ...(iommu.unit.model === 'smmuv3' ? { stall: true } : {}), ...stripUndefined(d.caps ?? {}) };
    if (caps.stall !== undefined && iommu.unit.model !== 'smmuv3')
      throw new IommuError('EINVAL', `stall is a cap of devices behind an SMMUv3 model IOMMU; ${iommuName} is ${iommu.unit.model}`);
    if (!Number.isInteger(caps.pasid_bits) || caps.pasid_bits < 0 || caps.pasid_bits > 20) throw new IommuError('EINVAL', 'pasid_bits must be 0..20');
    if (!Number.isInteger(caps.pri_outstanding) || caps.pri_outstanding < 1 || caps.pri_outstanding > 512) {
      throw new IommuError('EINVAL', 'pri_outstanding must be 1..512');
    }
    let rid: number;
    if (d.bdf !== undefined) rid = ridOf(d.bdf);
    else {
      rid = 0x10;
      const used = new Set([...this.devices.values()].map((x) => x.fn.rid));
      while (used.has(rid)) rid += 8;
    }
    for (const other of this.devices.values()) {
      if (other.fn.rid === rid) throw new IommuError('EEXIST', `bdf ${bdfOf(rid)} is taken by ${other.name}`);
    }
    const pcaps: PcieCaps = {
      pasidBits: caps.pasid_bits,
      pri: caps.pri,
      priOutstanding: caps.pri_outstanding,
      ats: caps.ats,
      isVf: caps.is_vf,
      prgResponseNeedsPasid: caps.prg_response_needs_pasid,
      ...(caps.stall !== undefined ? { stall: caps.stall } : {}),
    };
    const fn = new PcieFunction(d.name, rid, pcaps, iommu.unit, this.mem, this.sched);
    fn.responses.limit = this.responseLog;
    const dev = iommu.driver.probeDevice(fn);
    const pd: PlatformDevice = {
      name: d.name,
      bdf: bdfOf(rid),
      caps,
      fn,
      dev,
      driver: iommu.driver,
      iommuName,
      pasidBits: caps.pasid_bits,
      pri: caps.pri,
      isVf: caps.is_vf,
      svas: new Map(),
    };
    this.devices.set(d.name, pd);
    return this.info(pd);
  }

  private device(name: string): PlatformDevice {
    const d = this.devices.get(name);
    if (!d) throw new IommuError('ENOENT', `no device named ${JSON.stringify(name)}`);
    return d;
  }

  deviceInfo(name: string): DeviceInfo {
    return this.info(this.device(name));
  }

  /** The IommuDevice behind a platform device (for tests and the driver-level API). */
  iommuDevice(name: string): IommuDevice {
    return this.device(name).dev;
  }

  /** The hardware function (for tests: its response log and PRI state). */
  function(name: string): PcieFunction {
    return this.device(name).fn;
  }

  /**
   * DELETE /v1/platform/devices/:name: hot-unplug. The device is unbound from
   * its context as if detached everywhere (outstanding groups answered INVALID
   * exactly once), SVA bonds are unbound, IOPF is disabled, then it is gone.
   */
  removeDevice(name: string): void {
    const d = this.device(name);
    d.fn.stopTraffic();
    // Gone from the bus: from here it sends nothing (a DMA that the INVALID
    // answers below would let send its next group ends pri_disabled instead).
    d.fn.removed = true;
    try {
      const idev = d.dev.owner;
      if (idev instanceof IommufdDevice) {
        idev.unplugging = true;
        idev.ictx.destroyObject(idev.id);
      }
      for (const sva of [...d.svas.values()]) this.unbindSva(d, sva);
      d.driver.releaseDevice(d.dev);
    } catch (e) {
      d.fn.removed = false; // still listed: back on the bus
      throw e;
    }
    this.devices.delete(name);
  }

  /** POST /dma. `done` is called once, when the DMA has finished. */
  dma(name: string, req: DmaRequest, done: (r: DmaResult) => void): void {
    const d = this.device(name);
    if (req.pasid !== undefined) this.checkPasid(d, req.pasid);
    if (req.length < 1) throw new IommuError('EINVAL', 'length must be at least 1');
    if (req.length > LIMITS.dmaBytes) throw new IommuError('E2BIG', 'a DMA moves at most 1 MiB');
    if (req.iova + BigInt(req.length) > 1n << 64n) throw new IommuError('EOVERFLOW', 'iova + length overflows 64 bits');
    if (req.write && (!req.data || req.data.length !== req.length)) throw new IommuError('EINVAL', 'a write needs data of exactly length bytes');
    if (!req.write && req.data) throw new IommuError('EINVAL', 'data is only for writes');
    d.fn.dma(req, done);
  }

  private checkPasid(d: PlatformDevice, pasid: number): void {
    if (d.caps.pasid_bits === 0) throw new IommuError('EINVAL', `device ${d.name} has no PASID support`);
    if (pasid >= 2 ** d.caps.pasid_bits) throw new IommuError('EINVAL', `pasid ${pasid} exceeds ${d.caps.pasid_bits} PASID bits`);
  }

  /**
   * POST /page-requests: inject one raw page request and process it before
   * returning (reported, queued as a partial, or answered). Returns false when
   * the function did not send it (no PRI, or PRI stopped).
   */
  injectPageRequest(name: string, req: { pasid?: number | undefined; grpid: number; addr: bigint; perm: number; last: boolean }): boolean {
    const d = this.device(name);
    if (req.pasid !== undefined) this.checkPasid(d, req.pasid);
    if (req.grpid > 0x1ff) throw new IommuError('EINVAL', 'grpid is a 9-bit PRG index (0..511)');
    if (req.perm & ~0xf) throw new IommuError('EINVAL', `perm 0x${req.perm.toString(16)} has unknown bits`);
    if (!req.last && this.maxPartials > 0 && iopfPartialCount(d.dev) >= this.maxPartials) {
      this.env.observer.refused?.('partials');
      throw new IommuError('ENOSPC', `device ${name} holds its maximum of ${this.maxPartials} partial page requests; send a last request`);
    }
    const sent = d.fn.injectPageRequest({
      pasid: req.pasid,
      prgi: req.grpid,
      addr: req.addr,
      read: (req.perm & 1) !== 0,
      write: (req.perm & 2) !== 0,
      exec: (req.perm & 4) !== 0,
      priv: (req.perm & 8) !== 0,
      last: req.last,
    });
    d.driver.drainPageRequests(d.dev);
    return sent;
  }

  /**
   * walk() - GET .../walk: re-run the translation walk of (@pasid, @addr)
   * for device @name's requester, as its IOMMU's tables are now, and record
   * each step (core/hw/walk-trace.ts). No side effect: no IOTLB fill, no
   * Accessed/Dirty bit, no page request. ENOENT for an unknown device,
   * EINVAL for a PASID the device cannot carry.
   */
  walk(name: string, pasid: number | undefined, addr: bigint, perm: number): WalkTrace {
    const d = this.device(name);
    if (pasid !== undefined) this.checkPasid(d, pasid);
    if (perm & ~0xf) throw new IommuError('EINVAL', `perm 0x${perm.toString(16)} has unknown bits`);
    const unit = d.driver.unit;
    const access = { write: (perm & 2) !== 0, exec: (perm & 4) !== 0, priv: (perm & 8) !== 0 };
    return traceWalk(unit.contextEntry(d.fn.rid, pasid ?? 0), this.mem, addr, access, pasid);
  }

  responses(name: string, since = 0): ResponseLogEntry[] {
    return this.device(name).fn.responsesSince(since);
  }

  priReset(name: string): void {
    this.device(name).fn.priReset();
  }

  /** POST /sva: bind a simulated process address space at `pasid`. */
  bindSva(name: string, pasid: number, vmas: SvaVma[]): void {
    const d = this.device(name);
    this.checkPasid(d, pasid);
    if (pasid === 0) throw new IommuError('EINVAL', 'pasid 0 is the RID');
    if (d.svas.has(pasid) || d.dev.group.pasidArray.has(pasid)) throw new IommuError('EBUSY', `pasid ${pasid} of ${name} is in use`);
    for (const v of vmas) {
      if ((v.start & 0xfffn) !== 0n || (v.length & 0xfffn) !== 0n || v.length === 0n)
        throw new IommuError('EINVAL', 'VMA start and length must be 4 KiB aligned and non-zero');
    }
    const mm = new SvaMm(this, vmas);
    try {
      d.svas.set(pasid, iommuSvaBindDevice(d.dev, pasid, mm));
    } catch (e) {
      mm.release();
      throw e;
    }
  }

  /** DELETE /sva/:pasid: flush pending work, then unbind. EBUSY if a context attached the PASID; ENOENT if not bound. */
  unbindSva(nameOrDev: string | PlatformDevice, svaOrPasid: IommuSva | number): void {
    const d = typeof nameOrDev === 'string' ? this.device(nameOrDev) : nameOrDev;
    const sva = typeof svaOrPasid === 'number' ? d.svas.get(svaOrPasid) : svaOrPasid;
    if (!sva) {
      if (typeof svaOrPasid === 'number' && d.dev.group.pasidArray.has(svaOrPasid)) {
        throw new IommuError('EBUSY', `pasid ${svaOrPasid} of ${d.name} is attached by a context, not an SVA bond`);
      }
      throw new IommuError('ENOENT', `no SVA bond at pasid ${String(svaOrPasid)} of ${d.name}`);
    }
    iommuSvaUnbindDevice(sva);
    d.svas.delete(sva.pasid);
    (sva.mm as SvaMm).release();
  }

  /** POST /traffic. EBUSY if a run is active; EINVAL for bad numbers. */
  startTraffic(name: string, req: Omit<TrafficRequest, 'inFlight'> & { inFlight?: number | undefined }): void {
    const d = this.device(name);
    if (!d.caps.pri) throw new IommuError('EINVAL', `device ${name} has no PRI`);
    if (req.pasid !== undefined) this.checkPasid(d, req.pasid);
    if (req.pagesPerGroup < 1 || req.pagesPerGroup > d.caps.pri_outstanding) {
      throw new IommuError('EINVAL', `pages_per_group must be 1..${d.caps.pri_outstanding}`);
    }
    const maxInFlight = Math.max(1, Math.floor(d.caps.pri_outstanding / req.pagesPerGroup));
    const inFlight = req.inFlight ?? maxInFlight;
    if (inFlight < 1 || inFlight > maxInFlight) throw new IommuError('EINVAL', `in_flight must be 1..${maxInFlight}`);
    const end = req.base + BigInt(req.count) * BigInt(req.pagesPerGroup) * 0x1000n;
    if (end > 1n << 64n)
      throw new IommuError('EOVERFLOW', `${req.count} groups of ${req.pagesPerGroup} pages from base 0x${req.base.toString(16)} would pass 2^64`);
    const st = d.fn.trafficStatus();
    if (st?.running) throw new IommuError('EBUSY', `traffic is already running on ${name}`);
    d.fn.startTraffic({ ...req, inFlight });
  }

  /**
   * DELETE .../traffic (extension): the generator issues no more groups; the
   * groups in flight stay outstanding until answered (by the client or any
   * auto-response path), so `running` stays true until then. Idempotent.
   */
  stopTraffic(name: string): TrafficStatus {
    this.device(name).fn.stopTraffic();
    return this.trafficStatus(name);
  }

  trafficStatus(name: string): TrafficStatus {
    const st = this.device(name).fn.trafficStatus();
    return st ?? { running: false, sent: 0, answered: 0, byCode: { success: 0, invalid: 0, failure: 0 }, elapsedMs: 0, latencyUs: { p50: 0, p99: 0, max: 0 } };
  }

  // ---- contexts (the /v1/contexts routes) ---------------------------------------

  /** POST /v1/contexts (iommufd open). ENOSPC beyond the context limit. */
  createContext(): IommufdCtx {
    if (this.contexts.size >= this.maxContexts) {
      this.env.observer.refused?.('contexts');
      throw new IommuError('ENOSPC', `the daemon holds its maximum of ${this.maxContexts} contexts`);
    }
    const ctx = new IommufdCtx(this.env);
    this.contexts.set(ctx.id, ctx);
    return ctx;
  }

  context(id: number): IommufdCtx | undefined {
    return this.contexts.get(id);
  }

  get contextCount(): number {
    return this.contexts.size;
  }

  /** DELETE /v1/contexts/:ctx: release every object, answering every outstanding group INVALID. */
  releaseContext(id: number): void {
    const ctx = this.contexts.get(id);
    if (!ctx) throw new IommuError('ENOENT', `no context ${id}`);
    this.contexts.delete(id);
    ctx.release();
  }

  /**
   * Shutdown: stop the traffic generators (so that the INVALID answers below
   * do not make them issue new groups), release every context and SVA bond,
   * then drain the PRQs, so every outstanding group is answered INVALID once.
   */
  shutdown(): void {
    for (const d of this.devices.values()) d.fn.stopTraffic();
    for (const id of [...this.contexts.keys()]) this.releaseContext(id);
    for (const d of this.devices.values()) {
      for (const sva of [...d.svas.values()]) this.unbindSva(d, sva);
    }
    // A drain takes what was queued when it started. With no handler left
    // every request is answered INVALID at once, and a DMA that an answer let
    // send its next group ends with that group's INVALID, so the PRQs empty
    // in a few runs (the cap only guards against a bug looping forever).
    for (const { driver } of this.iommus.values()) {
      let runs = 0;
      do driver.drain();
      while (driver.unit.prqLength > 0 && ++runs < 100_000);
    }
  }

  /**
   * What is still in flight anywhere, for tests that check the invariant and
   * that no table grows: device-side outstanding groups and unexpected
   * responses, IOPF pending groups and partials, PRQ entries.
   */
  audit(): { outstandingGroups: number; unexpectedResponses: number; iopfPending: number; partials: number; prq: number; stalls: number } {
    let outstandingGroups = 0;
    let unexpectedResponses = 0;
    let iopfPending = 0;
    let partials = 0;
    for (const d of this.devices.values()) {
      outstandingGroups += d.fn.outstandingGroups;
      unexpectedResponses += d.fn.unexpectedResponses;
      iopfPending += d.dev.faultParam?.faults.size ?? 0;
      partials += iopfPartialCount(d.dev);
    }
    let prq = 0;
    let stalls = 0;
    for (const { unit } of this.iommus.values()) {
      prq += unit.prqLength;
      stalls += unit.stallCount;
    }
    return { outstandingGroups, unexpectedResponses, iopfPending, partials, prq, stalls };
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
