// The console (/ui) in a real browser: Debian's chromium driven by
// playwright-core (no browser download). The page is given the admin token,
// groups are injected while a separate client (the SDK's FaultQueue)
// answers them, and the page must show the devices, the queue and every
// group with the client's answer, and the walk of a clicked group; the
// console must have taken none of them (the device's response log holds
// exactly one response per group, with the client's code), and the page
// must log no console error and throw nothing. Its screenshot goes to a
// temporary folder; with IOPFD_SCREENSHOT=1 it refreshes docs/console.png.
// Without chromium (or playwright-core) the test is skipped, saying why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IopfdClient, type FaultGroup } from '../../clients/sdk/index.js';
import { VtdS1Builder } from '../../core/hw/vtd-s1.js';
import { HWPT_FLAGS } from '../../protocol/index.js';
import { ARGS, CHROMIUM, launcher } from './browser.js';
import { startServer, waitFor } from '../server/helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ADMIN = 'console-admin-token';
/** Groups injected; grpid % 3 === 0 is answered INVALID, the others SUCCESS. */
const N = 12;
const codeOf = (grpid: number): 'success' | 'invalid' => (grpid % 3 === 0 ? 'invalid' : 'success');

test('console: the page shows the groups a client answers, the walk of a clicked group, and takes none', async (t) => {
  const pw = await launcher();
  if ('skip' in pw) {
    t.skip(pw.skip);
    return;
  }
  const server = await startServer({ adminToken: ADMIN });
  const userDataDir = mkdtempSync(join(tmpdir(), 'iopfd-console-'));
  const sdk = new IopfdClient({ url: server.base, adminToken: ADMIN });
  const errors: string[] = [];
  let browser: import('playwright-core').BrowserContext | undefined;
  try {
    // The client: a context with nic0 attached to a fault-capable hwpt, answering through the SDK.
    const ctx = await sdk.createContext();
    const { dev_id } = await ctx.bindDevice('nic0');
    const { id: ioas } = await ctx.allocIoas();
    const fault = await ctx.allocFault();
    const { id: hwpt } = await ctx.allocHwpt({ dev_id, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID, fault_id: fault.id });
    await ctx.attach(dev_id, { pt_id: hwpt });
    const q = ctx.faultQueue(fault.id, { mode: 'json' });
    await q.connect();
    const got: FaultGroup[] = [];
    const answering = (async () => {
      for await (const g of q) {
        got.push(g);
        q.respond(g, codeOf(g.records[0]!.grpid));
      }
    })();

    browser = await pw.chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1200, height: 1000 },
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    await page.goto(`${server.base}/ui`);

    // A wrong token is refused and asked again; the right one connects.
    await page.fill('#token', 'wrong');
    await page.click('button[type=submit]');
    await page.waitForSelector('#login-error:text("wrong admin token")');
    errors.length = 0; // the browser logs the refused request (401) as a console error
    await page.fill('#token', ADMIN);
    await page.click('button[type=submit]');
    await page.waitForSelector('#status.live', { timeout: 60_000 });
    await page.waitForSelector('#devices tr[data-device="nic0"]', { timeout: 60_000 });
    // (Browser-side code is passed as strings: the tests compile without the DOM types.)
    assert.equal(await page.evaluate('localStorage.length + sessionStorage.length + document.cookie.length'), 0, 'the token is kept nowhere but memory');

    // Groups arrive while the page watches; the client answers them.
    const before = (await sdk.responses('nic0')).responses.length;
    for (let g = 1; g <= N; g++) {
      await sdk.injectPageRequest('nic0', { grpid: g, addr: `0x${(0x100000 + g * 0x1000).toString(16)}`, perm: 1 + (g % 2), last: true });
    }
    await waitFor(() => got.length >= N, 60_000, 'the client to get every group');

    // The page lists every group with the client's answer.
    // Polled with evaluate(): waitForFunction() evaluates a string, which the page's CSP forbids.
    const inPage = (expr: string, what: string) => waitFor(async () => Boolean(await page.evaluate(expr)), 60_000, what);
    await inPage(
      `document.querySelectorAll('#groups tbody tr[data-state="success"], #groups tbody tr[data-state="invalid"]').length >= ${N}`,
      'the answered groups on the page',
    );
    const rows = (await page.evaluate(
      `[...document.querySelectorAll('#groups tbody tr')].map((tr) => ({ grpid: Number(tr.dataset.grpid), state: tr.dataset.state, device: tr.dataset.device }))`,
    )) as Array<{ grpid: number; state: string; device: string }>;
    for (let g = 1; g <= N; g++) {
      const row = rows.find((r) => r.grpid === g);
      assert.ok(row, `group ${g} on the page`);
      assert.deepEqual(row, { grpid: g, state: codeOf(g), device: 'nic0' });
    }
    await page.waitForSelector(`#queues tr[data-queue="${ctx.ctx}/${fault.id}"]`, { timeout: 60_000 });
    await inPage(`(document.querySelector('#chart .u-over')?.clientWidth ?? 0) > 0`, 'the chart');

    // Click a group: the walk of its address (no stage 1 here: the IOAS maps nothing, stage 2 faults).
    await page.click('#groups tbody tr[data-grpid="5"]');
    await page.waitForSelector('#walk-result', { timeout: 60_000 });
    assert.match((await page.textContent('#walk')) ?? '', /nic0 pasid — addr 0x105000 perm -w--: context s2/);
    assert.match((await page.textContent('#walk-result')) ?? '', /faults now in stage 2: not mapped/);

    // The client got every group once; the device got one response each, the client's code.
    assert.deepEqual(
      got.map((g) => g.records[0]!.grpid).sort((a, b) => a - b),
      Array.from({ length: N }, (_, i) => i + 1),
    );
    await waitFor(async () => (await sdk.responses('nic0')).responses.length - before >= N, 60_000, 'the responses');
    const log = (await sdk.responses('nic0')).responses.slice(before);
    assert.deepEqual(
      log.map((r) => [r.grpid, r.code]).sort((a, b) => Number(a[0]) - Number(b[0])),
      Array.from({ length: N }, (_, i) => [i + 1, codeOf(i + 1)]),
    );
    const st = await ctx.faultStatus(fault.id);
    assert.deepEqual([st.counters.answered_success, st.counters.answered_invalid, st.queued, st.outstanding], [N - 4, 4, 0, 0]);

    // A nested translation on accel0 (its stage-1 table in guest RAM, answered by the
    // same client): the walk of its group shows every level and its stage-2 translation.
    const { dev_id: dev2 } = await ctx.bindDevice('accel0');
    const { id: ram } = await ctx.allocIoas();
    await ctx.map(ram, { iova: '0x0', length: '0x200000' });
    const { id: parent } = await ctx.allocHwpt({ dev_id: dev2, pt_id: ram, flags: HWPT_FLAGS.NEST_PARENT });
    const entries = new Map<bigint, bigint>();
    let nextTable = 0x100000n;
    const s1 = new VtdS1Builder(
      () => {
        nextTable += 0x1000n;
        return nextTable - 0x1000n;
      },
      (gpa) => entries.get(gpa) ?? 0n,
      (gpa, v) => void entries.set(gpa, v),
      48,
    );
    const va = 0x7f0000000000n;
    s1.map(va, 0x80000n, { write: true });
    await ctx.writeMemory(
      ram,
      [...entries].map(([gpa, v]) => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(v);
        return { iova: `0x${gpa.toString(16)}`, data: b.toString('hex') };
      }),
    );
    const { id: nested } = await ctx.allocHwpt({
      dev_id: dev2,
      pt_id: parent,
      flags: HWPT_FLAGS.FAULT_ID_VALID,
      fault_id: fault.id,
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: `0x${s1.root.toString(16)}`, addr_width: 48 },
    });
    await ctx.attach(dev2, { pt_id: nested });
    const before2 = (await sdk.responses('accel0')).responses.length;
    await sdk.injectPageRequest('accel0', { grpid: 77, addr: `0x${(va + 0x10n).toString(16)}`, perm: 1, last: true });
    await waitFor(() => got.length >= N + 1, 60_000, 'the client to get the nested group');
    await page.waitForSelector('#groups tbody tr[data-grpid="77"][data-state="success"]', { timeout: 60_000 });
    await page.click('#groups tbody tr[data-grpid="77"]');
    await page.waitForSelector('#walk-levels tr[data-level="1"]', { timeout: 60_000 });
    const levels = await page.evaluate(`[...document.querySelectorAll('#walk-levels tbody tr')].map((tr) => tr.dataset.level)`);
    assert.deepEqual(levels, ['4', '3', '2', '1', 's2']);
    assert.match((await page.textContent('#walk-result')) ?? '', /translates to hpa 0x[0-9a-f]+ now/);
    await waitFor(async () => (await sdk.responses('accel0')).responses.length > before2, 60_000, 'the nested response');
    assert.deepEqual(
      (await sdk.responses('accel0')).responses.slice(before2).map((r) => [r.grpid, r.code]),
      [[77, 'success']],
    );

    const shot = process.env.IOPFD_SCREENSHOT === '1' ? join(repo, 'docs', 'console.png') : join(userDataDir, 'console.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.deepEqual(errors, [], 'no console error or page error');
    await q.close();
    await answering;
    await ctx.release();
  } finally {
    await browser?.close();
    await server.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
});
