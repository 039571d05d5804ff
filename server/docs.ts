/**
 * DOC: /docs
 *
 * A self-contained HTML page generated from the OpenAPI document (no CDN, no
 * script): one section per route with its summary, description, auth,
 * parameters, request body schema and responses.
 */

type Json = Record<string, unknown>;

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function schemaBlock(schema: unknown): string {
  return `<details><summary>schema</summary><pre>${esc(JSON.stringify(schema, null, 2))}</pre></details>`;
}

function operationHtml(method: string, path: string, op: Json): string {
  const security = (op['security'] as Json[] | undefined) ?? [];
  const auth = security.length === 0 ? 'none' : security.map((s) => Object.keys(s).join(' + ') || 'none').join(' or ');
  const params = (op['parameters'] as Json[] | undefined) ?? [];
  const body = (op['requestBody'] as { content?: Record<string, { schema?: unknown }> } | undefined)?.content?.['application/json']?.schema;
  const responses = Object.entries((op['responses'] as Record<string, Json> | undefined) ?? {});
  let html = `<section id="${esc(op['operationId'])}"><h2><code>${esc(method.toUpperCase())} ${esc(path)}</code></h2>`;
  html += `<p>${esc(op['summary'])}</p>`;
  if (op['description']) html += `<p class="desc">${esc(op['description'])}</p>`;
  html += `<p><b>auth:</b> ${esc(auth)}</p>`;
  if (params.length > 0) {
    html += '<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>';
    for (const p of params) {
      html += `<tr><td><code>${esc(p['name'])}</code></td><td>${esc(p['in'])}</td><td>${p['required'] ? 'yes' : 'no'}</td><td><code>${esc(JSON.stringify(p['schema']))}</code></td></tr>`;
    }
    html += '</table>';
  }
  if (body !== undefined) html += `<p><b>body</b></p>${schemaBlock(body)}`;
  html += '<table><tr><th>status</th><th>meaning</th></tr>';
  for (const [status, r] of responses) {
    const schema = (r['content'] as Record<string, { schema?: unknown }> | undefined)?.['application/json']?.schema;
    html += `<tr><td>${esc(status)}</td><td>${esc(r['description'])}${schema !== undefined ? schemaBlock(schema) : ''}</td></tr>`;
  }
  return html + '</table></section>';
}

/**
 * docsHtml() - the /docs page for an OpenAPI document.
 * @doc: the document, as openApiDocument() returns it.
 *
 * Return: a complete HTML page with a table of contents.
 */
export function docsHtml(doc: Json): string {
  const info = (doc['info'] ?? {}) as Json;
  const ops: Array<[string, string, Json]> = [];
  for (const [path, methods] of Object.entries((doc['paths'] ?? {}) as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(methods)) ops.push([method, path, op]);
  }
  const toc = ops.map(([m, p, op]) => `<li><a href="#${esc(op['operationId'])}"><code>${esc(m.toUpperCase())} ${esc(p)}</code></a> ${esc(op['summary'])}</li>`);
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    `<title>${esc(info['title'])} API</title>` +
    '<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem}' +
    'code,pre{font-family:ui-monospace,monospace}pre{background:#f5f5f5;padding:.5rem;overflow:auto}' +
    'table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}' +
    'section{border-top:1px solid #ddd;margin-top:1.5rem}.desc{white-space:pre-wrap}</style></head><body>' +
    `<h1>${esc(info['title'])} v${esc(info['version'])}</h1><p>${esc(info['description'])}</p>` +
    '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>, the streams: <a href="/asyncapi.json">/asyncapi.json</a></p>' +
    `<ul>${toc.join('')}</ul>` +
    ops.map(([m, p, op]) => operationHtml(m, p, op)).join('') +
    '</body></html>'
  );
}
