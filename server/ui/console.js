// The iopfd console: reads the observation feed (GET /v1/platform/observe,
// Server-Sent Events read with fetch so that the admin token goes in the
// authorization header) and the walk route, and draws them. The token is
// kept in this closure only: no storage, no cookie, no URL.
// biome-ignore lint/suspicious/noRedundantUseStrict: index.html loads this file as a classic script (no type="module"), where the directive is not implied
'use strict';
(() => {
  const $ = (sel) => document.querySelector(sel);
  const HISTORY = 120; // chart points (seconds)
  const GROUP_ROWS = 40;
  let token = '';
  let selectedKey = '';

  // ---- chart ---------------------------------------------------------------
  const series = [[], [], [], [], []]; // t, reported/s, answered/s, p50 ms, p99 ms
  let chart;
  function makeChart() {
    const el = $('#chart');
    const opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 220,
      scales: { x: { time: true }, ms: { auto: true } },
      series: [
        {},
        { label: 'reported/s', stroke: '#3b78e7', width: 1.5 },
        { label: 'answered/s', stroke: '#137333', width: 1.5 },
        { label: 'p50 ms', stroke: '#8a5a00', scale: 'ms', width: 1 },
        { label: 'p99 ms', stroke: '#b3261e', scale: 'ms', width: 1, dash: [4, 3] },
      ],
      axes: [{}, { label: 'groups/s' }, { side: 1, scale: 'ms', label: 'latency ms', grid: { show: false } }],
    };
    chart = new window.uPlot(opts, series, el);
    window.addEventListener('resize', () => chart.setSize({ width: Math.max(320, el.clientWidth), height: 220 }));
  }

  // ---- rendering -----------------------------------------------------------
  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function bar(tr, used, total, label) {
    const td = cell(tr, '');
    const b = document.createElement('span');
    b.className = 'bar';
    const i = document.createElement('i');
    i.style.width = `${total > 0 ? Math.min(100, (100 * used) / total) : 0}%`;
    b.appendChild(i);
    td.appendChild(b);
    td.appendChild(document.createTextNode(label));
  }

  function renderSnapshot(s) {
    const t = s.totals;
    $('#totals').innerHTML = '';
    for (const [k, v] of [
      ['reported', `${t.reported_per_s}/s`],
      ['answered', `${t.answered_per_s}/s`],
      ['auto-answered', `${t.auto_answered_per_s}/s`],
      ['latency p50', `${t.latency_ms.p50} ms`],
      ['p99', `${t.latency_ms.p99} ms`],
      ['max', `${t.latency_ms.max} ms`],
    ]) {
      const span = document.createElement('span');
      span.append(`${k} `);
      const b = document.createElement('b');
      b.textContent = v;
      span.appendChild(b);
      $('#totals').appendChild(span);
    }
    $('#sampling').textContent =
      `(sampled: ${s.events.sent} events sent, ${s.events.sampled_out} left out in the last interval${s.dropped ? `; ${s.dropped} messages missed` : ''})`;

    const dev = $('#devices tbody');
    dev.innerHTML = '';
    for (const d of s.devices) {
      const tr = document.createElement('tr');
      tr.dataset.device = d.name;
      cell(tr, d.name);
      cell(tr, d.iommu);
      cell(tr, d.pri_enabled ? 'on' : 'off');
      cell(tr, d.iopf ? 'on' : 'off');
      bar(tr, d.pri_budget.in_use, d.pri_budget.total, `${d.pri_budget.in_use} / ${d.pri_budget.total}`);
      bar(tr, d.prq.used, d.prq.depth, `${d.prq.used} / ${d.prq.depth}${d.prq.overflow ? ' overflow' : ''}`);
      dev.appendChild(tr);
    }
    const qs = $('#queues tbody');
    qs.innerHTML = '';
    for (const q of s.queues) {
      const c = q.counters;
      const tr = document.createElement('tr');
      tr.dataset.queue = `${q.ctx}/${q.id}`;
      cell(tr, q.ctx);
      cell(tr, q.id);
      cell(tr, q.queued, 'num');
      cell(tr, q.outstanding, 'num');
      cell(tr, q.connections, 'num');
      cell(tr, c.reported ?? 0, 'num');
      cell(tr, (c.answered_success ?? 0) + (c.answered_invalid ?? 0), 'num');
      const auto = ['auto_detach', 'auto_replace', 'auto_unplug', 'auto_destroy', 'timeout', 'overflow'].reduce((a, k) => a + (c[k] ?? 0), 0);
      cell(tr, auto, 'num');
      qs.appendChild(tr);
    }

    series[0].push(s.t / 1000);
    series[1].push(t.reported_per_s);
    series[2].push(t.answered_per_s);
    series[3].push(t.latency_ms.count ? t.latency_ms.p50 : null);
    series[4].push(t.latency_ms.count ? t.latency_ms.p99 : null);
    if (series[0].length > HISTORY) for (const a of series) a.shift();
    if (chart) chart.setData(series);
  }

  // Recent groups: one row per sampled group, updated as its events arrive.
  const groups = new Map(); // key → {row fields}
  const groupKey = (e) => `${e.ctx}/${e.queue}/${e.device}/${e.pasid ?? '-'}/${e.grpid}`;

  function applyEvents(events) {
    for (const e of events) {
      const key = groupKey(e);
      let g = groups.get(key);
      if (e.kind === 'reported' || (e.kind === 'auto' && !g)) {
        // A new group with this key (PRG indexes are reused): it goes on top.
        groups.delete(key);
        g = { ...e, state: 'reported', id: `${key}@${e.t}` };
        groups.set(key, g);
      }
      if (!g) continue;
      if (e.kind === 'delivered') {
        g.state = 'delivered';
        g.cookie = e.cookie;
      } else if (e.kind === 'answered') {
        g.state = e.code;
        g.latency = e.latency_ms;
      } else if (e.kind === 'auto') {
        g.state = `auto ${e.cause} (${e.code})`;
        g.latency = e.latency_ms;
      }
    }
    while (groups.size > GROUP_ROWS) groups.delete(groups.keys().next().value);
    renderGroups();
  }

  function renderGroups() {
    const body = $('#groups tbody');
    body.innerHTML = '';
    for (const g of [...groups.values()].reverse()) {
      const tr = document.createElement('tr');
      tr.dataset.grpid = String(g.grpid);
      tr.dataset.device = g.device;
      tr.dataset.state = g.state;
      if (g.id === selectedKey) tr.className = 'selected';
      cell(tr, new Date(g.t).toLocaleTimeString());
      cell(tr, g.device);
      cell(tr, g.pasid ?? '—');
      cell(tr, g.grpid, 'num');
      cell(tr, g.addr, 'mono');
      cell(tr, perm(g.perm));
      cell(tr, `${g.ctx}/${g.queue}`);
      cell(tr, g.cookie ?? '', 'num');
      const stateClass = g.state === 'success' ? 'st-answered' : g.state === 'invalid' ? 'st-invalid' : g.state.startsWith('auto') ? 'st-auto' : 'st-delivered';
      cell(tr, g.state, stateClass);
      cell(tr, g.latency === undefined ? '' : `${g.latency.toFixed(2)} ms`, 'num');
      tr.addEventListener('click', () => {
        selectedKey = g.id;
        renderGroups();
        void showWalk(g);
      });
      body.appendChild(tr);
    }
  }

  function perm(p) {
    return ['r', 'w', 'x', 'p'].map((c, i) => (p & (1 << i) ? c : '-')).join('');
  }

  // ---- the walk --------------------------------------------------------------
  // VT-d first-stage entry bits, and the AArch64 descriptor bits of an SMMUv3 walk.
  const VTD_BITS = [
    ['P', 0n],
    ['RW', 1n],
    ['US', 2n],
    ['A', 5n],
    ['D', 6n],
    ['PS', 7n],
    ['XD', 63n],
  ];
  const LPAE_BITS = [
    ['V', 0n],
    ['T', 1n],
    ['AP1', 6n],
    ['AP2', 7n],
    ['AF', 10n],
    ['PXN', 53n],
    ['UXN', 54n],
  ];

  function pteBits(v, arm) {
    const n = BigInt(v);
    const bits = [];
    for (const [name, b] of arm ? LPAE_BITS : VTD_BITS) if ((n >> b) & 1n) bits.push(name);
    return bits.join(' ');
  }

  async function showWalk(g) {
    const out = $('#walk');
    out.textContent = 'walking…';
    const q = new URLSearchParams({ addr: g.addr, perm: String(g.perm) });
    if (g.pasid !== undefined) q.set('pasid', String(g.pasid));
    const r = await api(`/v1/platform/devices/${encodeURIComponent(g.device)}/walk?${q}`);
    if (!r.ok) {
      out.textContent = `walk failed: ${r.body.errno ?? r.status} ${r.body.message ?? ''}`;
      return;
    }
    const w = r.body;
    out.innerHTML = '';
    const head = document.createElement('p');
    head.className = 'mono';
    const arm = w.context === 'smmuv3';
    head.textContent =
      `${w.device} pasid ${w.pasid ?? '—'} addr ${w.addr} perm ${perm(w.perm)}: context ${w.context}` +
      (w.ste ? `, STE config ${w.ste.config} CD table ${w.ste.s1_context_ptr} (S1CDMax ${w.ste.s1_cd_max})` : '') +
      (w.s1_root ? `, stage-1 root ${w.s1_root} (${w.addr_width ?? 64 - w.t0sz}-bit)` : '');
    out.appendChild(head);
    const table = document.createElement('table');
    table.id = 'walk-levels';
    table.innerHTML = '<thead><tr><th>step</th><th>entry at (gpa)</th><th>stage 2 → hpa</th><th>entry</th><th>bits</th></tr></thead>';
    const body = document.createElement('tbody');
    if (w.cd) {
      const tr = document.createElement('tr');
      tr.dataset.level = 'cd';
      cell(tr, `CD ${w.cd.index}`);
      cell(tr, w.cd.entry_gpa, 'mono');
      cell(tr, w.cd.s2 ? s2Text(w.cd.s2) : '(no stage 2)', 'mono');
      cell(tr, w.cd.words ? w.cd.words.join(' ') : 'unreadable', 'mono');
      cell(tr, w.t0sz !== undefined ? `T0SZ ${w.t0sz}` : '');
      body.appendChild(tr);
    }
    for (const l of w.stage1) {
      const tr = document.createElement('tr');
      tr.dataset.level = String(l.level);
      cell(tr, `stage 1 level ${l.level}`);
      cell(tr, l.entry_gpa, 'mono');
      cell(tr, l.s2 ? s2Text(l.s2) : '(no stage 2)', 'mono');
      cell(tr, l.entry ?? 'unreadable', 'mono');
      cell(tr, l.entry ? pteBits(l.entry, arm) : '');
      body.appendChild(tr);
    }
    if (w.stage2) {
      const tr = document.createElement('tr');
      tr.dataset.level = 's2';
      cell(tr, 'stage 2');
      cell(tr, w.stage2.gpa, 'mono');
      cell(tr, s2Text(w.stage2), 'mono');
      cell(tr, '');
      cell(tr, '');
      body.appendChild(tr);
    }
    table.appendChild(body);
    out.appendChild(table);
    const res = document.createElement('p');
    res.id = 'walk-result';
    const rr = w.result;
    res.textContent =
      rr.kind === 'ok' ? `translates to hpa ${rr.hpa} now` : `faults now in stage ${rr.stage}: ${rr.reason}${rr.level ? ` (level ${rr.level})` : ''}`;
    out.appendChild(res);
  }

  function s2Text(s) {
    return s.hpa === undefined ? 'not mapped' : `${s.hpa} ${s.read ? 'r' : '-'}${s.write ? 'w' : '-'}`;
  }

  // ---- the daemon ------------------------------------------------------------
  function headers() {
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  async function api(path) {
    const res = await fetch(path, { headers: headers(), cache: 'no-store' });
    let body = {};
    try {
      body = await res.json();
    } catch {
      body = {};
    }
    return { ok: res.ok, status: res.status, body };
  }

  function setStatus(text, cls) {
    const s = $('#status');
    s.textContent = text;
    s.className = `status ${cls}`;
  }

  /** Read the feed; on a drop, reconnect after a pause (the feed's `retry`). */
  async function follow() {
    for (;;) {
      try {
        const res = await fetch('/v1/platform/observe', { headers: headers(), cache: 'no-store' });
        if (!res.ok || !res.body) {
          setStatus(`feed refused: ${res.status}`, 'down');
        } else {
          setStatus('live', 'live');
          await readSse(res.body);
          setStatus('feed ended; reconnecting', 'down');
        }
      } catch (e) {
        setStatus(`feed lost (${e?.message ? e.message : e}); reconnecting`, 'down');
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  async function readSse(stream) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (!data) continue;
        const msg = JSON.parse(data);
        if (event === 'snapshot') renderSnapshot(msg);
        else if (event === 'groups') applyEvents(msg.events);
      }
    }
  }

  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    token = $('#token').value;
    $('#token').value = '';
    const r = await api('/v1/platform');
    if (!r.ok) {
      $('#login-error').textContent = r.status === 401 ? 'wrong admin token' : `the daemon said ${r.status}`;
      token = '';
      return;
    }
    $('#login').hidden = true;
    $('#main').hidden = false;
    makeChart();
    void follow();
  });
})();
