/**
 * The browser the browser tests drive: Debian's chromium through
 * playwright-core (which downloads no browser of its own), started with the
 * flags a closed network needs. Without either, a test skips and says why.
 */
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';

/** Chromium's flags: headless, as root, and no background connections (refused here). */
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** launcher() - playwright-core's chromium launcher, or why it cannot be had. */
export async function launcher(): Promise<{ chromium: typeof import('playwright-core').chromium } | { skip: string }> {
  if (!existsSync(CHROMIUM)) return { skip: `no browser: ${CHROMIUM} is not installed (apt-get install chromium)` };
  try {
    return { chromium: (await import('playwright-core')).chromium };
  } catch (e) {
    return { skip: `playwright-core cannot be loaded: ${(e as Error).message}` };
  }
}
