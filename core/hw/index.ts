// Public entry of the simulated silicon (core/hw).

export { PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE_N, SparseMemory, FrameAllocator, HwOutOfFrames } from './memory.js';
export { Stage2Table, Stage2MapConflict } from './stage2.js';
export type { Stage2Entry } from './stage2.js';
export { PTE, walkVtdS1, VtdS1Builder } from './vtd-s1.js';
export type { S1Access, S1Result, VtdS1PageSize } from './vtd-s1.js';
export { Iotlb } from './iotlb.js';
export type { IotlbEntry } from './iotlb.js';
export { LPAE, walkArmLpae, ArmLpaeBuilder, lpaeLeaf, lpaeStartLevel } from './arm-lpae.js';
export type { LpaeAccess, LpaeResult, LpaeFaultKind, LpaePageSize } from './arm-lpae.js';
export {
  STE,
  CD,
  CD_SIZE,
  EVT_ID,
  EVT_SIZE,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_S1_TRANS,
  STE_0_NESTING_ALLOWED,
  STE_1_NESTING_ALLOWED,
  STE_EATS_ABT,
  STE_EATS_TRANS,
  decodeSte,
  encodeSte,
  decodeCd,
  encodeCd,
  encodeEvent,
  decodeEvent,
  withEventSid,
  smmuStage1,
} from './smmuv3.js';
export type { SmmuSte, SmmuCd, SmmuEvent, SmmuAccess, SmmuS1Result } from './smmuv3.js';
