/**
 * DOC: the console (/ui)
 *
 * A small page served by the daemon from files in the repository
 * (server/ui/: index.html, console.js, console.css) and the charting
 * library uPlot (MIT) from its npm package (node_modules/uplot/dist), so it
 * needs no CDN and works offline. uPlot is served from the package rather
 * than copied into the repository: one small, well-kept dependency pinned
 * by package-lock.json, its LICENSE shipped with it.
 *
 * The page itself holds no data: it asks for the admin token, keeps it in
 * the tab's memory only, and reads the observation feed and the walk
 * (server/observe.ts, docs/protocol.md 4.2) with it. The files are read
 * once, when the app is built; a strict Content-Security-Policy allows
 * nothing but the daemon itself.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

/** UI_DIR - the page's files: server/ui/ of the repository (this module is dist/server/ui.js). */
const UI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'server', 'ui');

/** What a browser may load on the console's pages: the daemon's own files and API only. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The console's files: URL → [content type, absolute path]. */
function uiFiles(): Record<string, [string, string]> {
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
  return {
    '/ui': ['text/html; charset=utf-8', join(UI_DIR, 'index.html')],
    '/ui/console.js': ['text/javascript; charset=utf-8', join(UI_DIR, 'console.js')],
    '/ui/console.css': ['text/css; charset=utf-8', join(UI_DIR, 'console.css')],
    '/ui/uplot.min.js': ['text/javascript; charset=utf-8', join(uplot, 'dist', 'uPlot.iife.min.js')],
    '/ui/uplot.min.css': ['text/css; charset=utf-8', join(uplot, 'dist', 'uPlot.min.css')],
  };
}

/**
 * registerUi() - serve the console on @app: GET /ui and its assets.
 * @app: the fastify instance.
 *
 * Throws: Error if a file is missing (an incomplete install, caught at start-up).
 */
export function registerUi(app: FastifyInstance): void {
  for (const [url, [type, path]] of Object.entries(uiFiles())) {
    const content = readFileSync(path);
    app.get(url, async (_request, reply) =>
      reply.type(type).header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').send(content),
    );
  }
}
