// /docs in a real browser: Debian's chromium driven by playwright-core (no
// browser download). At 1280 px the page does not scroll sideways; the token
// box and a try-it-out form reach the daemon: a context created from the page
// fills the context token, which the next form sends. Skipped, saying why,
// without chromium or playwright-core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARGS, CHROMIUM, launcher } from './browser.js';
import { startServer, waitFor } from '../server/helpers.js';

const ADMIN = 'docs-admin-token';

test('docs: no horizontal scroll at 1280 px; token box and try-it-out reach the daemon', async (t) => {
  const pw = await launcher();
  if ('skip' in pw) {
    t.skip(pw.skip);
    return;
  }
  const server = await startServer({ adminToken: ADMIN });
  const userDataDir = mkdtempSync(join(tmpdir(), 'iopfd-docs-'));
  const errors: string[] = [];
  let browser: import('playwright-core').BrowserContext | undefined;
  try {
    browser = await pw.chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: ARGS, viewport: { width: 1280, height: 900 } });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    await page.goto(`${server.base}/docs`);
    const widths = (await page.evaluate('[document.documentElement.scrollWidth, document.documentElement.clientWidth]')) as [number, number];
    assert.ok(widths[0] <= widths[1], `no horizontal scroll: scrollWidth ${widths[0]} > clientWidth ${widths[1]}`);
    // Open every form: still no horizontal scroll.
    await page.evaluate('for (const d of document.querySelectorAll("details")) d.open = true');
    const open = (await page.evaluate('[document.documentElement.scrollWidth, document.documentElement.clientWidth]')) as [number, number];
    assert.ok(open[0] <= open[1], `no horizontal scroll with every section open: ${open[0]} > ${open[1]}`);

    // A context from the page: its token lands in the token box.
    const create = page.locator('#context\\.create form.try');
    await create.locator('button[type=submit]').click();
    // Polled with evaluate(): waitForFunction() may evaluate its string with eval, which the page's CSP forbids.
    const inPage = (expr: string) => waitFor(async () => Boolean(await page.evaluate(expr)), 60_000, expr);
    await inPage('document.getElementById("ctx-token").value.length > 0');
    assert.match((await create.locator('.out').textContent()) ?? '', /^POST \/v1\/contexts\n201 /);
    const ctx = /"ctx": (\d+)/.exec((await create.locator('.out').textContent()) ?? '')?.[1];
    assert.ok(ctx, 'the new context id is shown');
    // The next form sends that token: listing the context's objects succeeds.
    const list = page.locator('#object\\.list form.try');
    await list.locator('input[name="path:ctx"]').fill(ctx);
    await list.locator('button[type=submit]').click();
    await inPage('document.querySelector("#object\\\\.list .out").textContent.includes("\\n200 ")');
    // An admin route without the admin token is refused, with it answered.
    const platform = page.locator('#platform\\.get form.try');
    await platform.locator('button[type=submit]').click();
    await inPage('document.querySelector("#platform\\\\.get .out").textContent.includes("\\n401 ")');
    await page.fill('#admin-token', ADMIN);
    await platform.locator('button[type=submit]').click();
    await inPage('document.querySelector("#platform\\\\.get .out").textContent.includes("\\n200 ")');
    // The browser logs the deliberate 401 as a failed resource; nothing else.
    const refused = /^console: Failed to load resource: the server responded with a status of 401/;
    assert.deepEqual(
      errors.filter((e) => !refused.test(e)),
      [],
    );
    assert.equal(errors.length, 1, 'the 401 was seen by the browser');
  } finally {
    await browser?.close();
    rmSync(userDataDir, { recursive: true, force: true });
    await server.close();
  }
});
