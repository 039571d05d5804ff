/**
 * DOC: /docs
 *
 * A page generated from the OpenAPI document, served from the daemon (no
 * CDN): one section per route with its summary, description (markdown,
 * rendered by `marked` when the page is built), auth, parameters, request
 * body schema and responses, and a try-it-out form. A token box at the top
 * holds the admin and context bearer tokens for the forms, in the page's
 * memory only; a context token returned by `POST /v1/contexts` fills it.
 * The forms' script is /docs/docs.js (DOCS_SCRIPT), the one script the
 * page's content security policy (DOCS_CSP) allows.
 */
import { Marked } from 'marked';

type Json = Record<string, unknown>;

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

// Raw HTML in a description is shown as text, not passed through.
const markdown = new Marked({ async: false, gfm: true, renderer: { html: ({ text }) => esc(text) } });

/** md() - a markdown description as HTML. */
function md(text: unknown): string {
  return markdown.parse(String(text ?? '')) as string;
}

/** mdInline() - a one-line markdown text (a summary) as inline HTML. */
function mdInline(text: unknown): string {
  return markdown.parseInline(String(text ?? '')) as string;
}

function schemaBlock(schema: unknown): string {
  return `<details><summary>schema</summary><pre>${esc(JSON.stringify(schema, null, 2))}</pre></details>`;
}

/** The token a try-it-out form sends: the admin's, the context's, or none. */
function authOf(security: Json[]): 'admin' | 'ctx' | 'none' {
  const names = security.flatMap((s) => Object.keys(s));
  if (names.includes('adminToken')) return 'admin';
  if (names.includes('contextToken')) return 'ctx';
  return 'none';
}

/** tryItOut() - the form that sends one request of @op and shows the answer. */
function tryItOut(method: string, path: string, op: Json, params: Json[], hasBody: boolean): string {
  const security = (op.security as Json[] | undefined) ?? [];
  const id = esc(op.operationId);
  let html = `<form class="try" data-method="${esc(method.toUpperCase())}" data-path="${esc(path)}" data-auth="${authOf(security)}">`;
  html += '<details><summary>Try it out</summary><div class="fields">';
  for (const p of params) {
    const name = esc(p.name);
    const where = esc(p.in);
    html += `<label>${name} <small>(${where}${p.required ? ', required' : ''})</small> <input name="${where}:${name}" data-in="${where}" data-name="${name}"${p.required ? ' required' : ''}></label>`;
  }
  if (hasBody) html += `<label class="body">body (JSON) <textarea name="body" id="${id}-body" rows="4" spellcheck="false">{}</textarea></label>`;
  html += '<button type="submit">Send</button></div><pre class="out" aria-live="polite"></pre></details></form>';
  return html;
}

function operationHtml(method: string, path: string, op: Json): string {
  const security = (op.security as Json[] | undefined) ?? [];
  const auth = security.length === 0 ? 'none' : security.map((s) => Object.keys(s).join(' + ') || 'none').join(' or ');
  const params = (op.parameters as Json[] | undefined) ?? [];
  const body = op.requestBody as { required?: boolean; content?: Record<string, { schema?: unknown }> } | undefined;
  const bodySchema = body?.content?.['application/json']?.schema;
  const responses = Object.entries((op.responses as Record<string, Json> | undefined) ?? {});
  const upgrade = '101' in ((op.responses as Json | undefined) ?? {});
  let html = `<section id="${esc(op.operationId)}"><h2><code>${esc(method.toUpperCase())} ${esc(path)}</code></h2>`;
  html += `<p>${mdInline(op.summary)}</p>`;
  if (op.description) html += `<div class="desc">${md(op.description)}</div>`;
  html += `<p><b>auth:</b> ${esc(auth)}</p>`;
  if (params.length > 0) {
    html += '<table class="params"><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>';
    for (const p of params) {
      html += `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required ? 'yes' : 'no'}</td><td><code>${esc(JSON.stringify(p.schema))}</code></td></tr>`;
    }
    html += '</table>';
  }
  if (bodySchema !== undefined) html += `<p><b>body</b> (${body?.required ? 'required' : 'optional'})</p>${schemaBlock(bodySchema)}`;
  html += '<table><tr><th>status</th><th>meaning</th></tr>';
  for (const [status, r] of responses) {
    const schema = (r.content as Record<string, { schema?: unknown }> | undefined)?.['application/json']?.schema;
    html += `<tr><td>${esc(status)}</td><td>${esc(r.description)}${schema !== undefined ? schemaBlock(schema) : ''}</td></tr>`;
  }
  html += '</table>';
  html += upgrade
    ? '<p>A WebSocket: its frames are described by <a href="/asyncapi.json">/asyncapi.json</a>.</p>'
    : tryItOut(method, path, op, params, bodySchema !== undefined);
  return `${html}</section>`;
}

const STYLE =
  '*{box-sizing:border-box}body{font-family:system-ui,sans-serif;max-width:72rem;margin:auto;padding:1rem;overflow-wrap:anywhere}' +
  'code,pre,textarea,input{font-family:ui-monospace,monospace}pre{background:#f5f5f5;padding:.5rem;overflow:auto;white-space:pre-wrap}' +
  'table{border-collapse:collapse;margin:.5rem 0;width:100%;table-layout:fixed}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}' +
  'th:first-child{width:8rem}.params th:nth-child(2),.params th:nth-child(3){width:6rem}' +
  'section{border-top:1px solid #ddd;margin-top:1.5rem;scroll-margin-top:3.5rem}' +
  '#tokens{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.5rem 0;display:flex;gap:1rem;flex-wrap:wrap}' +
  '#tokens label{display:flex;gap:.3rem;align-items:center}#tokens input{width:22rem;max-width:100%}' +
  '.try .fields{display:grid;gap:.4rem;margin:.4rem 0}.try label{display:grid;gap:.2rem}.try textarea{width:100%}' +
  '.try button{justify-self:start}.out:empty{display:none}';

/** DOCS_CSP - the content security policy of /docs: its own script only, requests to this daemon only. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * DOCS_SCRIPT - /docs/docs.js: submits a try-it-out form with fetch() and
 * shows the status and the body. Path parameters fill the `{name}` segments,
 * query parameters the query string (empty ones left out), the body is the
 * textarea's JSON (sent as typed, invalid JSON included: the daemon answers
 * it), the token is the one the route's auth asks for.
 */
export const DOCS_SCRIPT = `'use strict';
(() => {
  const token = { admin: document.getElementById('admin-token'), ctx: document.getElementById('ctx-token') };
  for (const form of document.querySelectorAll('form.try')) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const out = form.querySelector('.out');
      let path = form.dataset.path;
      const query = new URLSearchParams();
      for (const input of form.querySelectorAll('input[data-in]')) {
        if (input.dataset.in === 'path') path = path.replace('{' + input.dataset.name + '}', encodeURIComponent(input.value));
        else if (input.value !== '') query.set(input.dataset.name, input.value);
      }
      const init = { method: form.dataset.method, headers: {} };
      const auth = token[form.dataset.auth];
      if (auth && auth.value !== '') init.headers.authorization = 'Bearer ' + auth.value;
      const body = form.querySelector('textarea[name=body]');
      if (body && body.value.trim() !== '') {
        init.headers['content-type'] = 'application/json';
        init.body = body.value;
      }
      const url = path + (query.size > 0 ? '?' + query : '');
      out.textContent = init.method + ' ' + url + ' …';
      try {
        const res = await fetch(url, init);
        const text = await res.text();
        let shown = text;
        try {
          const json = JSON.parse(text);
          shown = JSON.stringify(json, null, 2);
          if (json && typeof json.token === 'string' && form.dataset.path === '/v1/contexts' && init.method === 'POST') token.ctx.value = json.token;
        } catch {}
        out.textContent = init.method + ' ' + url + '\\n' + res.status + ' ' + res.statusText + '\\n' + shown;
      } catch (err) {
        out.textContent = init.method + ' ' + url + '\\nrequest failed: ' + err;
      }
    });
  }
})();
`;

/**
 * docsHtml() - the /docs page for an OpenAPI document.
 * @doc: the document, as openApiDocument() returns it.
 *
 * Return: a complete HTML page with a token box and a table of contents.
 */
export function docsHtml(doc: Json): string {
  const info = (doc.info ?? {}) as Json;
  const ops: Array<[string, string, Json]> = [];
  for (const [path, methods] of Object.entries((doc.paths ?? {}) as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(methods)) ops.push([method, path, op]);
  }
  const toc = ops.map(([m, p, op]) => `<li><a href="#${esc(op.operationId)}"><code>${esc(m.toUpperCase())} ${esc(p)}</code></a> ${mdInline(op.summary)}</li>`);
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${esc(info.title)} API</title><style>${STYLE}</style>` +
    '<script src="/docs/docs.js" defer></script></head><body>' +
    `<h1>${esc(info.title)} v${esc(info.version)}</h1>${md(info.description)}` +
    '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>, the streams: <a href="/asyncapi.json">/asyncapi.json</a></p>' +
    '<div id="tokens"><label>admin token <input id="admin-token" type="password" autocomplete="off"></label>' +
    '<label>context token <input id="ctx-token" type="password" autocomplete="off"></label></div>' +
    `<ul>${toc.join('')}</ul>` +
    ops.map(([m, p, op]) => operationHtml(m, p, op)).join('') +
    '</body></html>'
  );
}
