/**
 * DOC: the iopfd SDK
 *
 * The one client of the daemon for everything in clients/: IopfdClient and
 * IopfdContext for the REST API, FaultQueue for the fault stream, and the
 * two error classes. Wire types come from protocol/'s zod schemas.
 */
export * from './errors.js';
export * from './types.js';
export * from './client.js';
export * from './fault-queue.js';
export * from './observe.js';
export * from './vevent-queue.js';
