/**
 * DOC: /v1/platform/contexts routes (extension)
 *
 * The administrator's view of the open contexts, for a device left bound by
 * a context whose token is lost: the list (bound devices, object count,
 * open fault streams, age) and the force-release, which is the owner's
 * DELETE /v1/contexts/:ctx (iommufd_fops_release) without the context's
 * token: every outstanding group answered INVALID exactly once, the
 * context's streams closed with 1001. Admin token when one is set.
 */
import { IommufdDevice, IommufdFault } from '../../core/index.js';
import type { CommandName, ContextInfo } from '../../protocol/index.js';
import type { ContextEntry } from '../contexts.js';
import type { RouteDeps, RoutesOf } from './types.js';

/** AdminCommand - the `platform.contexts.*` commands. */
export type AdminCommand = Extract<CommandName, `platform.contexts.${string}`>;

/**
 * contextInfo() - one open context as GET /v1/platform/contexts lists it.
 * @entry: the context.
 * @now: performance.now() of the request.
 */
function contextInfo(entry: ContextEntry, now: number): ContextInfo {
  const objects = entry.ctx.objects();
  let streams = 0;
  const devices: string[] = [];
  for (const o of objects) {
    if (o instanceof IommufdDevice) devices.push(o.phys.name);
    else if (o instanceof IommufdFault) streams += o.conns.size;
  }
  return { ctx: entry.ctx.id, devices, objects: objects.length, streams, age_ms: Math.max(0, Math.round(now - entry.created)) };
}

/**
 * adminRoutes() - implementations of the `platform.contexts.*` commands.
 * @deps: the context registry.
 *
 * Return: the route table part.
 */
export function adminRoutes({ contexts }: RouteDeps): RoutesOf<AdminCommand> {
  return {
    'platform.contexts.list': () => {
      const now = performance.now();
      return { contexts: [...contexts.all()].map((e) => contextInfo(e, now)) };
    },

    'platform.contexts.release': ({ params }) => contexts.release(params.ctx, 'admin'),
  };
}
