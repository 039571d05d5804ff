/**
 * DOC: the nested-translation VMM handler
 *
 * x86 (VT-d): Vmm (the VMM side: objects, fault streams, grpid → cookie,
 * responses), Guest (the guest OS: RAM, vtd_s1 tables, the page request
 * handler), GuestPageTable and VirtualPrq. arm (SMMUv3): ArmVmm (vIOMMU,
 * vDEVICEs, vEVENTQ, stalls → guest event records, the guest's commands),
 * ArmGuest (CD tables, AArch64 tables, the event queue handler),
 * GuestArmPageTable, VirtualEventQueue and the SMMUv3 encodings. Both:
 * GuestMemory.
 */
export * from './vmm.js';
export * from './guest.js';
export * from './guest-memory.js';
export * from './guest-page-table.js';
export * from './vprq.js';
export * from './arm-vmm.js';
export * from './arm-guest.js';
export * from './arm-page-table.js';
export * from './vsmmu-evtq.js';
export * from './smmuv3-guest.js';
