/**
 * libiopfd's vEVENTQ fd end to end: test/native/veventq-read.c reads a real
 * vEVENTQ (arm0 behind the SMMUv3 smmu0, a nested hwpt whose stage-1 table
 * is empty, vDEVICE 0x99) through iopfd_veventq_fd(), as a VMM reads the fd
 * of IOMMU_VEVENTQ_ALLOC (iommufd_veventq_fops_read):
 *
 * - whole events, each an 8-byte header (sequence) and the 32-byte
 *   struct iommu_vevent_arm_smmuv3 whose SID is the vSID; a read too small
 *   for the next event returns 0; write() fails with EINVAL;
 * - events queued past the depth while nobody read are reported by one
 *   LOST_EVENTS header (8 bytes, no payload), and the sequence shows the gap.
 *
 * Skips (saying why) when there is no C compiler or make.
 */
import assert from 'node:assert/strict';
import { EINVAL } from 'node:constants';
import { after, before, describe, it } from 'node:test';
import { armFaultingDma, armFixture, startServer, type TestServer } from '../server/helpers.js';
import { buildNative, NATIVE_BUILD, NativeProgram } from './helpers.js';

const skip = buildNative();
/** F_TRANSLATION, the event a DMA through an empty stage-1 table raises. */
const F_TRANSLATION = 0x10;

/** One "vevent" line of veventq-read. */
interface VeventLine {
  seq: number;
  flags: number;
  id?: number;
  sid?: number;
  addr?: bigint;
}

function parse(lines: readonly string[]): VeventLine[] {
  return lines
    .filter((l) => l.startsWith('vevent '))
    .map((l) => {
      const m = /^vevent seq=(\d+) flags=(\d+)(?: id=(0x[0-9a-f]+) sid=(0x[0-9a-f]+) addr=(0x[0-9a-f]+))?$/.exec(l);
      assert.ok(m, `bad line ${l}`);
      return m[3] === undefined
        ? { seq: Number(m[1]), flags: Number(m[2]) }
        : { seq: Number(m[1]), flags: Number(m[2]), id: Number(m[3]), sid: Number(m[4]), addr: BigInt(m[5]!) };
    });
}

describe('native: libiopfd vEVENTQ fd', { skip }, () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({ stream: { heartbeatMs: 1000 } });
  });
  after(async () => {
    await server?.close();
  });

  it('reads whole events with their header and the vSID; a read too small returns 0; write() is EINVAL', async () => {
    const f = await armFixture(server, 8);
    const p = new NativeProgram(`${NATIVE_BUILD}veventq-read`, [server.base, String(f.ctx), f.token, String(f.veventq.id), '3']);
    try {
      await p.waitLines(/^ready$/);
      const addrs = [0x40_0000n, 0x40_1000n, 0x41_2000n];
      for (const a of addrs) assert.equal((await armFaultingDma(f.api, a)).status, 'invalid');
      await p.waitLines(/^done$/, 1, 30000);
      assert.equal(await p.exited, 0, p.stderr + p.lines.join('\n'));
      assert.ok(p.lines.includes('small 7 0'), p.lines.join('\n'));
      assert.ok(p.lines.includes('small 39 0'), p.lines.join('\n'));
      assert.deepEqual(
        parse(p.lines),
        addrs.map((addr, seq) => ({ seq, flags: 0, id: F_TRANSLATION, sid: 0x99, addr })),
      );
      assert.ok(p.lines.includes(`write -1 ${EINVAL}`), p.lines.join('\n'));
      // Everything was read: nothing is left queued.
      const st = await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
      assert.equal(st.queued, 0);
    } finally {
      await p.kill();
      await f.api.ok('context.destroy', 'DELETE', f.C); // arm0 is free for the next test
    }
  });

  it('events past the depth, queued with no reader: the LOST_EVENTS header (no payload) follows, the next sequence shows the gap', async () => {
    const f = await armFixture(server, 2);
    for (let i = 0; i < 4; i++) await armFaultingDma(f.api, 0x40_0000n + BigInt(i) * 0x1000n);
    const p = new NativeProgram(`${NATIVE_BUILD}veventq-read`, [server.base, String(f.ctx), f.token, String(f.veventq.id), '4']);
    try {
      await p.waitLines(/^ready$/);
      // Three records are waiting (two events and the header); the fourth comes from this DMA.
      await p.waitLines(/^vevent /, 3, 30000);
      await armFaultingDma(f.api, 0x50_0000n);
      await p.waitLines(/^done$/, 1, 30000);
      assert.equal(await p.exited, 0, p.stderr + p.lines.join('\n'));
      assert.deepEqual(parse(p.lines), [
        { seq: 0, flags: 0, id: F_TRANSLATION, sid: 0x99, addr: 0x40_0000n },
        { seq: 1, flags: 0, id: F_TRANSLATION, sid: 0x99, addr: 0x40_1000n },
        { seq: 3, flags: 1 },
        { seq: 4, flags: 0, id: F_TRANSLATION, sid: 0x99, addr: 0x50_0000n },
      ]);
    } finally {
      await p.kill();
      await f.api.ok('context.destroy', 'DELETE', f.C); // arm0 is free for the next test
    }
  });
});
