/**
 * DOC: /v1/contexts routes (the protocol reference, docs/protocol.md)
 *
 * iommufd open and release, the object table, device bind and attach, IOAS
 * map/unmap and guest memory, hwpt allocation and invalidation, fault queue
 * allocation and status. Every route but create needs the context's token.
 */
import {
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdFaultAlloc,
  iommufdHwptAlloc,
  iommufdHwptInvalidate,
  iommufdIoasAlloc,
  type HwptAllocRequest,
  type IommufdCtx,
  type IommufdDevice,
  type IommufdFault,
  type IommufdIoas,
} from '../../core/index.js';
import {
  formatU64,
  hexOf,
  STREAM_URL,
  type CommandName,
  type FaultStatus,
  type HwptAllocBody,
  type ObjectList,
} from '../../protocol/index.js';
import { HttpError } from '../errors.js';
import type { ViommuCommand } from './viommu.js';
import { checkNoWrap } from './range.js';
import type { RouteDeps, RoutesOf } from './types.js';

/** The commands on contexts and their objects: every one but `platform.*` and `healthz`. */
type ContextCommand = Exclude<CommandName, `platform.${string}` | 'healthz' | ViommuCommand>;

/** The most guest memory one read returns (its hex is twice that). */
const MAX_MEMORY_READ = 1 << 20;

function ioasOf(ctx: IommufdCtx, id: number): IommufdIoas {
  return ctx.get<IommufdIoas>(id, 'ioas');
}

function deviceOf(ctx: IommufdCtx, devId: number): IommufdDevice {
  return ctx.get<IommufdDevice>(devId, 'device');
}

/** hwptRequest() - the core's IOMMU_HWPT_ALLOC request (data_type "none" is no data type). */
function hwptRequest(body: HwptAllocBody): HwptAllocRequest {
  const req: HwptAllocRequest = { dev_id: body.dev_id, pt_id: body.pt_id, flags: body.flags, __reserved: body.__reserved };
  if (body.data_type === 'vtd_s1' || body.data_type === 'arm_smmuv3') req.data_type = body.data_type;
  const d = body.data;
  if (d !== undefined) {
    if (body.data_type === 'arm_smmuv3') {
      if (d.ste === undefined || d.flags !== undefined || d.pgtbl_addr !== undefined || d.addr_width !== undefined) {
        throw new HttpError('EINVAL', 'body.data: arm_smmuv3 data is {ste: ["0x…", "0x…"]}');
      }
      req.data = { ste: d.ste };
    } else {
      if (d.flags === undefined || d.pgtbl_addr === undefined || d.addr_width === undefined || d.ste !== undefined) {
        throw new HttpError('EINVAL', 'body.data: vtd_s1 data is {flags, pgtbl_addr, addr_width}');
      }
      req.data = { flags: d.flags, pgtbl_addr: d.pgtbl_addr, addr_width: d.addr_width };
    }
  }
  if (body.fault_id !== undefined) req.fault_id = body.fault_id;
  return req;
}

/** faultStatus() - GET .../faults/:id. */
function faultStatus(fault: IommufdFault): FaultStatus {
  return {
    id: fault.id,
    queued: fault.queued,
    outstanding: fault.outstanding,
    connections: fault.conns.size,
    counters: { ...fault.counters },
  };
}

/**
 * contextRoutes() - implementations of the context, object, device, ioas,
 * hwpt and fault commands.
 * @deps: the context registry.
 *
 * Return: the route table part.
 */
export function contextRoutes({ contexts }: RouteDeps): RoutesOf<ContextCommand> {
  return {
    'context.create': () => contexts.create(),

    'context.destroy': ({ context }) => contexts.release(context.ctx.id),

    'object.list': ({ context }): ObjectList => ({
      objects: context.ctx.objects().map((o) => ({ id: o.id, type: o.type, ...o.describe() })),
    }),

    'object.destroy': ({ context, params }) => context.ctx.destroyObject(params.id),

    'device.bind': ({ context, body }) => ({ dev_id: iommufdDeviceBind(context.ctx, body.name).id }),

    'ioas.alloc': ({ context }) => ({ id: iommufdIoasAlloc(context.ctx).id }),

    'ioas.map': ({ context, params, body }) => {
      ioasOf(context.ctx, params.id).map(body.iova, body.length, body.read, body.write);
      return {};
    },

    'ioas.unmap': ({ context, params, body }) => ({
      unmapped: formatU64(ioasOf(context.ctx, params.id).unmap(body.iova, body.length)),
    }),

    'ioas.memory.write': ({ context, params, body }) => {
      const ioas = ioasOf(context.ctx, params.id);
      for (const w of body.writes) checkNoWrap(w.iova, BigInt(w.data.length));
      ioas.writeMemory(body.writes);
    },

    'ioas.memory.read': ({ context, params, body }) => {
      const ioas = ioasOf(context.ctx, params.id);
      checkNoWrap(body.iova, body.length);
      if (body.length > BigInt(MAX_MEMORY_READ)) throw new HttpError('E2BIG', `a read returns at most ${MAX_MEMORY_READ} bytes`);
      return { data: hexOf(ioas.readMemory(body.iova, Number(body.length))) };
    },

    'hwpt.alloc': ({ context, body }) => ({ id: iommufdHwptAlloc(context.ctx, hwptRequest(body)).id }),

    'hwpt.invalidate': ({ context, params, body }) => ({
      done: iommufdHwptInvalidate(context.ctx, params.id, body.entries),
    }),

    'device.attach': ({ context, params, body }) => {
      iommufdDeviceAttach(deviceOf(context.ctx, params.dev_id), body.pt_id, body.pasid);
      return {};
    },

    'device.replace': ({ context, params, body }) => {
      iommufdDeviceReplace(deviceOf(context.ctx, params.dev_id), body.pt_id, body.pasid);
      return {};
    },

    'device.detach': ({ context, params, body }) => {
      iommufdDeviceDetach(deviceOf(context.ctx, params.dev_id), body.pasid);
      return {};
    },

    'fault.alloc': ({ context, body }) => {
      const id = iommufdFaultAlloc(context.ctx, body).id;
      return { id, stream: STREAM_URL.replace(':ctx', String(context.ctx.id)).replace(':id', String(id)) };
    },

    'fault.get': ({ context, params }) => faultStatus(context.ctx.get<IommufdFault>(params.id, 'fault')),
  };
}
