/**
 * DOC: the nested-translation VMM handler
 *
 * Vmm (the VMM side: objects, fault streams, grpid → cookie, responses),
 * Guest (the guest OS: RAM, vtd_s1 tables, the page request handler),
 * GuestMemory, GuestPageTable and VirtualPrq.
 */
export * from './vmm.js';
export * from './guest.js';
export * from './guest-memory.js';
export * from './guest-page-table.js';
export * from './vprq.js';
