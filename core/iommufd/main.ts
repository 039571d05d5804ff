/**
 * The iommufd context and its object table (drivers/iommu/iommufd/main.c).
 *
 * One table per context, ids the lowest free ≥ 1. An object is reserved,
 * built, then finalized (visible) or aborted (gone, id free again), so a
 * failure half way leaves nothing behind. `users` counts what depends on an
 * object; destroy fails with EBUSY while it is non-zero. Releasing the context
 * destroys leaves first until nothing is left.
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuDevice, IopfGroup } from '../iommu/iommu.js';
import type { KernelProfile } from '../iommu/profiles.js';
import { LIMITS, type LimitName, type MemoryBudget } from './limits.js';
import type { Scheduler } from '../sched.js';
import { IdAllocator } from './ids.js';

export type IommufdObjType = 'device' | 'ioas' | 'hwpt_paging' | 'hwpt_nested' | 'fault' | 'viommu' | 'vdevice' | 'veventq';

/** Host physical memory as iommufd needs it (pinning pages for an IOAS). */
export interface PhysMemory {
  /** A fresh zeroed 4 KiB page; throws IommuError('ENOMEM') when none is left. */
  allocFrame(): bigint;
  freeFrame(hpa: bigint): void;
  read(hpa: bigint, length: number): Uint8Array;
  write(hpa: bigint, data: Uint8Array): void;
  /** The daemon-wide budget mapped pages are charged to before they are mapped. */
  readonly budget: MemoryBudget;
}

/** What the platform tells iommufd about a device it may bind. */
export interface IommufdPhysDevice {
  readonly name: string;
  readonly dev: IommuDevice;
  readonly iommuName: string;
  readonly pasidBits: number;
  readonly pri: boolean;
  readonly isVf: boolean;
}

/** Why a group was answered without a user response (metrics and counters). */
export type AutoCause = 'detach' | 'replace' | 'destroy' | 'unplug' | 'timeout' | 'overflow' | 'release';

/**
 * struct IommufdObserver - called for every group on the iommufd path
 * (metrics, the observation feed). Must not throw, must not keep @group or
 * @groups (the array is reused) and must cost O(1) per group.
 * @reported: @group was queued on @queue.
 * @delivered: @n groups were read from @queue (@groups: those groups).
 * @answered: a client answered @group of @queue with @code, @latencyMs after its report.
 * @autoAnswered: the daemon answered @group of @queue (@cause, @code).
 */
export interface IommufdObserver {
  reported?(group: IopfGroup, queue: IommufdObject): void;
  delivered?(n: number, groups: readonly IopfGroup[], queue: IommufdObject): void;
  answered?(code: number, latencyMs: number, group: IopfGroup, queue: IommufdObject): void;
  autoAnswered?(cause: AutoCause, code: number, latencyMs: number, group: IopfGroup, queue: IommufdObject): void;
  /** A vEVENTQ event was reported (kept or dropped). */
  veventReported?(): void;
  /** @n vEVENTQ events were read. */
  veventRead?(n: number): void;
  /** A vEVENTQ event was dropped (a LOST_EVENTS header stands for it). */
  veventLost?(): void;
  /** A command refused by a limit (ENOSPC) or the memory budget (ENOMEM). */
  refused?(what: LimitName): void;
}

export interface IommufdLimits {
  /** Objects per context (0 = no limit). */
  maxObjects: number;
  /** Pages one context may map into its IOAS objects (0 = no limit). */
  maxMappedPages: number;
  /** Open streams per fault queue (0 = no limit). */
  maxStreamsPerFault: number;
}

export const DEFAULT_LIMITS: IommufdLimits = {
  maxObjects: LIMITS.maxObjects,
  maxMappedPages: LIMITS.maxMappedPages,
  maxStreamsPerFault: LIMITS.maxStreamsPerFault,
};

/** Allocation sites where a test may inject a failure (the kernel's fail_nth). */
export type AllocSite = 'object' | 'frame' | 'domain' | 'attach-handle' | 'cookie';

/** Everything a context needs from the world around it. */
export interface IommufdEnv {
  /** Fault injection: return true to make this allocation fail with ENOMEM. */
  failAlloc?: ((site: AllocSite) => boolean) | undefined;
  readonly sched: Scheduler;
  readonly mem: PhysMemory;
  findDevice(name: string): IommufdPhysDevice | undefined;
  readonly limits: IommufdLimits;
  /** The kernel release whose behaviour runs. */
  readonly profile: KernelProfile;
  readonly observer: IommufdObserver;
}

/** struct iommufd_object. */
export abstract class IommufdObject {
  id = 0;
  /** Dependants (kernel: the users refcount beyond the table's own). */
  users = 0;
  abstract readonly type: IommufdObjType;

  constructor(readonly ictx: IommufdCtx) {}

  /** Release everything the object holds; called once, after it left the table. */
  abstract destroy(): void;
  /** Undo a half-built object; by default the same as destroy. */
  abort(): void {
    this.destroy();
  }
  /** Listing fields beyond id and type. */
  abstract describe(): Record<string, unknown>;
}

let nextCtxId = 1;

/** struct iommufd_ctx. */
export class IommufdCtx {
  readonly id = nextCtxId++;
  private readonly table = new Map<number, IommufdObject>();
  private readonly ids: IdAllocator;
  /** Pages mapped across this context's IOAS objects. */
  mappedPages = 0;
  released = false;

  constructor(readonly env: IommufdEnv) {
    this.ids = new IdAllocator(env.limits.maxObjects > 0 ? env.limits.maxObjects : 0xffff_ffff);
  }

  /**
   * iommufd_object_alloc: reserve an id for `obj` (not yet visible).
   * ENOSPC when the context's object limit is reached.
   */
  reserve<T extends IommufdObject>(obj: T): T {
    this.mayFail('object');
    const id = this.ids.alloc();
    if (id === 0) this.env.observer.refused?.('objects');
    if (id === 0) throw new IommuError('ENOSPC', `context ${this.id} holds its maximum of ${this.env.limits.maxObjects} objects`);
    obj.id = id;
    return obj;
  }

  /** Throws ENOMEM when fault injection fails this allocation site. */
  mayFail(site: AllocSite): void {
    if (this.env.failAlloc?.(site)) throw new IommuError('ENOMEM', `injected allocation failure (${site})`);
  }

  /** iommufd_object_finalize: make a reserved object visible. */
  finalize(obj: IommufdObject): void {
    this.table.set(obj.id, obj);
  }

  /** iommufd_object_abort_and_destroy: undo a reserved object; its id is free again. */
  abort(obj: IommufdObject): void {
    obj.abort();
    this.ids.free(obj.id);
    obj.id = 0;
  }

  /**
   * Build an object under reserve → build → finalize; if `build` throws, the
   * object is aborted and the error propagates.
   */
  create<T extends IommufdObject>(obj: T, build: (obj: T) => void): T {
    this.reserve(obj);
    try {
      build(obj);
    } catch (e) {
      this.abort(obj);
      throw e;
    }
    this.finalize(obj);
    return obj;
  }

  /** iommufd_get_object: ENOENT if absent or of another type. */
  get<T extends IommufdObject>(id: number, ...types: IommufdObjType[]): T {
    const obj = this.table.get(id);
    if (!obj || (types.length > 0 && !types.includes(obj.type))) {
      throw new IommuError('ENOENT', types.length ? `no ${types.join(' or ')} object with id ${id}` : `no object with id ${id}`);
    }
    return obj as T;
  }

  /** The object with `id`, or undefined. */
  find(id: number): IommufdObject | undefined {
    return this.table.get(id);
  }

  /** Every visible object, in id order. */
  objects(): IommufdObject[] {
    return [...this.table.values()].sort((a, b) => a.id - b.id);
  }

  /** IOMMU_DESTROY: EBUSY while anything depends on the object, ENOENT if absent. */
  destroyObject(id: number): void {
    const obj = this.get(id);
    if (obj.users > 0) throw new IommuError('EBUSY', `${obj.type} ${id} is in use (${obj.users} user${obj.users === 1 ? '' : 's'})`);
    this.remove(obj);
  }

  private remove(obj: IommufdObject): void {
    this.table.delete(obj.id);
    obj.destroy();
    this.ids.free(obj.id);
  }

  /**
   * iommufd_fops_release: destroy every object, leaves first (devices detach
   * and unbind, then vDEVICEs, nested hwpts, vEVENTQs, vIOMMUs, paging hwpts,
   * fault queues, IOAS), until nothing is left. Every outstanding group is
   * answered INVALID on the way.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const order: IommufdObjType[] = ['device', 'vdevice', 'hwpt_nested', 'veventq', 'viommu', 'hwpt_paging', 'fault', 'ioas'];
    for (const type of order) {
      for (const obj of this.objects()) {
        if (obj.type !== type || !this.table.has(obj.id)) continue;
        obj.users = 0;
        this.remove(obj);
      }
    }
    if (this.table.size !== 0) throw new Error(`iommufd release left ${this.table.size} objects`);
  }

  /** Number of ids in use (visible or reserved). */
  get objectCount(): number {
    return this.ids.used;
  }
}
