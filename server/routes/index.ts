/**
 * DOC: the route table
 *
 * Every command of the protocol's %COMMANDS table has exactly one
 * implementation here, keyed by its name (a test checks both directions).
 */
import { adminRoutes } from './admin.js';
import { contextRoutes } from './contexts.js';
import { platformRoutes } from './platform.js';
import type { RouteDeps, RouteTable } from './types.js';
import { viommuRoutes } from './viommu.js';

/**
 * routeTable() - the implementation of every command.
 * @deps: what the implementations work on.
 *
 * Return: implementations by command name.
 */
export function routeTable(deps: RouteDeps): RouteTable {
  return {
    ...platformRoutes(deps),
    ...adminRoutes(deps),
    ...contextRoutes(deps),
    ...viommuRoutes(deps),
    healthz: () => ({ status: 'ok' }),
  };
}
