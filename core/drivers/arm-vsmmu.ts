/**
 * The SMMUv3 driver's vIOMMU half (drivers/iommu/arm/arm-smmu-v3/
 * arm-smmu-v3-iommufd.c) and its event handling (arm-smmu-v3.c
 * arm_smmu_handle_event): a vSMMU on a nest-parent stage-2 domain, nested
 * domains from validated guest STEs, the guest's invalidation commands with
 * vSID translation, the vmaster (the vSID of a device attached to a
 * translating nested domain), and the forwarding of stage-1 events to the
 * vIOMMU's vEVENTQ.
 */
import {
  STE,
  STE_0_NESTING_ALLOWED,
  STE_1_NESTING_ALLOWED,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_S1_TRANS,
  STE_EATS_ABT,
  STE_EATS_TRANS,
  EVT_ID,
  decodeEvent,
  decodeSte,
  withEventSid,
  type SmmuSte,
} from '../hw/smmuv3.js';
import { EINVAL_N, IommuError } from '../iommu/errors.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  type IommuDomain,
  IopfFaultRecord,
  type IommuDevice,
  type IommuOps,
} from '../iommu/iommu.js';
import type { IommuViommu, IommuViommuHooks, IommuViommuInvalidateResult } from '../iommu/viommu.js';
import { iommuReportDeviceFault } from '../iopf/io-pgfault.js';

const EOPNOTSUPP_N = -95;

/** The hardware the vSMMU drives: its IOTLB and the stream (SID → device) table. */
export interface ArmSmmuHw {
  readonly ops: IommuOps;
  /** Drop every cached translation of the domain with this tag. */
  invalidateTag(tag: number): void;
  /** Drop the cached translations of [addr, addr + npages pages) of a tag, every SubstreamID. */
  invalidateRange(tag: number, addr: bigint, npages: number): void;
  /** The device of a StreamID (its RID), or undefined. */
  streamDevice(sid: number): IommuDevice | undefined;
  /** The StreamID of a device. */
  sidOf(dev: IommuDevice): number;
}

/** A nested domain's guest configuration (struct arm_smmu_nested_domain). */
export interface ArmNestedCfg {
  readonly vsmmu: ArmVsmmu;
  /** The validated guest STE words (EATS cleared), and their decode. */
  readonly raw: readonly [bigint, bigint];
  readonly ste: SmmuSte;
  readonly enableAts: boolean;
}

/** struct arm_smmu_vmaster: the vSID events of a device are reported with. */
export interface ArmVmaster {
  readonly vsmmu: ArmVsmmu;
  readonly vsid: number;
}

/** SMMUv3 command opcodes (CMDQ_OP_*) a guest may pass through. */
export const CMDQ_OP = {
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
} as const;

/**
 * arm_smmu_validate_vste() - the guest STE words a nested domain may take.
 * Returns the words to install (all zero for an STE without V, EATS taken
 * out) and whether ATS is enabled. Throws EIO for bits outside
 * STRTAB_STE_{0,1}_NESTING_ALLOWED, a Config other than abort, bypass or
 * stage-1 translate, or an EATS other than abort or full translation.
 */
export function armSmmuValidateVste(w0: bigint, w1: bigint): { raw: [bigint, bigint]; enableAts: boolean } {
  if ((w0 & STE.V) === 0n) return { raw: [0n, 0n], enableAts: false };
  if ((w0 & ~STE_0_NESTING_ALLOWED) !== 0n)
    throw new IommuError('EIO', `STE word 0 sets bits 0x${(w0 & ~STE_0_NESTING_ALLOWED).toString(16)} a guest may not set`);
  if ((w1 & ~STE_1_NESTING_ALLOWED) !== 0n)
    throw new IommuError('EIO', `STE word 1 sets bits 0x${(w1 & ~STE_1_NESTING_ALLOWED).toString(16)} a guest may not set`);
  const cfg = Number((w0 & STE.CFG) >> 1n);
  if (cfg !== STE_CFG_ABORT && cfg !== STE_CFG_BYPASS && cfg !== STE_CFG_S1_TRANS)
    throw new IommuError('EIO', `STE Config ${cfg} is not abort (0), bypass (4) or stage-1 translate (5)`);
  const eats = Number((w1 & STE.EATS) >> 28n);
  if (eats !== STE_EATS_ABT && eats !== STE_EATS_TRANS) throw new IommuError('EIO', `STE EATS ${eats} is neither abort (0) nor full ATS (1)`);
  return { raw: [w0, w1 & ~STE.EATS], enableAts: cfg === STE_CFG_S1_TRANS && eats === STE_EATS_TRANS };
}

/** struct arm_vsmmu: the driver half of one arm_smmuv3 vIOMMU. */
export class ArmVsmmu implements IommuViommu {
  readonly type = 'arm_smmuv3' as const;
  hooks: IommuViommuHooks | undefined = undefined;
  /** Nested domains made on this vSMMU (their TLB entries are its VMID's). */
  readonly domains = new Set<IommuDomain>();
  /** Commands run, by opcode name (for tests and listings). */
  readonly commands = new Map<string, number>();

  constructor(
    readonly hw: ArmSmmuHw,
    readonly s2Parent: IommuDomain,
    /** Allocate the driver's nested domain with this guest configuration. */
    private readonly allocNested: (cfg: ArmNestedCfg) => IommuDomain,
  ) {}

  /** arm_vsmmu_alloc_domain_nested: flags → EOPNOTSUPP; the STE as arm_smmu_validate_vste (EIO). */
  allocDomainNested(flags: number, data: readonly [bigint, bigint]): IommuDomain {
    if (flags !== 0) throw new IommuError('EOPNOTSUPP', `flags 0x${flags.toString(16)} are not supported on an arm_smmuv3 nested hwpt`);
    const { raw, enableAts } = armSmmuValidateVste(data[0], data[1]);
    const d = this.allocNested({ vsmmu: this, raw, ste: decodeSte(raw[0], raw[1]), enableAts });
    this.domains.add(d);
    return d;
  }

  /** The nested domain is being freed. */
  forget(d: IommuDomain): void {
    this.domains.delete(d);
  }

  /**
   * arm_vsmmu_cache_invalidate / arm_vsmmu_convert_user_cmd: each command in
   * order; a vSID that names no vDEVICE or an opcode outside the accepted set
   * stops processing with EIO, and `done` counts the commands run before it.
   */
  cacheInvalidate(cmds: ReadonlyArray<readonly [bigint, bigint]>): IommuViommuInvalidateResult {
    let done = 0;
    for (const [w0, w1] of cmds) {
      const op = Number(w0 & 0xffn);
      switch (op) {
        case CMDQ_OP.TLBI_NSNH_ALL:
        case CMDQ_OP.TLBI_NH_ALL:
        case CMDQ_OP.TLBI_NH_ASID:
          // The IOTLB model is tagged by domain, not ASID: all of the VMID goes.
          for (const d of this.domains) this.hw.invalidateTag(d.id);
          break;
        case CMDQ_OP.TLBI_NH_VA:
        case CMDQ_OP.TLBI_NH_VAA: {
          const addr = w1 & ~0xfffn;
          for (const d of this.domains) this.hw.invalidateRange(d.id, addr, tlbiPages(w0, w1));
          break;
        }
        case CMDQ_OP.ATC_INV:
        case CMDQ_OP.CFGI_CD:
        case CMDQ_OP.CFGI_CD_ALL: {
          const vsid = Number(w0 >> 32n);
          if (this.hooks?.findDev(BigInt(vsid)) === undefined) {
            return { done, error: { errno: 'EIO', message: `command ${done}: vSID 0x${vsid.toString(16)} names no vDEVICE of this vIOMMU` } };
          }
          // CDs are read on every walk and no ATC is modelled: nothing cached to drop.
          break;
        }
        default:
          return { done, error: { errno: 'EIO', message: `command ${done}: opcode 0x${op.toString(16)} is not a command a guest may issue` } };
      }
      const name = Object.entries(CMDQ_OP).find(([, v]) => v === op)![0];
      this.commands.set(name, (this.commands.get(name) ?? 0) + 1);
      done++;
    }
    return { done };
  }

  free(): void {
    this.hooks = undefined;
  }
}

/**
 * tlbiPages() - the 4 KiB pages a TLBI_NH_VA/VAA covers: one when TG is 0;
 * else a range command's (NUM + 1) * 2^SCALE translation granules of TG
 * (1: 4 KiB, 2: 16 KiB, 3: 64 KiB), the SMMUv3 range (not the CPU's
 * TLBI RVA*, whose SCALE steps by 2^5): __arm_smmu_tlb_inv_range sets
 * SCALE = __ffs(num_pages) and NUM = (num_pages >> SCALE) - 1.
 */
export function tlbiPages(w0: bigint, w1: bigint): number {
  const tg = Number((w1 >> 10n) & 3n);
  if (tg === 0) return 1;
  const num = Number((w0 >> 12n) & 31n);
  const scale = Number((w0 >> 20n) & 31n);
  return (num + 1) * 2 ** scale * 4 ** (tg - 1);
}

/** Events arm_smmu_handle_event hands on (stall → IOPF, else → the vmaster's vEVENTQ). */
const FORWARDED: ReadonlySet<number> = new Set([
  EVT_ID.C_BAD_STE,
  EVT_ID.F_STREAM_DISABLED,
  EVT_ID.C_BAD_SUBSTREAMID,
  EVT_ID.C_BAD_CD,
  EVT_ID.F_TRANSLATION,
  EVT_ID.F_ADDR_SIZE,
  EVT_ID.F_ACCESS,
  EVT_ID.F_PERMISSION,
]);

/**
 * armSmmuHandleEvent() - arm_smmu_handle_event for one event record @evt.
 * A stall becomes a one-fault IOPF group (LAST_PAGE, grpid = STAG, PASID
 * from SSV/SSID, perm from RnW/InD/PnU); a non-stall event with S2 clear of a
 * device with a vmaster goes to that vIOMMU's vEVENTQ with the SID replaced
 * by the vSID. Returns 0 when handled; a negative errno otherwise (the event
 * is the host's: logged, and a stall is then the caller's to terminate).
 */
export function armSmmuHandleEvent(hw: ArmSmmuHw, vmasterOf: (dev: IommuDevice) => ArmVmaster | undefined, evt: readonly bigint[]): number {
  const e = decodeEvent(evt);
  if (!FORWARDED.has(e.id)) return EOPNOTSUPP_N;
  const dev = hw.streamDevice(e.sid);
  if (!dev) return EINVAL_N;
  if (e.stall) {
    let flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
    if (e.ssid !== undefined) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
    const perm = (e.read ? IOMMU_FAULT_PERM_READ : IOMMU_FAULT_PERM_WRITE) | (e.exec ? IOMMU_FAULT_PERM_EXEC : 0) | (e.priv ? IOMMU_FAULT_PERM_PRIV : 0);
    return iommuReportDeviceFault(dev, new IopfFaultRecord(flags, e.ssid ?? 0, e.stag, perm, e.addr));
  }
  const vmaster = vmasterOf(dev);
  if (vmaster && !e.s2) {
    const hooks = vmaster.vsmmu.hooks;
    return hooks ? hooks.reportEvent('arm_smmuv3', withEventSid(evt, vmaster.vsid)) : EOPNOTSUPP_N;
  }
  return EOPNOTSUPP_N;
}

/**
 * armSmmuAttachPrepareVmaster() - arm_smmu_attach_prepare_vmaster: the vSID
 * of @dev on the nested domain's vSMMU. A translating STE needs a vDEVICE
 * (ENOENT otherwise); abort and bypass may attach without one (no vmaster).
 */
export function armSmmuAttachPrepareVmaster(cfg: ArmNestedCfg, dev: IommuDevice): ArmVmaster | undefined {
  const vsid = cfg.vsmmu.hooks?.getVdevId(dev);
  if (vsid === undefined) {
    if (!cfg.ste.valid || cfg.ste.cfg === STE_CFG_ABORT || cfg.ste.cfg === STE_CFG_BYPASS) return undefined;
    throw new IommuError('ENOENT', `device ${dev.name} has no vDEVICE on this vIOMMU: a translating nested STE needs its vSID`);
  }
  return { vsmmu: cfg.vsmmu, vsid: Number(vsid & 0xffff_ffffn) };
}
