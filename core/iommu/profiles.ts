/**
 * DOC: kernel profiles
 *
 * Behaviour that changed between kernel releases is one named profile per
 * release whose behaviour it reproduces. `latest` (the default) is the
 * newest kernel with its intended semantics: where the newest kernel has a
 * known bug (E1's INVALID for a non-last request, E13's replace draining the
 * new hwpt's queue), `latest` does what the fix intends and the release's
 * own profile reproduces the bug. docs/kernel-profiles.md has the table,
 * each cell naming the kernel function.
 *
 * Each switch is read where the kernel function it names lives: the VT-d
 * driver (SimIommu), the IOPF core (IopfQueue), iommufd (IommufdEnv).
 */

/**
 * struct DriverProfile - the IOMMU driver's release-dependent behaviour.
 * @vtdNoPasidInvalid: VT-d prq_event_thread() before v6.13 (intel/svm.c)
 *   treated every request without a PASID as a bad request: INVALID when
 *   last, dropped otherwise, never reported.
 */
export interface DriverProfile {
  readonly vtdNoPasidInvalid: boolean;
}

/**
 * struct IopfProfile - the generic IOPF core's release-dependent behaviour.
 * @nonLastInvalid: iommu_report_device_fault() (v6.11+) answers INVALID for
 *   a request with no handler even when it is not the last of its group.
 */
export interface IopfProfile {
  readonly nonLastInvalid: boolean;
}

/**
 * struct KernelProfile - one kernel release's behaviour.
 * @name: the `--kernel` name.
 * @replaceDrainsNew: iommufd_hwpt_replace_device() (v6.15+) auto-answers on
 *   the new hwpt's fault queue instead of the old one (E13).
 * @priAtAttach: iommufd_fault_iopf_enable() (v6.11–v6.14): PRI itself is
 *   reset and enabled at the first fault-capable attach and disabled at the
 *   last, and a PASID-enabled device without "PRG Response PASID Required"
 *   is refused with EINVAL. Otherwise (v6.15+) PRI is enabled at probe and
 *   only the iopf queue follows the attachments (intel_iommu_enable_iopf()).
 */
export interface KernelProfile extends DriverProfile, IopfProfile {
  readonly name: string;
  readonly replaceDrainsNew: boolean;
  readonly priAtAttach: boolean;
}

const LATEST: KernelProfile = Object.freeze({
  name: 'latest',
  vtdNoPasidInvalid: false,
  nonLastInvalid: false,
  replaceDrainsNew: false,
  priAtAttach: false,
});

/** KERNEL_PROFILES - every profile by name, newest first. */
export const KERNEL_PROFILES: Readonly<Record<string, KernelProfile>> = Object.freeze({
  latest: LATEST,
  'v6.15': Object.freeze({ ...LATEST, name: 'v6.15', nonLastInvalid: true, replaceDrainsNew: true }),
  'v6.14': Object.freeze({ ...LATEST, name: 'v6.14', nonLastInvalid: true, priAtAttach: true }),
  'v6.13': Object.freeze({ ...LATEST, name: 'v6.13', nonLastInvalid: true, priAtAttach: true }),
  'v6.11': Object.freeze({ ...LATEST, name: 'v6.11', nonLastInvalid: true, priAtAttach: true, vtdNoPasidInvalid: true }),
});

/** LATEST_PROFILE - the default: the newest kernel, intended semantics. */
export const LATEST_PROFILE: KernelProfile = LATEST;

/** kernelProfile() - the profile named @name, or undefined. */
export function kernelProfile(name: string): KernelProfile | undefined {
  return Object.hasOwn(KERNEL_PROFILES, name) ? KERNEL_PROFILES[name] : undefined;
}
