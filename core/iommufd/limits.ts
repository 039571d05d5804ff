/**
 * DOC: resource limits and the memory budget
 *
 * Every limit of the simulated platform and its default lives in LIMITS, the
 * one place the platform, iommufd and the daemon's flags read them from.
 * Limits of a context (objects, mapped pages, streams per fault queue) refuse
 * with ENOSPC; the daemon-wide memory budget refuses with ENOMEM. Both refuse
 * before anything is allocated, so a refused command changes nothing.
 */
import { IommuError } from '../iommu/errors.js';

/**
 * LIMITS - the defaults of every limit (0 means no limit where noted).
 * @maxContexts: open iommufd contexts on the platform.
 * @maxDevices: platform devices (hot-plug adds).
 * @responseLog: responses each device's log keeps (the newest; 0 keeps all).
 * @maxObjects: objects per context (0 = no limit).
 * @maxMappedPages: 4 KiB pages one context may map across its IOAS objects (0 = no limit).
 * @maxStreamsPerFault: open streams per fault queue (0 = no limit).
 * @maxPartials: partial page requests (a group's requests before its last)
 *   pending per device (0 = no limit).
 * @mapPagesPerCall: pages one IOMMU_IOAS_MAP call may map (256 MiB).
 * @dmaBytes: bytes one DMA moves at most.
 * @memoryLimit: bytes the memory budget allows (0 = no limit); the daemon
 *   sets it from --memory-limit, by default a quarter of the host's RAM.
 * @pageCost: bytes charged against the memory budget per mapped 4 KiB page
 *   (the page, which a touch allocates, and its bookkeeping).
 * @memoryLimitDivisor: the daemon's default memory limit is the host's RAM
 *   divided by this.
 */
export const LIMITS = Object.freeze({
  maxContexts: 1024,
  maxDevices: 256,
  responseLog: 1 << 20,
  maxObjects: 4096,
  maxMappedPages: 1 << 20,
  maxStreamsPerFault: 64,
  maxPartials: 4096,
  mapPagesPerCall: 1 << 16,
  dmaBytes: 1 << 20,
  memoryLimit: 0,
  pageCost: 4096 + 256,
  memoryLimitDivisor: 4,
});

/** What kind of thing a refusal counted against (metrics label). */
export type LimitName = 'memory' | 'contexts' | 'devices' | 'objects' | 'mapped_pages' | 'streams' | 'partials';

/**
 * MemoryBudget - the daemon-wide budget of bytes that big allocations charge
 * before they allocate (mapped pages today). charge() refuses with ENOMEM
 * and charges nothing when the budget would be exceeded.
 */
export class MemoryBudget {
  #inUse = 0;

  /**
   * @limit: bytes allowed (0 = no limit).
   * @onRefuse: told of each refusal (metrics); must not throw.
   */
  constructor(
    readonly limit: number,
    private readonly onRefuse?: (what: LimitName) => void,
  ) {}

  /** Bytes charged now. */
  get inUse(): number {
    return this.#inUse;
  }

  /**
   * charge() - reserve @bytes for @what.
   * Throws IommuError ENOMEM (nothing charged) beyond the limit.
   */
  charge(bytes: number, what: string): void {
    if (this.limit > 0 && this.#inUse + bytes > this.limit) {
      this.onRefuse?.('memory');
      throw new IommuError(
        'ENOMEM',
        `${what} needs ${bytes} bytes and the daemon's memory budget has ${Math.max(0, this.limit - this.#inUse)} of ${this.limit} left`,
      );
    }
    this.#inUse += bytes;
  }

  /** uncharge() - give back @bytes charged before. */
  uncharge(bytes: number): void {
    this.#inUse = Math.max(0, this.#inUse - bytes);
  }
}
