/**
 * Helpers for the end-to-end server tests: a real daemon on 127.0.0.1 with
 * an ephemeral port, a small HTTP client, a WebSocket stream client that
 * queues frames, and the usual fixture (a context with a device attached to
 * a fault-capable hwpt).
 */
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { buildApp, type AppOptions, type IopfdApp } from '../../server/app.js';
import { encodeCd, encodeSte, STE_CFG_S1_TRANS } from '../../core/hw/smmuv3.js';
import { COMMANDS, commandByName, HWPT_FLAGS, RECORD_SIZE, type Command, type Subprotocol } from '../../protocol/index.js';

/** A JSON value as the tests read it (shapes are asserted, not typed). */
// biome-ignore lint/suspicious/noExplicitAny: the one deliberate escape hatch of the tests: replies of every command are read field by field and asserted, typing each would only add casts
export type Json = any;

/** A running daemon. */
export interface TestServer {
  readonly daemon: IopfdApp;
  /** `http://127.0.0.1:PORT` */
  readonly base: string;
  /** `ws://127.0.0.1:PORT` */
  readonly wsBase: string;
  /** An API client without a token (admin routes are open unless adminToken is set). */
  readonly api: Api;
  /** Shut the daemon down (idempotent). */
  close(): Promise<void>;
}

/**
 * startServer() - build and listen on 127.0.0.1, any free port.
 * @opts: app options (the heartbeat defaults to 15 s, tests pass less).
 */
export async function startServer(opts: AppOptions = {}): Promise<TestServer> {
  const daemon = buildApp(opts);
  await daemon.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = daemon.app.server.address();
  assert.ok(addr && typeof addr === 'object');
  const base = `http://127.0.0.1:${addr.port}`;
  return { daemon, base, wsBase: `ws://127.0.0.1:${addr.port}`, api: new Api(base), close: () => daemon.shutdown() };
}

/** The outcome of one HTTP request. */
export interface Reply {
  status: number;
  body: Json;
  text: string;
  headers: Headers;
  /** The command of the table the request's method and path match, if any. */
  command: Command | undefined;
}

/** Each command with its URL as a regular expression. */
const COMMAND_PATHS = COMMANDS.map((c) => ({ c, re: new RegExp(`^${c.url.replace(/:\w+/g, '[^/]+')}$`) }));

/** commandOf() - the command a request matches (fastify picks the same: no two overlap). */
function commandOf(method: string, path: string): Command | undefined {
  const pathname = new URL(path, 'http://x').pathname;
  return COMMAND_PATHS.find(({ c, re }) => c.method === method && re.test(pathname))?.c;
}

/** Options of one request: a JSON body, or a raw one with its content-type. */
export interface RequestOptions {
  body?: unknown;
  raw?: string;
  contentType?: string;
  token?: string | undefined;
  headers?: Record<string, string>;
}

/** A tiny REST client bound to a base URL and (optionally) a token. */
export class Api {
  constructor(
    readonly base: string,
    readonly token?: string,
  ) {}

  /** withToken() - the same client with another token. */
  withToken(token: string | undefined): Api {
    return new Api(this.base, token);
  }

  /** call() - one request; never throws for an HTTP error status. */
  async call(method: string, path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = 'token' in opts ? opts.token : this.token;
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      headers['content-type'] = opts.contentType ?? 'application/json';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(this.base + path, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    let parsed: Json;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers, command: commandOf(method, path) };
  }

  get(path: string, opts?: RequestOptions): Promise<Reply> {
    return this.call('GET', path, opts);
  }

  post(path: string, body?: unknown, opts: RequestOptions = {}): Promise<Reply> {
    return this.call('POST', path, body === undefined ? opts : { ...opts, body });
  }

  delete(path: string, opts?: RequestOptions): Promise<Reply> {
    return this.call('DELETE', path, opts);
  }

  /**
   * ok() - a request that must succeed as the command table says: the
   * command's status, and a body matching its response schema.
   */
  async ok(command: string, method: string, path: string, body?: unknown): Promise<Json> {
    const c = commandByName(command);
    assert.equal(c.method, method, `${command} is a ${c.method}`);
    const r = await this.call(method, path, body === undefined ? {} : { body });
    assert.equal(r.status, c.status, `${method} ${path}: ${r.text}`);
    if (c.response) {
      const v = c.response.safeParse(r.body);
      assert.ok(v.success, `${command} response does not match its schema: ${r.text}`);
    } else {
      assert.equal(r.text, '');
    }
    return r.body;
  }
}

/**
 * assertError() - a reply is the error {errno, message} with the status of
 * the table, and (on a route of the command table) an errno that the
 * command lists: the command table and the server stay in step.
 */
export function assertError(r: Reply, status: number, errno: string, message?: RegExp): void {
  assert.equal(r.status, status, r.text);
  assert.equal(r.body?.errno, errno, r.text);
  assert.equal(typeof r.body?.message, 'string');
  assert.deepEqual(Object.keys(r.body).sort(), ['errno', 'message']);
  if (message) assert.match(r.body.message, message);
  if (r.command) assert.ok((r.command.errnos as readonly string[]).includes(errno), `${r.command.name} does not list ${errno}`);
}

/** One frame received by a StreamClient. */
export interface Frame {
  data: Buffer;
  binary: boolean;
}

/** Options of a stream connection. */
export interface StreamClientOptions {
  protocol?: Subprotocol | string | string[];
  token?: string;
  tokenInQuery?: boolean;
  window?: number | string;
  autoPong?: boolean;
  maxPayload?: number;
}

function streamUrl(wsBase: string, path: string, opts: StreamClientOptions): string {
  const q = new URLSearchParams();
  if (opts.window !== undefined) q.set('window', String(opts.window));
  if (opts.tokenInQuery && opts.token !== undefined) q.set('token', opts.token);
  const qs = q.toString();
  return `${wsBase}${path}${qs ? `?${qs}` : ''}`;
}

function wsOptions(opts: StreamClientOptions): WebSocket.ClientOptions {
  const headers: Record<string, string> = {};
  if (!opts.tokenInQuery && opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  return { headers, autoPong: opts.autoPong ?? true, maxPayload: opts.maxPayload ?? 64 << 20 };
}

/** A fault stream client that queues every frame and records the close. */
export class StreamClient {
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary) => {
      this.frames.push({ data, binary });
      this.waiter?.();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.waiter?.();
      }),
    );
  }

  /** open() - connect and wait for the upgrade to complete. */
  static open(wsBase: string, path: string, opts: StreamClientOptions = {}): Promise<StreamClient> {
    const ws = new WebSocket(streamUrl(wsBase, path, opts), opts.protocol ?? [], wsOptions(opts));
    const client = new StreamClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  /** next() - the next frame (waits up to @timeoutMs). */
  next(timeoutMs = 3000): Promise<Frame> {
    return this.take(() => true, timeoutMs);
  }

  /**
   * take() - the first queued frame matching @match, waiting for it if
   * needed (up to @timeoutMs); frames before it stay queued.
   */
  async take(match: (f: Frame) => boolean, timeoutMs = 3000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('stream closed while waiting for a frame');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame within the timeout');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  /** reply() - the first queued text frame of @type (e.g. `results`, `write`), parsed. */
  async reply(type: string, timeoutMs?: number): Promise<Json> {
    const f = await this.take((f) => !f.binary && JSON.parse(f.data.toString('utf8')).type === type, timeoutMs);
    return JSON.parse(f.data.toString('utf8'));
  }

  /** json() - the next frame, which must be a text frame; parsed. */
  async json(timeoutMs?: number): Promise<Json> {
    const f = await this.next(timeoutMs);
    assert.equal(f.binary, false, 'expected a text frame');
    return JSON.parse(f.data.toString('utf8'));
  }

  /** binary() - the next frame, which must be binary. */
  async binary(timeoutMs?: number): Promise<Buffer> {
    const f = await this.next(timeoutMs);
    assert.equal(f.binary, true, `expected a binary frame, got ${f.data.toString('utf8').slice(0, 200)}`);
    return f.data;
  }

  /** quiet() - assert that no frame arrives within @ms. */
  async quiet(ms = 150): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(this.frames.length, 0, `unexpected frame: ${this.frames[0]?.data.toString('utf8').slice(0, 200)}`);
  }

  /** sendJson() - send a text frame holding @msg as JSON. */
  sendJson(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** respond() - send one `responses` frame and return its `results` frame (other frames stay queued). */
  respond(responses: Array<{ cookie: number; code: number | string }>): Promise<Json> {
    this.sendJson({ type: 'responses', responses });
    return this.reply('results');
  }

  /** close() - close from the client side and wait for the close to complete. */
  async close(): Promise<void> {
    this.ws.close();
    await this.closed;
  }
}

/**
 * refusedUpgrade() - attempt a stream upgrade that the daemon must refuse.
 * Return: the HTTP status and parsed body of the refusal.
 */
export function refusedUpgrade(wsBase: string, path: string, opts: StreamClientOptions = {}): Promise<{ status: number; body: Json }> {
  const ws = new WebSocket(streamUrl(wsBase, path, opts), opts.protocol ?? [], wsOptions(opts));
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the upgrade was accepted')));
    ws.once('error', () => {});
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
  });
}

/** One decoded 40-byte record, read at the protocol's offsets. */
export interface DecodedRecord {
  flags: number;
  dev_id: number;
  pasid: number;
  grpid: number;
  perm: number;
  reserved: number;
  addr: bigint;
  length: number;
  cookie: number;
}

/** decodeBinaryRecords() - read every record of a binary frame, field by field. */
export function decodeBinaryRecords(buf: Buffer): DecodedRecord[] {
  assert.equal(buf.length % RECORD_SIZE, 0, 'a binary frame is a whole number of records');
  const out: DecodedRecord[] = [];
  for (let o = 0; o < buf.length; o += RECORD_SIZE) {
    out.push({
      flags: buf.readUInt32LE(o + 0),
      dev_id: buf.readUInt32LE(o + 4),
      pasid: buf.readUInt32LE(o + 8),
      grpid: buf.readUInt32LE(o + 12),
      perm: buf.readUInt32LE(o + 16),
      reserved: buf.readUInt32LE(o + 20),
      addr: buf.readBigUInt64LE(o + 24),
      length: buf.readUInt32LE(o + 32),
      cookie: buf.readUInt32LE(o + 36),
    });
  }
  return out;
}

/** responsesBuffer() - the bytes of one write() of responses. */
export function responsesBuffer(rs: Array<{ cookie: number; code: number }>): Buffer {
  const b = Buffer.alloc(rs.length * 8);
  rs.forEach((r, i) => {
    b.writeUInt32LE(r.cookie, i * 8);
    b.writeUInt32LE(r.code, i * 8 + 4);
  });
  return b;
}

/** A context with a device attached to a fault-capable hwpt. */
export interface FaultFixture {
  ctx: number;
  token: string;
  /** Client of the context (its token set). */
  api: Api;
  devId: number;
  ioas: number;
  fault: number;
  hwpt: number;
  /** `/v1/contexts/CTX` */
  prefix: string;
  /** The stream path, as POST /faults returned it. */
  stream: string;
}

/**
 * faultFixture() - open a context, bind @device, allocate an IOAS, a fault
 * queue (@faultBody) and a paging hwpt with FAULT_ID_VALID|PASID on the
 * IOAS, and attach the device at its RID (and at @pasid when given).
 */
export async function faultFixture(server: Pick<TestServer, 'api'>, opts: { device?: string; faultBody?: object; pasid?: number } = {}): Promise<FaultFixture> {
  const created = await server.api.ok('context.create', 'POST', '/v1/contexts');
  const api = server.api.withToken(created.token);
  const prefix = `/v1/contexts/${created.ctx}`;
  const { dev_id: devId } = await api.ok('device.bind', 'POST', `${prefix}/devices`, { name: opts.device ?? 'nic0' });
  const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${prefix}/ioas`, {});
  const f = await api.ok('fault.alloc', 'POST', `${prefix}/faults`, opts.faultBody ?? {});
  const { id: hwpt } = await api.ok('hwpt.alloc', 'POST', `${prefix}/hwpt`, {
    dev_id: devId,
    pt_id: ioas,
    flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID,
    fault_id: f.id,
  });
  await api.ok('device.attach', 'POST', `${prefix}/devices/${devId}/attach`, { pt_id: hwpt });
  if (opts.pasid !== undefined) await api.ok('device.attach', 'POST', `${prefix}/devices/${devId}/attach`, { pt_id: hwpt, pasid: opts.pasid });
  return { ctx: created.ctx, token: created.token, api, devId, ioas, fault: f.id, hwpt, prefix, stream: f.stream };
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;
const u64le = (v: bigint): string => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b.toString('hex');
};

/** A context on the SMMUv3 device arm0 with a vIOMMU and a vEVENTQ. */
export interface ArmFixture {
  api: Api;
  ctx: number;
  token: string;
  /** `/v1/contexts/CTX` */
  C: string;
  devId: number;
  viommu: number;
  /** POST /veventq's reply: id, stream. */
  veventq: Json;
}

/**
 * armFixture() - a context with arm0 attached to a translating nested hwpt
 * through vDEVICE 0x99, and a vEVENTQ of @depth. The guest's CD lives in
 * its RAM (an IOAS) and its stage-1 table is empty, so every DMA is a
 * stage-1 translation fault reported on the vEVENTQ with the vSID.
 */
export async function armFixture(server: Pick<TestServer, 'api'>, depth = 2): Promise<ArmFixture> {
  const created = await server.api.ok('context.create', 'POST', '/v1/contexts');
  const api = server.api.withToken(created.token);
  const C = `/v1/contexts/${created.ctx}`;
  const { dev_id: devId } = await api.ok('device.bind', 'POST', `${C}/devices`, { name: 'arm0' });
  const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${C}/ioas`, {});
  await api.ok('ioas.map', 'POST', `${C}/ioas/${ioas}/map`, { iova: '0x0', length: '0x100000' });
  // CD 0 at 0x1000: TTB0 = 0x2000 (a zeroed page: nothing mapped), T0SZ 25.
  const [c0, c1] = encodeCd({ ttb0: 0x2000n, t0sz: 25 });
  await api.ok('ioas.memory.write', 'POST', `${C}/ioas/${ioas}/memory/write`, { writes: [{ iova: '0x1000', data: u64le(c0) + u64le(c1) }] });
  const { id: parent } = await api.ok('hwpt.alloc', 'POST', `${C}/hwpt`, { dev_id: devId, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
  const { id: viommu } = await api.ok('viommu.alloc', 'POST', `${C}/viommu`, { type: 'arm_smmuv3', dev_id: devId, hwpt_id: parent });
  await api.ok('vdevice.alloc', 'POST', `${C}/vdevice`, { viommu_id: viommu, dev_id: devId, virt_id: '0x99' });
  const ste = encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x1000n }).map(hex);
  const { id: nested } = await api.ok('hwpt.alloc', 'POST', `${C}/hwpt`, { dev_id: devId, pt_id: viommu, data_type: 'arm_smmuv3', data: { ste } });
  await api.ok('device.attach', 'POST', `${C}/devices/${devId}/attach`, { pt_id: nested });
  const veventq = await api.ok('veventq.alloc', 'POST', `${C}/veventq`, { viommu_id: viommu, type: 'arm_smmuv3', depth });
  return { api, ctx: created.ctx, token: created.token, C, devId, viommu, veventq };
}

/** armFaultingDma() - an 8-byte read by arm0 at @iova (admin route). */
export async function armFaultingDma(api: Api, iova: bigint): Promise<Json> {
  return api.ok('platform.device.dma', 'POST', '/v1/platform/devices/arm0/dma', { iova: hex(iova), length: '0x8', access: 'read' });
}

/** A raw page request, as POST /page-requests takes it (addr as a bigint). */
export interface PageRequest {
  grpid: number;
  addr: bigint;
  perm?: number;
  last?: boolean;
  pasid?: number;
}

/** inject() - inject one page request into @device (202 expected). */
export async function inject(api: Api, device: string, req: PageRequest): Promise<void> {
  const body: Json = { grpid: req.grpid, addr: `0x${req.addr.toString(16)}`, perm: req.perm ?? 1, last: req.last ?? true };
  if (req.pasid !== undefined) body.pasid = req.pasid;
  await api.ok('platform.device.page-request', 'POST', `/v1/platform/devices/${device}/page-requests`, body);
}

/** injectGroup() - inject one group of @pages page requests (last one LAST) at @addr, @addr+4K, ... */
export async function injectGroup(api: Api, device: string, grpid: number, addr: bigint, pages = 1, pasid?: number): Promise<void> {
  for (let i = 0; i < pages; i++) {
    await inject(api, device, { grpid, addr: addr + BigInt(i) * 0x1000n, last: i === pages - 1, ...(pasid === undefined ? {} : { pasid }) });
  }
}

/** responses() - the device's response log (since @since). */
export async function deviceResponses(api: Api, device: string, since = 0): Promise<Json[]> {
  const r = await api.ok('platform.device.responses', 'GET', `/v1/platform/devices/${device}/responses?since=${since}`);
  return r.responses;
}

/** waitFor() - poll @check until it returns true (or fail after @timeoutMs). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * pingFlood() - make @s a peer that pings without reading: pause it, then
 * ping (125-byte payloads) as fast as the socket takes them until the
 * daemon closes the stream (at most 2,000,000 pings).
 * Return: the close.
 */
export async function pingFlood(s: StreamClient): Promise<{ code: number; reason: string }> {
  s.ws.pause(); // reads nothing more
  const payload = Buffer.alloc(125, 1);
  let sent = 0;
  const pump = setInterval(() => {
    for (let i = 0; i < 1000 && s.ws.readyState === WebSocket.OPEN && sent < 2_000_000; i++, sent++) s.ws.ping(payload);
  }, 1);
  try {
    return await s.closed;
  } finally {
    clearInterval(pump);
  }
}
