/**
 * DOC: JSON Schema and OpenAPI
 *
 * Generated from the zod schemas, input side (what goes on the wire): u64
 * fields are `"0x…"` string patterns, byte data hex patterns, defaults shown.
 * Pure functions; the server decides where to serve or write them.
 */
import { z } from 'zod';
import { ERRNO_DESCRIPTIONS, ERRNO_HTTP, type Errno } from './errno.js';
import { COMMANDS, zErrorBody, type Command } from './schemas.js';
import { CLOSE, CLOSE_DESCRIPTIONS, DEFAULT_WINDOW, STREAM_ERRNOS, STREAM_URL, SUBPROTOCOLS, zClientMessage, zServerMessage, zStreamQuery } from './stream.js';
import { zDecimalU32 } from './u64.js';

type JsonObject = Record<string, unknown>;

/**
 * toSchema() - JSON Schema of the wire form of @schema, without the
 * `$schema` key so it can be embedded.
 * @target: the JSON Schema draft (2020-12 for OpenAPI 3.1, draft-07 for AsyncAPI).
 */
export function toSchema(schema: z.ZodType, target: 'draft-2020-12' | 'draft-7' = 'draft-2020-12'): JsonObject {
  const out: JsonObject = { ...z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target }) };
  delete out.$schema;
  if (target === 'draft-2020-12') closeTuples(out);
  return out;
}

/**
 * closeTuples() - give every tuple (`prefixItems`) of @node `items: {not: {}}`
 * (no further item: a zod tuple takes no more than it lists); tools
 * (Spectral's array-items) want `items` spelled out as a schema object.
 */
function closeTuples(node: unknown): void {
  if (Array.isArray(node)) {
    for (const n of node) closeTuples(n);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const o = node as JsonObject;
  if (Array.isArray(o.prefixItems) && (o.items === undefined || o.items === false)) o.items = { not: {} };
  for (const v of Object.values(o)) closeTuples(v);
}

/**
 * jsonSchemas() - JSON Schema of every wire shape.
 *
 * Keys: `<command>.params`, `<command>.query`, `<command>.body`,
 * `<command>.response` for each command that has that part, plus `error`
 * (every error body), `stream.query`, `stream.server` (any daemon text
 * frame) and `stream.client` (a client text frame).
 *
 * Return: a map from key to JSON Schema (draft 2020-12) object.
 */
export function jsonSchemas(): Record<string, unknown> {
  const out: Record<string, unknown> = { error: toSchema(zErrorBody) };
  for (const c of COMMANDS) {
    for (const part of ['params', 'query', 'body', 'response'] as const) {
      const s = c[part];
      if (s) out[`${c.name}.${part}`] = toSchema(s);
    }
  }
  out['stream.query'] = toSchema(zStreamQuery);
  out['stream.server'] = toSchema(zServerMessage);
  out['stream.client'] = toSchema(zClientMessage);
  return out;
}

/** openApiPath() - fastify `:param` segments to OpenAPI (and AsyncAPI) `{param}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z_]\w*)/g, '{$1}');
}

/** parametersOf() - OpenAPI parameter objects for a params or query schema. */
function parametersOf(schema: z.ZodType | undefined, where: 'path' | 'query'): JsonObject[] {
  if (!schema) return [];
  const s = toSchema(schema);
  const props = (s.properties ?? {}) as Record<string, JsonObject>;
  const required = new Set((s.required ?? []) as string[]);
  return Object.entries(props).map(([name, schema]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema,
  }));
}

/**
 * errorResponses() - one OpenAPI response per HTTP status among @errnos.
 * @inputEio: Command.inputEio: EIO is then listed under 400 too, for that input.
 */
function errorResponses(errnos: readonly Errno[], inputEio?: string): Record<string, JsonObject> {
  const byStatus = new Map<number, Errno[]>();
  const add = (status: number, e: Errno): void => void byStatus.set(status, [...(byStatus.get(status) ?? []), e]);
  for (const e of errnos) add(ERRNO_HTTP[e], e);
  if (inputEio !== undefined && errnos.includes('EIO')) add(400, 'EIO');
  const describe = (status: number, e: Errno): string =>
    status === 400 && e === 'EIO' ? `EIO: bad input the kernel answers EIO for: ${inputEio}` : `${e}: ${ERRNO_DESCRIPTIONS[e]}`;
  const out: Record<string, JsonObject> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: list.map((e) => describe(status, e)).join('; '),
      content: {
        'application/json': {
          schema: { allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { errno: { enum: list } } }] },
        },
      },
    };
  }
  return out;
}

const SECURITY: Record<Command['auth'], JsonObject[]> = {
  none: [],
  admin: [{ adminToken: [] }],
  ctx: [{ contextToken: [] }],
};

const AUTH_TEXT: Record<Command['auth'], string> = {
  none: 'No token needed.',
  admin: 'Needs the **admin** bearer token.',
  ctx: "Needs the context's bearer token (returned by `POST /v1/contexts`).",
};

/** operationOf() - the OpenAPI operation object of one command. */
function operationOf(c: Command): JsonObject {
  const op: JsonObject = {
    operationId: c.name,
    summary: c.summary,
    tags: [c.name.split('.')[0]],
    security: SECURITY[c.auth],
  };
  op.description = [AUTH_TEXT[c.auth], c.kernel ? `Kernel analogue: \`${c.kernel}\`.` : ''].filter(Boolean).join('\n\n');
  const parameters = [...parametersOf(c.params, 'path'), ...parametersOf(c.query, 'query')];
  if (parameters.length > 0) op.parameters = parameters;
  if (c.body) {
    // An absent body is read as {} (server/rest.ts): the body is required
    // exactly when {} is not a valid one.
    op.requestBody = {
      required: !c.body.safeParse({}).success,
      content: { 'application/json': { schema: toSchema(c.body) } },
    };
  }
  const ok: JsonObject = { description: c.status === 204 ? 'No content' : 'Success' };
  // An `sse` command's body is an event stream whose `data` lines have the response's shape.
  if (c.response) ok.content = { [c.stream === 'sse' ? 'text/event-stream' : 'application/json']: { schema: toSchema(c.response) } };
  op.responses = { [String(c.status)]: ok, ...errorResponses(c.errnos, c.inputEio) };
  return op;
}

/** streamOperation() - the fault stream upgrade, described as far as OpenAPI can. */
function streamOperation(): JsonObject {
  const closes = Object.values(CLOSE)
    .map((code) => `${code}: ${CLOSE_DESCRIPTIONS[code]}`)
    .join('\n- ');
  return {
    operationId: 'fault.stream',
    summary: 'The fault fd: WebSocket upgrade',
    tags: ['fault'],
    security: [{ contextToken: [] }, {}],
    description:
      `WebSocket subprotocols: ${SUBPROTOCOLS.join(', ')} (the first is the default). ` +
      `Query \`window\` (default ${DEFAULT_WINDOW}) bounds delivered-unanswered groups; ` +
      '`token` may replace the authorization header. Close codes:\n- ' +
      closes,
    parameters: [...parametersOf(z.strictObject({ ctx: zDecimalU32, id: zDecimalU32 }), 'path'), ...parametersOf(zStreamQuery, 'query')],
    responses: { '101': { description: 'Switching protocols' }, ...errorResponses(STREAM_ERRNOS) },
  };
}

/**
 * TAGS - the OpenAPI tags, one per first word of a command name, in the
 * order the docs show them.
 */
export const TAGS: ReadonlyArray<{ name: string; description: string }> = [
  { name: 'platform', description: 'The simulated machine (admin token): devices, DMA, page requests, SVA, traffic generators, contexts.' },
  { name: 'context', description: 'An iommufd file: `POST /v1/contexts` opens one and returns its bearer token.' },
  { name: 'object', description: 'The objects of a context, by id (`IOMMU_DESTROY`).' },
  { name: 'device', description: 'Binding a device to a context and attaching it to a page table (`iommufd_device_bind()`, `IOMMU_HWPT_ATTACH`).' },
  { name: 'ioas', description: 'I/O address spaces: map, unmap, and the memory behind them (`IOMMU_IOAS_ALLOC`, `IOMMU_IOAS_MAP`).' },
  { name: 'hwpt', description: 'Hardware page tables, fault-capable or not (`IOMMU_HWPT_ALLOC`, `IOMMU_HWPT_INVALIDATE`).' },
  { name: 'fault', description: 'Fault queues (`IOMMU_FAULT_QUEUE_ALLOC`) and their fault fd, a WebSocket stream (see /asyncapi.json).' },
  { name: 'viommu', description: 'Virtual IOMMUs (`IOMMU_VIOMMU_ALLOC`) and their cache invalidation, ARM SMMUv3.' },
  { name: 'vdevice', description: 'A device as the guest sees it on a vIOMMU, by its virtual id (`IOMMU_VDEVICE_ALLOC`).' },
  { name: 'veventq', description: 'vEVENTQs (`IOMMU_VEVENTQ_ALLOC`) and their read-only WebSocket stream (see /asyncapi.json).' },
  { name: 'healthz', description: 'Liveness.' },
];

/**
 * openApiDocument() - OpenAPI 3.1 description of the REST API, built from
 * %COMMANDS, plus the fault stream's upgrade.
 *
 * Return: the document, ready for JSON.stringify().
 */
export function openApiDocument(): JsonObject {
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const c of COMMANDS) {
    const url = openApiPath(c.url);
    const p = paths[url] ?? {};
    paths[url] = p;
    p[c.method.toLowerCase()] = operationOf(c);
  }
  paths[openApiPath(STREAM_URL)] = { get: streamOperation() };
  return {
    openapi: '3.1.0',
    info: {
      title: 'iopfd',
      version: '1',
      description:
        'IO page fault delivery: a simulated IOMMU, the Linux IOPF core and the iommufd fault queue. ' +
        'u64 values travel as `"0x…"` strings; errors are `{errno, message}`.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [
      { url: '/', description: 'The daemon serving this document' },
      {
        url: 'http://{host}:{port}',
        description: 'A daemon at its default address (--host, --port)',
        variables: { host: { default: '127.0.0.1' }, port: { default: '8080' } },
      },
    ],
    tags: TAGS.map((t) => ({ ...t })),
    paths,
    components: {
      schemas: { Error: toSchema(zErrorBody) },
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'The admin token (--admin-token), for /v1/platform' },
        contextToken: { type: 'http', scheme: 'bearer', description: 'The token returned by POST /v1/contexts' },
      },
    },
  };
}
