/**
 * DOC: vIOMMU routes (the protocol reference, docs/protocol.md: vIOMMU,
 * vDEVICE and vEVENTQ)
 *
 * IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC, IOMMU_VEVENTQ_ALLOC and its status,
 * and IOMMU_HWPT_INVALIDATE on a vIOMMU (the guest's SMMUv3 commands). The
 * nested hwpt on a vIOMMU goes through `hwpt.alloc` (routes/contexts.ts).
 */
import {
  IommuError,
  iommufdVdeviceAlloc,
  iommufdVeventqAlloc,
  iommufdViommuAlloc,
  iommufdViommuInvalidate,
  type IommufdVeventq,
} from '../../core/index.js';
import { VEVENT_STREAM_URL, type CommandName, type VeventqStatus } from '../../protocol/index.js';
import type { RouteDeps, RoutesOf } from './types.js';

/** ViommuCommand - the vIOMMU, vDEVICE and vEVENTQ commands. */
export type ViommuCommand = Extract<CommandName, `viommu.${string}` | `vdevice.${string}` | `veventq.${string}`>;

/** veventqStatus() - GET .../veventq/:id. */
function veventqStatus(q: IommufdVeventq): VeventqStatus {
  return { id: q.id, queued: q.queued, depth: q.depth, sequence: q.sequence, lost: q.counters.lost, connections: q.connections };
}

/**
 * viommuRoutes() - implementations of the viommu, vdevice and veventq commands.
 * @_deps: unused (the context comes with each request).
 *
 * Return: the route table part.
 */
export function viommuRoutes(_deps: RouteDeps): RoutesOf<ViommuCommand> {
  return {
    'viommu.alloc': ({ context, body }) => ({ id: iommufdViommuAlloc(context.ctx, body).id }),

    'viommu.invalidate': ({ context, params, body }) => {
      const r = iommufdViommuInvalidate(context.ctx, params.id, body.data_type, body.commands);
      if (r.error) throw new IommuError(r.error.errno, r.error.message, r.done);
      return { done: r.done };
    },

    'vdevice.alloc': ({ context, body }) => ({ id: iommufdVdeviceAlloc(context.ctx, body).id }),

    'veventq.alloc': ({ context, body }) => {
      const id = iommufdVeventqAlloc(context.ctx, body).id;
      return { id, stream: VEVENT_STREAM_URL.replace(':ctx', String(context.ctx.id)).replace(':id', String(id)) };
    },

    'veventq.get': ({ context, params }) => veventqStatus(context.ctx.get<IommufdVeventq>(params.id, 'veventq')),
  };
}
