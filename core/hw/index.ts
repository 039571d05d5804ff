// Public entry of the simulated silicon (core/hw).

export { PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE_N, SparseMemory, FrameAllocator, HwOutOfFrames } from './memory.js';
export { Stage2Table, Stage2MapConflict } from './stage2.js';
export type { Stage2Entry } from './stage2.js';
export { PTE, walkVtdS1, VtdS1Builder } from './vtd-s1.js';
export type { S1Access, S1Result, VtdS1PageSize } from './vtd-s1.js';
export { Iotlb } from './iotlb.js';
export type { IotlbEntry } from './iotlb.js';
