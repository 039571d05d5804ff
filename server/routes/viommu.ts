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
import {
  VEVENT_STREAM_URL,
  type VdeviceAllocBody,
  type VeventqAllocBody,
  type VeventqStatus,
  type ViommuAllocBody,
  type ViommuInvalidateBody,
} from '../../protocol/index.js';
import { ctxRoute, type RouteDeps, type RouteTable } from './types.js';

/** `:id` of an object of the context. */
interface IdParams {
  id: number;
}

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
export function viommuRoutes(_deps: RouteDeps): RouteTable {
  return {
    'viommu.alloc': ctxRoute<unknown, ViommuAllocBody>(({ context, body }) => ({ id: iommufdViommuAlloc(context.ctx, body).id })),

    'viommu.invalidate': ctxRoute<IdParams, ViommuInvalidateBody>(({ context, params, body }) => {
      const r = iommufdViommuInvalidate(context.ctx, params.id, body.data_type, body.commands);
      if (r.error) throw new IommuError(r.error.errno, r.error.message, { done: r.done });
      return { done: r.done };
    }),

    'vdevice.alloc': ctxRoute<unknown, VdeviceAllocBody>(({ context, body }) => ({ id: iommufdVdeviceAlloc(context.ctx, body).id })),

    'veventq.alloc': ctxRoute<unknown, VeventqAllocBody>(({ context, body }) => {
      const id = iommufdVeventqAlloc(context.ctx, body).id;
      return { id, stream: VEVENT_STREAM_URL.replace(':ctx', String(context.ctx.id)).replace(':id', String(id)) };
    }),

    'veventq.get': ctxRoute<IdParams>(({ context, params }) => veventqStatus(context.ctx.get<IommufdVeventq>(params.id, 'veventq'))),
  };
}
