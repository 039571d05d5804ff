/**
 * iopfd-preload.so end to end: test/native/uapi-vmm.c, a program written
 * only against the kernel's iommufd/VFIO cdev uAPI, runs unmodified under
 * the shim against a real daemon on 127.0.0.1.
 *
 * - the kernel's ioctl rules hold (uapi-vmm --rules: extensible structs,
 *   E2BIG, ENOTTY, EOPNOTSUPP, EBUSY, the fault fd's ESPIPE and EINVAL);
 * - it serves injected groups (RID and PASID) in an epoll loop on the fd
 *   IOMMU_FAULT_QUEUE_ALLOC returned, answering some INVALID; killed while
 *   it holds groups, its context is released as the kernel releases a dead
 *   process's files: the held groups are answered INVALID, none is lost,
 *   none answered twice;
 * - the vSMMU path (uapi-vmm --arm, on the SMMUv3 device arm0): vIOMMU,
 *   vDEVICE, a nested hwpt with the guest's STE, invalidation commands on
 *   the vIOMMU, a vEVENTQ and their rules; the event of a faulting DMA is
 *   read from the fd IOMMU_VEVENTQ_ALLOC returned, with the vSID;
 * - open() fails as the kernel's would (ENOENT for a device the platform
 *   lacks), or with ECONNREFUSED when no daemon listens;
 * - every other descriptor passes through untouched.
 *
 * Skips (saying why) when there is no C compiler or make.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { armFaultingDma, deviceResponses, injectGroup, startServer, waitFor, type Json, type TestServer } from '../server/helpers.js';
import { buildNative, NATIVE_BUILD, NativeProgram, parseLoopLines } from './helpers.js';

const skip = buildNative();
const SHIM = `${NATIVE_BUILD}iopfd-preload.so`;
const VMM = `${NATIVE_BUILD}uapi-vmm`;
/** Addresses with this bit are answered INVALID by uapi-vmm. */
const INVALID_BIT = 0x100000n;

/** uapi-vmm under the shim, talking to @url. */
function vmm(url: string, args: readonly string[]): NativeProgram {
  return new NativeProgram(VMM, args, { ...process.env, LD_PRELOAD: SHIM, IOPFD_URL: url });
}

/** The platform device @name (admin route; the test daemon has no admin token). */
async function device(server: TestServer, name: string): Promise<Json> {
  const r = await server.api.get('/v1/platform');
  assert.equal(r.status, 200);
  return r.body.devices.find((d: Json) => d.name === name);
}

/** A fresh platform device for one test, so response logs do not mix. */
async function addDevice(server: TestServer, name: string): Promise<void> {
  const r = await server.api.post('/v1/platform/devices', { name });
  assert.equal(r.status, 201, r.text);
}

describe('native: iopfd-preload.so runs an unmodified kernel-uAPI program', { skip }, () => {
  let server: TestServer;

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });

  it("keeps the kernel's ioctl rules (sizes, E2BIG, ENOTTY, EOPNOTSUPP, EBUSY, the fault fd's errnos)", async () => {
    await addDevice(server, 'rules0');
    const p = vmm(server.base, ['--rules', 'rules0', '0', '-1']);
    try {
      await p.waitLines(/^ready /);
      assert.deepEqual(p.matching(/FAILED/), []);
      const ok = p.matching(/^rule \S+ ok$/);
      assert.ok(ok.length >= 20, `only ${ok.length} rules ran: ${p.lines.join('\n')}`);
      assert.equal((await device(server, 'rules0')).bound, true);
    } finally {
      await p.kill();
    }
    // The dead program's context is released (its device unbound), as the kernel's would be.
    await waitFor(async () => (await device(server, 'rules0')).bound === false, 10000, 'the context release');
  });

  it('serves groups (RID and PASID) in an epoll loop; killed, nothing is lost and nothing answered twice', async () => {
    const name = 'vmm0';
    await addDevice(server, name);
    const answerLimit = 8;
    const p = vmm(server.base, ['--pasid', '7', name, `0x${INVALID_BIT.toString(16)}`, String(answerLimit)]);
    try {
      const [ready] = await p.waitLines(/^ready /);
      const devId = Number(/dev_id=(\d+)/.exec(ready!)![1]);
      const groups = Array.from({ length: 12 }, (_, i) => ({
        grpid: i + 1,
        addr: 0x40000000n + BigInt(i) * 0x10000n + (i % 3 === 0 ? INVALID_BIT : 0n),
        pages: 1 + (i % 3),
        ...(i % 2 ? { pasid: 7 } : {}),
      }));
      for (const g of groups) await injectGroup(server.api, name, g.grpid, g.addr, g.pages, g.pasid);
      await p.waitLines(/^group /, answerLimit);
      await p.waitLines(/^held /, groups.length - answerLimit);
      const lines = parseLoopLines(p.lines);
      const key = (pasid: number | undefined, grpid: number): string => `${pasid ?? 0}:${grpid}`;
      for (const g of groups) {
        const seen = lines.filter((l) => l.grpid === g.grpid && l.pasid === (g.pasid ?? 0));
        assert.equal(seen.length, 1, `group ${key(g.pasid, g.grpid)} read ${seen.length} times`);
        assert.equal(seen[0]!.addr, g.addr);
        assert.equal(seen[0]!.pages, g.pages);
        if (seen[0]!.kind === 'group') assert.equal(seen[0]!.code, g.addr & INVALID_BIT ? 'invalid' : 'success');
      }
      assert.ok(
        p.lines.every((l) => !/^(group|held) /.test(l) || l.includes(`dev_id=${devId} `)),
        'records carry the bound dev_id',
      );
      // The answered groups reached the device with the program's codes.
      let rs: Json[] = [];
      await waitFor(
        async () => {
          rs = await deviceResponses(server.api, name);
          return rs.length >= answerLimit;
        },
        10000,
        'the answers',
      );
      assert.equal(rs.length, answerLimit, JSON.stringify(rs));

      assert.notEqual(await p.kill(), 0);
      // The watchdog releases the dead program's context: the held groups are answered INVALID.
      await waitFor(
        async () => {
          rs = await deviceResponses(server.api, name);
          return rs.length >= groups.length;
        },
        10000,
        'every group answered',
      );
      await new Promise((r) => setTimeout(r, 200)); // a duplicate would show up after the count is reached
      rs = await deviceResponses(server.api, name);
      assert.equal(rs.length, groups.length, JSON.stringify(rs));
      const got = new Map(rs.map((r) => [key(r.pasid, r.grpid), r.code as string]));
      assert.equal(got.size, groups.length, `a group answered twice: ${JSON.stringify(rs)}`);
      for (const l of lines) {
        const want = l.kind === 'held' ? 'invalid' : l.code;
        assert.equal(got.get(key(l.pasid || undefined, l.grpid)), want, `group ${key(l.pasid, l.grpid)} (${l.kind})`);
      }
      await waitFor(async () => (await device(server, name)).bound === false, 10000, 'the device unbound');
    } finally {
      await p.kill();
    }
  });

  it('nested vtd_s1 hwpt, invalidation, replace, PASID detach, unmap; the context lives while any of its files (dups too) does', async () => {
    await addDevice(server, 'life0');
    const before = server.daemon.platform.contextCount;
    const p = vmm(server.base, ['--lifecycle', 'life0', '0', '-1']);
    try {
      await p.waitLines(/^step closed-iommufd$/);
      assert.deepEqual(p.matching(/FAILED/), []);
      assert.ok(p.matching(/^rule \S+ ok$/).length >= 15, p.lines.join('\n'));
      // Its dup, the bound device and the fault fd still hold the context.
      assert.equal(server.daemon.platform.contextCount, before + 1);
      p.send('next');
      await p.waitLines(/^step closed-dup$/);
      assert.equal(server.daemon.platform.contextCount, before + 1);
      assert.equal((await device(server, 'life0')).bound, true);
      p.send('next');
      await p.waitLines(/^step closed-device$/);
      // Closing the device file unbinds it; the fault fd still holds the context.
      assert.equal((await device(server, 'life0')).bound, false);
      assert.equal(server.daemon.platform.contextCount, before + 1);
      p.send('next');
      await p.waitLines(/^step closed-fault$/);
      // Its F_DUPFD_CLOEXEC copy still holds it.
      assert.equal(server.daemon.platform.contextCount, before + 1);
      p.send('next');
      await p.waitLines(/^step closed-fcntl-dup$/);
      // The last file closed: released by the program, which is still running.
      assert.equal(server.daemon.platform.contextCount, before);
      assert.equal(p.child.exitCode, null);
      p.send('next');
      assert.equal(await p.exited, 0, p.stderr);
      assert.ok(p.lines.includes('end'));
    } finally {
      await p.kill();
    }
  });

  it('the vSMMU path: vIOMMU, vDEVICE, nested arm_smmuv3 hwpt, vIOMMU invalidation, a vEVENTQ fd that reads the event with the vSID', async () => {
    const before = server.daemon.platform.contextCount;
    const p = vmm(server.base, ['--arm', 'arm0', '0', '-1']);
    try {
      const [ready] = await p.waitLines(/^ready /, 1, 20000);
      assert.deepEqual(p.matching(/FAILED/), []);
      assert.ok(p.matching(/^rule \S+ ok$/).length >= 18, p.lines.join('\n'));
      assert.match(ready!, /viommu_id=\d+ vdevice_id=\d+ hwpt_id=\d+ veventq_id=\d+/);
      // The guest's CD table is zeroed guest RAM: the DMA's stage-1 walk finds no valid CD (C_BAD_CD, 0x0a).
      const dma = await armFaultingDma(server.api, 0x40_0000n);
      assert.equal(dma.status, 'invalid', JSON.stringify(dma));
      const [ev] = await p.waitLines(/^vevent /, 1, 20000);
      assert.match(ev!, /^vevent seq=0 flags=0 id=0xa sid=0x99 addr=0x400000 bytes=40$/);
      assert.equal(await p.exited, 0, p.stderr + p.lines.join('\n'));
      assert.deepEqual(p.matching(/FAILED/), []);
      assert.ok(p.lines.includes('rule veventq_destroy_after_close ok'));
    } finally {
      await p.kill();
    }
    // The program closed its files: the context is gone and arm0 is free.
    await waitFor(() => server.daemon.platform.contextCount === before, 10000, 'the context released');
    assert.equal((await device(server, 'arm0')).bound, false);
  });

  it('open() fails as the kernel would: ENOENT for a device the platform lacks, ECONNREFUSED without a daemon', async () => {
    const contexts = server.daemon.platform.contextCount;
    const missing = vmm(server.base, ['no-such-device', '0', '-1']);
    assert.equal(await missing.exited, 2);
    assert.match(missing.stderr, /\/dev\/vfio\/devices\/no-such-device: No such file or directory/);
    // The context its open("/dev/iommu") made went with the program.
    await waitFor(() => server.daemon.platform.contextCount <= contexts, 10000, 'the context released');

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = vmm(`http://127.0.0.1:${port}`, ['rules0', '0', '-1']);
    assert.equal(await refused.exited, 2);
    assert.match(refused.stderr, /open \/dev\/iommu: Connection refused/);
  });

  it('with an admin token on the daemon: open() checks the platform with IOPFD_ADMIN_TOKEN, else BIND says ENODEV', async () => {
    const guarded = await startServer({ adminToken: 'the-admin-token' });
    try {
      const env = { ...process.env, LD_PRELOAD: SHIM, IOPFD_URL: guarded.base };
      const unchecked = new NativeProgram(VMM, ['no-such-device', '0', '-1'], env);
      assert.equal(await unchecked.exited, 2);
      assert.match(unchecked.stderr, /VFIO_DEVICE_BIND_IOMMUFD: No such device/);
      const checked = new NativeProgram(VMM, ['no-such-device', '0', '-1'], { ...env, IOPFD_ADMIN_TOKEN: 'the-admin-token' });
      assert.equal(await checked.exited, 2);
      assert.match(checked.stderr, /\/dev\/vfio\/devices\/no-such-device: No such file or directory/);
      // Both dead programs' contexts were released.
      await waitFor(() => guarded.daemon.platform.contextCount === 0, 10000, 'the contexts released');
    } finally {
      await guarded.close();
    }
  });

  it('passes every other descriptor and ioctl through untouched', async () => {
    const p = new NativeProgram('/bin/sh', ['-c', 'printf "a b\\nc\\n" | wc -l; stty size < /dev/null 2>&1 || true; cat /dev/null; echo done'], {
      ...process.env,
      LD_PRELOAD: SHIM,
      IOPFD_URL: server.base,
    });
    assert.equal(await p.exited, 0, p.stderr);
    assert.equal(p.lines[0]!.trim(), '2');
    assert.equal(p.lines.at(-1), 'done');
    assert.equal(p.stderr.includes('iopfd-preload'), false, p.stderr);
  });
});
