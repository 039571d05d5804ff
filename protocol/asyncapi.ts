/**
 * DOC: AsyncAPI
 *
 * The WebSocket streams as an AsyncAPI 3.1 document: the fault stream (the
 * fault fd, `iopf.v1.json` and `iopf.v1.uapi`) and the vEVENTQ stream (the
 * vEVENTQ fd, `vevent.v1.json` and `vevent.v1.uapi`), every frame of each
 * subprotocol, the query, the authentication and the close codes. The
 * frames come from the zod schemas of stream.ts and vevent.ts. Pure function; the
 * server serves it at /asyncapi.json.
 */
import type { z } from 'zod';
import { openApiPath, toSchema } from './json-schema.js';
import { RECORD_SIZE, RESPONSE_SIZE } from './records.js';
import {
  VEVENT_ARM_SMMUV3_SIZE,
  VEVENT_HEADER_SIZE,
  VEVENT_STREAM_URL,
  VEVENT_SUBPROTOCOL_JSON,
  VEVENT_SUBPROTOCOL_UAPI,
  VEVENTQ_FLAG_LOST_EVENTS,
  zVeventServerMessage,
} from './vevent.js';
import {
  CLOSE,
  CLOSE_DESCRIPTIONS,
  DEFAULT_WINDOW,
  MAX_FRAME,
  MAX_WINDOW,
  MIN_WINDOW,
  STREAM_URL,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_UAPI,
  zErrorMessage,
  zExpiredMessage,
  zFaultsMessage,
  zHelloMessage,
  zOverflowMessage,
  zRedeliveredMessage,
  zResponsesMessage,
  zResultsMessage,
  zRevokedMessage,
  zStreamQuery,
  zWriteMessage,
} from './stream.js';

type JsonObject = Record<string, unknown>;

/** frameSchema() - JSON Schema (draft-07, the AsyncAPI schema format's base) of the wire form of @schema. */
function frameSchema(schema: z.ZodType): JsonObject {
  return toSchema(schema, 'draft-7');
}

/** binarySchema() - a binary frame, its layout in @description. */
function binarySchema(description: string): JsonObject {
  return { type: 'string', format: 'binary', description };
}

/** A message of a stream: its component name, subprotocols, payload and meaning. */
interface FrameDesc {
  readonly key: string;
  readonly name: string;
  readonly title: string;
  readonly modes: readonly string[];
  readonly binary?: boolean;
  readonly payload: JsonObject;
  readonly summary: string;
}

/** Server → client frames of the fault stream. */
function faultServerFrames(): FrameDesc[] {
  const both = [SUBPROTOCOL_JSON, SUBPROTOCOL_UAPI];
  return [
    {
      key: 'faultHello',
      name: 'hello',
      title: 'hello',
      modes: both,
      payload: frameSchema(zHelloMessage),
      summary: 'First frame on every connection: the subprotocol, the fault queue id and the window.',
    },
    {
      key: 'faults',
      name: 'faults',
      title: 'faults',
      modes: [SUBPROTOCOL_JSON],
      payload: frameSchema(zFaultsMessage),
      summary: 'One or more whole groups, records as struct iommu_hwpt_pgfault field for field (`addr` a `"0x…"` string).',
    },
    {
      key: 'faultRecords',
      name: 'records',
      title: 'records (binary)',
      modes: [SUBPROTOCOL_UAPI],
      binary: true,
      payload: binarySchema(
        `A whole number of ${RECORD_SIZE}-byte struct iommu_hwpt_pgfault records, little-endian, holding whole groups: ` +
          'u32 flags, u32 dev_id, u32 pasid, u32 grpid, u32 perm, u32 __reserved (0), u64 addr, u32 length (0), u32 cookie.',
      ),
      summary: 'Whole groups as the fault fd read() returns them.',
    },
    {
      key: 'results',
      name: 'results',
      title: 'results',
      modes: [SUBPROTOCOL_JSON],
      payload: frameSchema(zResultsMessage),
      summary: 'The answer to one client `responses` frame: accepted count, refused entries with their errno.',
    },
    {
      key: 'write',
      name: 'write',
      title: 'write',
      modes: [SUBPROTOCOL_UAPI],
      payload: frameSchema(zWriteMessage),
      summary:
        "The answer to one binary frame, like write()'s return: bytes consumed; on a refused response its errno and index (`errno` and `index` go together).",
    },
    {
      key: 'faultError',
      name: 'error',
      title: 'error',
      modes: both,
      payload: frameSchema(zErrorMessage),
      summary:
        'A client frame that is not valid JSON, not a known message, or of the wrong kind for the subprotocol (EINVAL); sent once for that frame, the connection stays open.',
    },
    {
      key: 'expired',
      name: 'expired',
      title: 'expired',
      modes: both,
      payload: frameSchema(zExpiredMessage),
      summary: 'Groups answered INVALID by the response timeout.',
    },
    {
      key: 'overflow',
      name: 'overflow',
      title: 'overflow',
      modes: both,
      payload: frameSchema(zOverflowMessage),
      summary: 'New groups answered by the depth policy.',
    },
    {
      key: 'revoked',
      name: 'revoked',
      title: 'revoked',
      modes: both,
      payload: frameSchema(zRevokedMessage),
      summary: 'Extension: groups holding a cookie answered INVALID by detach, replace, hot-unplug or the fault queue destroyed.',
    },
    {
      key: 'redelivered',
      name: 'redelivered',
      title: 'redelivered',
      modes: [SUBPROTOCOL_UAPI],
      payload: frameSchema(zRedeliveredMessage),
      summary: 'Extension: the next binary frame holds these groups redelivered (a closed connection left them unanswered).',
    },
  ];
}

/** Client → server frames of the fault stream. */
function faultClientFrames(): FrameDesc[] {
  return [
    {
      key: 'responses',
      name: 'responses',
      title: 'responses',
      modes: [SUBPROTOCOL_JSON],
      payload: frameSchema(zResponsesMessage),
      summary: 'Answers by cookie, handled one by one in order; code 0/"success" or 1/"invalid".',
    },
    {
      key: 'responseRecords',
      name: 'responses',
      title: 'responses (binary)',
      modes: [SUBPROTOCOL_UAPI],
      binary: true,
      payload: binarySchema(
        `One write(): a whole number of ${RESPONSE_SIZE}-byte struct iommu_hwpt_page_response {u32 cookie; u32 code}, little-endian, ` +
          'code SUCCESS 0 or INVALID 1; processed in order, stopping at the first bad one. Not a multiple of 8 → ESPIPE.',
      ),
      summary: 'Answers as the fault fd write() takes them.',
    },
  ];
}

// The vEVENTQ stream's frames, from vevent.ts's schemas.
const [zVeventHello, zVevents, zVeventError] = zVeventServerMessage.options;

/** Server → client frames of the vEVENTQ stream. */
function veventServerFrames(): FrameDesc[] {
  const both = [VEVENT_SUBPROTOCOL_JSON, VEVENT_SUBPROTOCOL_UAPI];
  return [
    {
      key: 'veventHello',
      name: 'hello',
      title: 'hello',
      modes: both,
      payload: frameSchema(zVeventHello),
      summary: 'First frame on every connection.',
    },
    {
      key: 'vevents',
      name: 'vevents',
      title: 'vevents',
      modes: [VEVENT_SUBPROTOCOL_JSON],
      payload: frameSchema(zVevents),
      summary: 'Events consumed from the queue, oldest first, whole events only; never answered, never redelivered.',
    },
    {
      key: 'veventRecords',
      name: 'vevents',
      title: 'vevents (binary)',
      modes: [VEVENT_SUBPROTOCOL_UAPI],
      binary: true,
      payload: binarySchema(
        `Per event, little-endian: the ${VEVENT_HEADER_SIZE}-byte struct iommufd_vevent_header {u32 flags; u32 sequence}, then the ${VEVENT_ARM_SMMUV3_SIZE}-byte ` +
          `struct iommu_vevent_arm_smmuv3 {le64 evt[4]}; a LOST_EVENTS header (flags bit ${Math.log2(VEVENTQ_FLAG_LOST_EVENTS)}) has no payload. ` +
          '`sequence` counts from 0 and wraps at 2^31.',
      ),
      summary: 'Events as the vEVENTQ fd read() returns them.',
    },
    {
      key: 'veventError',
      name: 'error',
      title: 'error',
      modes: both,
      payload: frameSchema(zVeventError),
      summary: 'The answer to any client frame: EOPNOTSUPP (the vEVENTQ fd has no write); the connection stays open.',
    },
  ];
}

/** Client → server frames of the vEVENTQ stream: any, refused. */
function veventClientFrames(): FrameDesc[] {
  return [
    {
      key: 'veventClientFrame',
      name: 'any',
      title: 'any client frame (refused)',
      modes: [VEVENT_SUBPROTOCOL_JSON, VEVENT_SUBPROTOCOL_UAPI],
      payload: { description: 'Anything, text or binary: answered by one `error` frame (EOPNOTSUPP).' },
      summary: 'The stream is read-only.',
    },
  ];
}

/** messageOf() - the AsyncAPI message object of @f. */
function messageOf(f: FrameDesc): JsonObject {
  return {
    name: f.name,
    title: f.title,
    summary: f.summary,
    description: `Subprotocol${f.modes.length > 1 ? 's' : ''}: ${f.modes.map((m) => `\`${m}\``).join(', ')}; ${f.binary ? 'binary' : 'text'} frame.`,
    contentType: f.binary ? 'application/octet-stream' : 'application/json',
    payload: f.payload,
  };
}

/** closeCodesText() - the close codes as a markdown list. */
function closeCodesText(): string {
  return Object.values(CLOSE)
    .map((code) => `- ${code}: ${CLOSE_DESCRIPTIONS[code]}`)
    .join('\n');
}

/** A stream: channel key, URL, prose, frames each way. */
interface StreamDesc {
  readonly channel: string;
  readonly url: string;
  readonly title: string;
  readonly description: string;
  readonly query: JsonObject;
  readonly server: FrameDesc[];
  readonly client: FrameDesc[];
}

/** channelOf() - the channel object of @s, its messages referencing components. */
function channelOf(s: StreamDesc, idText: string): JsonObject {
  const messages: JsonObject = {};
  for (const f of [...s.server, ...s.client]) messages[f.key] = { $ref: `#/components/messages/${f.key}` };
  return {
    address: openApiPath(s.url),
    title: s.title,
    description: s.description,
    parameters: {
      ctx: { description: 'The context id (decimal).' },
      id: { description: idText },
    },
    messages,
    bindings: { ws: { method: 'GET', query: s.query, bindingVersion: '0.1.0' } },
  };
}

/** operationsOf() - the receive (server → client) and send operations of @s. */
function operationsOf(s: StreamDesc, receive: string, send: string, sendSummary: string): JsonObject {
  const refs = (frames: FrameDesc[]) => frames.map((f) => ({ $ref: `#/channels/${s.channel}/messages/${f.key}` }));
  return {
    [receive]: {
      action: 'receive',
      channel: { $ref: `#/channels/${s.channel}` },
      summary: `Frames the daemon sends on the ${s.title}.`,
      messages: refs(s.server),
    },
    [send]: {
      action: 'send',
      channel: { $ref: `#/channels/${s.channel}` },
      summary: sendSummary,
      messages: refs(s.client),
    },
  };
}

/**
 * asyncApiDocument() - AsyncAPI 3.1 description of the fault stream and the
 * vEVENTQ stream.
 *
 * Return: the document, ready for JSON.stringify().
 */
export function asyncApiDocument(): JsonObject {
  const streamQuery = frameSchema(zStreamQuery);
  const fault: StreamDesc = {
    channel: 'faultStream',
    url: STREAM_URL,
    title: 'fault stream (the fault fd)',
    description:
      `Upgrade with subprotocol \`${SUBPROTOCOL_JSON}\` (text frames, the default) or \`${SUBPROTOCOL_UAPI}\` ` +
      '(binary records and responses; hello, notices and write results stay text). Another subprotocol → 400. ' +
      `Query \`window\` (${MIN_WINDOW}..${MAX_WINDOW}, default ${DEFAULT_WINDOW}) bounds the delivered-unanswered groups ` +
      `of a connection. Whole groups only, FIFO; a frame over ${MAX_FRAME} bytes closes with ${CLOSE.TOO_BIG}. ` +
      'Groups delivered on a closed connection and still unanswered are redelivered with their cookies.\n\n' +
      'Close codes:\n' +
      closeCodesText(),
    query: streamQuery,
    server: faultServerFrames(),
    client: faultClientFrames(),
  };
  const vevent: StreamDesc = {
    channel: 'veventStream',
    url: VEVENT_STREAM_URL,
    title: 'vEVENTQ stream (the vEVENTQ fd)',
    description:
      `Upgrade with subprotocol \`${VEVENT_SUBPROTOCOL_JSON}\` (text frames, the default) or \`${VEVENT_SUBPROTOCOL_UAPI}\` ` +
      "(binary records as the kernel's read() returns them; hello and error stay text). Another subprotocol → 400. " +
      'Reading consumes events, oldest first; nothing is answered and nothing is redelivered. When `depth` events are ' +
      'queued, further ones are dropped and one LOST_EVENTS header stands for them until read. Releasing the context ' +
      `or destroying the queue closes with ${CLOSE.GOING_AWAY}.`,
    query: {
      type: 'object',
      properties: { token: { type: 'string', description: 'the context token, instead of the authorization header' } },
      additionalProperties: false,
    },
    server: veventServerFrames(),
    client: veventClientFrames(),
  };
  const messages: JsonObject = {};
  for (const f of [...fault.server, ...fault.client, ...vevent.server, ...vevent.client]) messages[f.key] = messageOf(f);
  return {
    asyncapi: '3.1.0',
    info: {
      title: 'iopfd streams',
      version: '1',
      description:
        'The WebSocket streams of iopfd: the fault fd (page requests delivered as whole groups, answered by cookie) and ' +
        'the vEVENTQ fd (SMMUv3 events, read only). The REST side is described by /openapi.json.',
      license: { name: 'MIT', url: 'https://opensource.org/license/mit' },
    },
    defaultContentType: 'application/json',
    servers: {
      daemon: {
        host: '127.0.0.1:8080',
        protocol: 'ws',
        description: 'A daemon at its default address (--host, --port)',
        security: [{ $ref: '#/components/securitySchemes/contextToken' }, { $ref: '#/components/securitySchemes/queryToken' }],
      },
    },
    channels: {
      [fault.channel]: channelOf(fault, 'The fault queue id (decimal), as IOMMU_FAULT_QUEUE_ALLOC returned it.'),
      [vevent.channel]: channelOf(vevent, 'The vEVENTQ id (decimal), as IOMMU_VEVENTQ_ALLOC returned it.'),
    },
    operations: {
      ...operationsOf(fault, 'receiveFaults', 'sendResponses', 'Answers to delivered groups, by cookie.'),
      ...operationsOf(vevent, 'receiveVevents', 'sendToVeventq', 'Nothing is accepted: every client frame gets an EOPNOTSUPP error frame.'),
    },
    components: {
      messages,
      securitySchemes: {
        contextToken: { type: 'http', scheme: 'bearer', description: 'The token returned by POST /v1/contexts' },
        queryToken: { type: 'httpApiKey', name: 'token', in: 'query', description: 'The same token as the `token` query parameter' },
      },
    },
  };
}
