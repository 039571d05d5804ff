/**
 * DOC: protocol - the iopfd wire contract
 *
 * Everything shared by the daemon and its clients: errnos, wire scalars,
 * fault fd record layouts, stream messages and close codes, REST schemas and
 * the command table, JSON Schema/OpenAPI/AsyncAPI generation. Depends on zod only.
 */
export * from './errno.js';
export * from './u64.js';
export * from './records.js';
export * from './stream.js';
export * from './stream-codec.js';
export * from './schemas.js';
export * from './zod-errors.js';
export * from './json-schema.js';
export * from './vevent.js';
export * from './asyncapi.js';
