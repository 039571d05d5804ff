/**
 * DOC: the REST client
 *
 * IopfdClient speaks every route of the protocol's command table (COMMANDS)
 * with Node's built-in fetch: the method, path, token kind and success
 * status all come from the table, so there is one request path for every
 * route. Platform routes carry the admin token (when the client has one);
 * context routes go through an IopfdContext, a handle holding the context's
 * id and token. A non-success status becomes an IopfdError; no answer at
 * all an IopfdConnectionError.
 */
import { commandByName, type Command } from '../../protocol/index.js';
import { IopfdConnectionError, IopfdError } from './errors.js';
import { FaultQueue, type FaultQueueOptions } from './fault-queue.js';
import { ObserveStream } from './observe.js';
import type { WalkResult } from '../../protocol/index.js';
import type {
  AddDeviceRequest,
  AttachRequest,
  ContextCreated,
  ContextList,
  DetachRequest,
  DevIdResult,
  DeviceResponses,
  DmaRequest,
  DmaResult,
  FaultAllocRequest,
  FaultCreated,
  FaultStatus,
  Health,
  HwptAllocRequest,
  HwptInvalidateRequest,
  HwptInvalidateResult,
  IdResult,
  IoasMapRequest,
  IovaRange,
  MemoryReadResult,
  MemoryWriteRequest,
  ObjectList,
  PageRequestRequest,
  Platform,
  PlatformDevice,
  SvaBindRequest,
  TrafficRequest,
  TrafficStatus,
  UnmapResult,
  VdeviceAllocRequest,
  VeventqAllocRequest,
  VeventqCreated,
  VeventqStatus,
  ViommuAllocRequest,
  ViommuInvalidateRequest,
} from './types.js';
import { VEventQueue, type VEventQueueOptions } from './vevent-queue.js';

/**
 * struct IopfdClientOptions - how to reach the daemon.
 * @url: its base URL, e.g. `http://127.0.0.1:8080`.
 * @adminToken: sent on `/v1/platform` routes (none: they must be open).
 * @timeoutMs: give up on a request after this long (IopfdConnectionError);
 *   none by default (a DMA waits up to its own `timeout_ms`).
 * @validate: check every success body against the command's response
 *   schema (a mismatch is IopfdError EIO); off by default.
 */
export interface IopfdClientOptions {
  url: string;
  adminToken?: string | undefined;
  timeoutMs?: number | undefined;
  validate?: boolean | undefined;
}

/**
 * struct CallOptions - one request of call().
 * @params: the URL's `:name` parameters.
 * @query: query parameters (undefined ones are left out).
 * @body: the JSON body.
 * @token: the context token, for `ctx` routes.
 */
export interface CallOptions {
  params?: Readonly<Record<string, string | number>>;
  query?: Readonly<Record<string, string | number | undefined>>;
  body?: unknown;
  token?: string | undefined;
}

/** pathOf() - a command's URL with its `:name` parameters filled in. */
function pathOf(command: Command, params: Readonly<Record<string, string | number>>): string {
  return command.url.replace(/:(\w+)/g, (_m, name: string) => {
    const v = params[name];
    if (v === undefined) throw new TypeError(`${command.name}: missing path parameter ${name}`);
    return encodeURIComponent(String(v));
  });
}

/**
 * IopfdClient - a typed client of the daemon's REST API.
 *
 * Every method resolves with the route's wire result (u64 as `"0x…"`
 * strings), or undefined for a 204 route. Throws IopfdError when the daemon
 * refuses, IopfdConnectionError when it cannot be reached.
 */
export class IopfdClient {
  /** The base URL, without a trailing slash. */
  readonly url: string;
  readonly #adminToken: string | undefined;
  readonly #timeoutMs: number | undefined;
  readonly #validate: boolean;

  constructor(options: IopfdClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.#adminToken = options.adminToken;
    this.#timeoutMs = options.timeoutMs;
    this.#validate = options.validate ?? false;
  }

  /**
   * call() - one request to a route of the command table.
   * @name: the command's name, e.g. `ioas.map`.
   * @opts: parameters, query, body and context token.
   *
   * The admin token goes with `admin` routes, @opts.token with `ctx` routes.
   *
   * Return: the parsed success body (undefined for 204).
   * Throws: IopfdError, IopfdConnectionError; TypeError for a missing path
   * parameter or an unknown command (programming errors).
   */
  async call<T>(name: string, opts: CallOptions = {}): Promise<T> {
    const command = commandByName(name);
    let path = pathOf(command, opts.params ?? {});
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) query.set(k, String(v));
    if (query.size > 0) path += `?${query}`;
    const headers: Record<string, string> = {};
    const token = command.auth === 'admin' ? this.#adminToken : command.auth === 'ctx' ? opts.token : undefined;
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    const init: RequestInit = { method: command.method, headers };
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    // An event stream lasts until closed: no timeout, an abort of its own.
    const abort = command.stream === 'sse' ? new AbortController() : undefined;
    if (abort) init.signal = abort.signal;
    else if (this.#timeoutMs !== undefined) init.signal = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url + path, init);
      if (abort && res.status === command.status) return new ObserveStream(res, abort) as T;
      text = await res.text();
    } catch (e) {
      const cause = (e as { cause?: unknown }).cause ?? e;
      const why = cause instanceof Error ? cause.message : String(cause);
      throw new IopfdConnectionError(`${command.method} ${this.url}${path}: ${why}`, { cause });
    }
    if (res.status !== command.status) throw IopfdError.fromResponse(res.status, text);
    if (text === '') return undefined as T;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new IopfdError('EIO', res.status, `${command.name}: the response is not JSON`);
    }
    if (this.#validate && command.response) {
      const v = command.response.safeParse(body);
      if (!v.success) throw new IopfdError('EIO', res.status, `${command.name}: the response does not match the contract: ${v.error.message}`);
    }
    return body as T;
  }

  /* ------------------------------------------------------------ platform */

  /** platform() - GET /v1/platform: IOMMUs and devices. */
  platform(): Promise<Platform> {
    return this.call('platform.get');
  }

  /** addDevice() - POST /v1/platform/devices: hot-plug a PCIe function. */
  addDevice(body: AddDeviceRequest): Promise<PlatformDevice> {
    return this.call('platform.device.add', { body });
  }

  /** removeDevice() - DELETE /v1/platform/devices/:name: hot-unplug. */
  removeDevice(name: string): Promise<void> {
    return this.call('platform.device.remove', { params: { name } });
  }

  /** dma() - POST .../dma: perform a DMA and wait for its outcome. */
  dma(name: string, body: DmaRequest): Promise<DmaResult> {
    return this.call('platform.device.dma', { params: { name }, body });
  }

  /** injectPageRequest() - POST .../page-requests: one raw page request. */
  injectPageRequest(name: string, body: PageRequestRequest): Promise<Record<string, never>> {
    return this.call('platform.device.page-request', { params: { name }, body });
  }

  /** responses() - GET .../responses: the device's page group responses (seq > @since). */
  responses(name: string, since?: number): Promise<DeviceResponses> {
    return this.call('platform.device.responses', { params: { name }, query: { since } });
  }

  /** walk() - GET .../walk: the translation walk of (pasid, addr, perm) as the tables are now (read-only). */
  walk(name: string, query: { addr: string; pasid?: number | undefined; perm?: number | undefined }): Promise<WalkResult> {
    return this.call('platform.device.walk', { params: { name }, query });
  }

  /**
   * observe() - GET /v1/platform/observe: the read-only observation feed.
   * @opts.events: false for snapshots only.
   */
  observe(opts: { events?: boolean } = {}): Promise<ObserveStream> {
    return this.call('platform.observe', { query: { events: opts.events === false ? '0' : '1' } });
  }

  /** priReset() - POST .../pri-reset: clear Response Failure, re-enable PRI. */
  priReset(name: string): Promise<void> {
    return this.call('platform.device.pri-reset', { params: { name }, body: {} });
  }

  /** svaBind() - POST .../sva: bind a simulated process address space at a PASID. */
  svaBind(name: string, body: SvaBindRequest): Promise<Record<string, never>> {
    return this.call('platform.sva.bind', { params: { name }, body });
  }

  /** svaUnbind() - DELETE .../sva/:pasid. */
  svaUnbind(name: string, pasid: number): Promise<void> {
    return this.call('platform.sva.unbind', { params: { name, pasid } });
  }

  /** startTraffic() - POST .../traffic: start the device's traffic generator. */
  startTraffic(name: string, body: TrafficRequest): Promise<Record<string, never>> {
    return this.call('platform.traffic.start', { params: { name }, body });
  }

  /** stopTraffic() - DELETE .../traffic (extension): no new groups; the run's status. */
  stopTraffic(name: string): Promise<TrafficStatus> {
    return this.call('platform.traffic.stop', { params: { name } });
  }

  /** trafficStatus() - GET .../traffic: the current or last run. */
  trafficStatus(name: string): Promise<TrafficStatus> {
    return this.call('platform.traffic.status', { params: { name } });
  }

  /** device() - GET /v1/platform/devices/:name (extension): one device. */
  device(name: string): Promise<PlatformDevice> {
    return this.call('platform.device.get', { params: { name } });
  }

  /** contexts() - GET /v1/platform/contexts (extension): every open context, oldest first. */
  contexts(): Promise<ContextList> {
    return this.call('platform.contexts.list');
  }

  /**
   * releaseContext() - DELETE /v1/platform/contexts/:ctx (extension): force-release
   * a context without its token (admin), as its owner's release would.
   */
  releaseContext(ctx: number): Promise<void> {
    return this.call('platform.contexts.release', { params: { ctx } });
  }

  /** health() - GET /healthz. */
  health(): Promise<Health> {
    return this.call('healthz');
  }

  /* ------------------------------------------------------------ contexts */

  /** createContext() - POST /v1/contexts: a new context and its handle. */
  async createContext(): Promise<IopfdContext> {
    const created = await this.call<ContextCreated>('context.create', { body: {} });
    return new IopfdContext(this, created.ctx, created.token);
  }

  /** context() - the handle of an existing context, from its id and token. */
  context(ctx: number, token: string): IopfdContext {
    return new IopfdContext(this, ctx, token);
  }
}

/**
 * IopfdContext - a handle on one context (an open iommufd): its id, its
 * token, and every `/v1/contexts/:ctx` route.
 */
export class IopfdContext {
  constructor(
    readonly client: IopfdClient,
    readonly ctx: number,
    readonly token: string,
  ) {}

  #call<T>(name: string, params: Readonly<Record<string, string | number>> = {}, body?: unknown): Promise<T> {
    return this.client.call<T>(name, { params: { ctx: this.ctx, ...params }, body, token: this.token });
  }

  /** release() - DELETE /v1/contexts/:ctx: destroy everything, answer outstanding groups INVALID. */
  release(): Promise<void> {
    return this.#call('context.destroy');
  }

  /** objects() - GET .../objects. */
  objects(): Promise<ObjectList> {
    return this.#call('object.list');
  }

  /** destroyObject() - DELETE .../objects/:id (IOMMU_DESTROY). */
  destroyObject(id: number): Promise<void> {
    return this.#call('object.destroy', { id });
  }

  /** bindDevice() - POST .../devices: bind a platform device. */
  bindDevice(name: string): Promise<DevIdResult> {
    return this.#call('device.bind', {}, { name });
  }

  /** allocIoas() - POST .../ioas (IOMMU_IOAS_ALLOC). */
  allocIoas(): Promise<IdResult> {
    return this.#call('ioas.alloc', {}, {});
  }

  /** map() - POST .../ioas/:id/map: fresh zeroed memory at an IOVA range. */
  map(ioas: number, body: IoasMapRequest): Promise<Record<string, never>> {
    return this.#call('ioas.map', { id: ioas }, body);
  }

  /** unmap() - POST .../ioas/:id/unmap. */
  unmap(ioas: number, body: IovaRange): Promise<UnmapResult> {
    return this.#call('ioas.unmap', { id: ioas }, body);
  }

  /** writeMemory() - POST .../ioas/:id/memory/write: all writes or none. */
  writeMemory(ioas: number, writes: MemoryWriteRequest['writes']): Promise<void> {
    return this.#call('ioas.memory.write', { id: ioas }, { writes });
  }

  /** readMemory() - POST .../ioas/:id/memory/read. */
  readMemory(ioas: number, range: IovaRange): Promise<MemoryReadResult> {
    return this.#call('ioas.memory.read', { id: ioas }, range);
  }

  /** allocHwpt() - POST .../hwpt (IOMMU_HWPT_ALLOC): paging or nested. */
  allocHwpt(body: HwptAllocRequest): Promise<IdResult> {
    return this.#call('hwpt.alloc', {}, body);
  }

  /** invalidate() - POST .../hwpt/:id/invalidate (IOMMU_HWPT_INVALIDATE). */
  invalidate(hwpt: number, entries: HwptInvalidateRequest['entries']): Promise<HwptInvalidateResult> {
    return this.#call('hwpt.invalidate', { id: hwpt }, { entries });
  }

  /** attach() - POST .../devices/:dev_id/attach (RID, or a PASID). */
  attach(devId: number, body: AttachRequest): Promise<Record<string, never>> {
    return this.#call('device.attach', { dev_id: devId }, body);
  }

  /** replace() - POST .../devices/:dev_id/replace. */
  replace(devId: number, body: AttachRequest): Promise<Record<string, never>> {
    return this.#call('device.replace', { dev_id: devId }, body);
  }

  /** detach() - POST .../devices/:dev_id/detach. */
  detach(devId: number, body: DetachRequest = {}): Promise<Record<string, never>> {
    return this.#call('device.detach', { dev_id: devId }, body);
  }

  /** allocFault() - POST .../faults (IOMMU_FAULT_QUEUE_ALLOC). */
  allocFault(body: FaultAllocRequest = {}): Promise<FaultCreated> {
    return this.#call('fault.alloc', {}, body);
  }

  /** faultStatus() - GET .../faults/:id. */
  faultStatus(id: number): Promise<FaultStatus> {
    return this.#call('fault.get', { id });
  }

  /** allocViommu() - POST .../viommu (IOMMU_VIOMMU_ALLOC): arm_smmuv3 on a NEST_PARENT hwpt. */
  allocViommu(body: ViommuAllocRequest): Promise<IdResult> {
    return this.#call('viommu.alloc', {}, body);
  }

  /** invalidateViommu() - POST .../viommu/:id/invalidate: guest SMMUv3 commands; an error carries `done`. */
  invalidateViommu(viommu: number, body: ViommuInvalidateRequest): Promise<HwptInvalidateResult> {
    return this.#call('viommu.invalidate', { id: viommu }, body);
  }

  /** allocVdevice() - POST .../vdevice (IOMMU_VDEVICE_ALLOC): virt_id is the vSID. */
  allocVdevice(body: VdeviceAllocRequest): Promise<IdResult> {
    return this.#call('vdevice.alloc', {}, body);
  }

  /** allocVeventq() - POST .../veventq (IOMMU_VEVENTQ_ALLOC). */
  allocVeventq(body: VeventqAllocRequest): Promise<VeventqCreated> {
    return this.#call('veventq.alloc', {}, body);
  }

  /** veventqStatus() - GET .../veventq/:id. */
  veventqStatus(id: number): Promise<VeventqStatus> {
    return this.#call('veventq.get', { id });
  }

  /** veventQueue() - a stream client on vEVENTQ @id (not yet connected: call connect()). */
  veventQueue(id: number, opts: Omit<VEventQueueOptions, 'url' | 'ctx' | 'veventqId' | 'token'> = {}): VEventQueue {
    return new VEventQueue({ ...opts, url: this.client.url, ctx: this.ctx, veventqId: id, token: this.token });
  }

  /**
   * faultQueue() - a stream client on fault queue @id (not yet connected:
   * call connect()).
   * @id: the fault queue's object id.
   * @opts: mode, window, reconnect policy.
   */
  faultQueue(id: number, opts: Omit<FaultQueueOptions, 'url' | 'ctx' | 'faultId' | 'token'> = {}): FaultQueue {
    return new FaultQueue({ ...opts, url: this.client.url, ctx: this.ctx, faultId: id, token: this.token });
  }
}
