/**
 * fail_nth, as tools/testing/selftests/iommu/iommufd_fail_nth.c does it: run a
 * scenario with the n-th allocation failing, for every n until the scenario
 * runs through untouched. Each time, the failing command must leave no object
 * behind, and after teardown every request that needed a response got exactly
 * one and no host page stays pinned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualScheduler,
  Platform,
  IommuError,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceReplace,
  iommufdFaultAlloc,
  iommufdHwptAlloc,
  iommufdIoasAlloc,
  type IommufdCtx,
  type IommufdFault,
  type IommufdFaultConn,
} from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { respond } from './harness.js';

function snapshot(ctx: IommufdCtx): string {
  return JSON.stringify(ctx.objects().map((o) => [o.id, o.type, o.users, o.describe()]));
}

/** Runs the scenario with allocation number `nth` failing; returns whether the failure was hit. */
function runWithFailure(nth: number): boolean {
  let count = 0;
  let hit = false;
  const fail = (): boolean => {
    count++;
    if (count === nth) {
      hit = true;
      return true;
    }
    return false;
  };
  const sched = new ManualScheduler();
  const p = new Platform({
    sched,
    desc: { iommus: [{ name: 'iommu0', model: 'vtd', prq_depth: 64 }], devices: [{ name: 'd0', bdf: '00:02.0' }] },
    failAlloc: fail,
  });
  const driver: SimIommu = p.iommus.get('iommu0')!.driver;
  driver.queue.inject = { partialAlloc: fail, groupAlloc: fail };
  const fn = p.function('d0');
  const ctx = p.createContext();
  let lasts = 0;
  const T = (grpid: number, last: boolean): void => {
    if (p.injectPageRequest('d0', { grpid, addr: 0x2000n, perm: 1, last }) && last) lasts++;
  };
  let fault: IommufdFault | undefined;
  let conn: IommufdFaultConn | undefined;
  const ids: Record<string, number> = {};
  const steps: Array<() => void> = [
    () => (ids['dev'] = iommufdDeviceBind(ctx, 'd0').id),
    () => (ids['ioas'] = iommufdIoasAlloc(ctx).id),
    () => (ctx.get(ids['ioas']!, 'ioas') as ReturnType<typeof iommufdIoasAlloc>).map(0n, 0x4000n, true, true),
    () => (fault = iommufdFaultAlloc(ctx, {})),
    () => (ids['parent'] = iommufdHwptAlloc(ctx, { dev_id: ids['dev']!, pt_id: ids['ioas']!, flags: 1 }).id),
    () =>
      (ids['nested'] = iommufdHwptAlloc(ctx, {
        dev_id: ids['dev']!,
        pt_id: ids['parent']!,
        flags: 4,
        data_type: 'vtd_s1',
        data: { flags: 0, pgtbl_addr: 0n, addr_width: 48 },
        fault_id: fault!.id,
      }).id),
    () => iommufdDeviceAttach(ctx.get(ids['dev']!, 'device'), ids['nested']!),
    () => (conn = fault!.open(16, { readable() {}, expired() {}, overflow() {}, revoked() {}, kill() {} })),
    () => T(1, false),
    () => T(1, true),
    () => fault!.read(conn!),
    () => respond(fault!, [{ cookie: 1, code: 0 }], true),
    () => T(2, true),
    () => T(3, true),
    () => fault!.read(conn!),
    // An automatic paging hwpt on the IOAS: replace answers the nested attachment's groups.
    () => iommufdDeviceReplace(ctx.get(ids['dev']!, 'device'), ids['ioas']!),
  ];
  for (const step of steps) {
    const before = snapshot(ctx);
    try {
      step();
    } catch (e) {
      assert.ok(e instanceof IommuError, `unexpected ${String(e)}`);
      assert.equal(e.errno, 'ENOMEM');
      assert.equal(snapshot(ctx), before, `allocation ${nth}: the failed step left something behind`);
      break;
    }
  }
  p.releaseContext(ctx.id);
  p.shutdown();
  sched.run();
  assert.equal(fn.unexpectedResponses, 0);
  assert.equal(fn.outstandingGroups, 0, `allocation ${nth}: a group was never answered`);
  assert.equal(fn.responses.length, lasts, `allocation ${nth}: responses vs last requests`);
  assert.equal(p.frames.inUse, 0, `allocation ${nth}: host pages still pinned`);
  return hit;
}

test('fail_nth: every allocation failure unwinds cleanly and loses no response', () => {
  let n = 1;
  while (runWithFailure(n)) n++;
  // The scenario makes a few dozen allocations; make sure the loop really walked them.
  assert.ok(n > 15, `only ${n - 1} allocation sites were exercised`);
});
