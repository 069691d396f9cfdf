// siterecovery console: reads the API's queries, acts through its commands,
// follows /api/v1/stream. No framework, no build step. Every value from the
// API reaches the page as text (textContent), never as markup.
'use strict';

const state = {
  vms: [], jobs: [], hosts: [], sites: [], plans: [], pairings: [], policies: [], status: null,
  events: [], open: new Set(), fetchedAt: Date.now(), minSeq: 0,
};

// Operations that change where a VM runs or drop data get a red button.
const dangerous = new Set(['planned_failover', 'unplanned_failover', 'commit', 'disable', 'cancel_failover', 'change_recovery_point']);

const maxEvents = 200;

// ---- DOM and formatting ----------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function opLabel(op) { return op.replaceAll('_', ' '); }

function stateClass(s) {
  if (!s) return 's-idle';
  if (s === 'Protected' || s === 'Normal' || s === 'Succeeded' || s === 'Completed') return 's-ok';
  if (/Failed|Critical|ResyncRequired/.test(s)) return 's-crit';
  if (/Paused|Warning|CommitPending|Cancelled|Suspended|CleaningUp/.test(s)) return 's-warn';
  if (/InProgress|Enabling|Initial|Resynchronizing|Reverse|Disabling|Running/.test(s)) return 's-busy';
  if (/Committed/.test(s)) return 's-done';
  return 's-idle';
}

function badge(text, cls) { return h('span', { class: 'badge ' + (cls || stateClass(text)) }, text || '-'); }

function fmtSeconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '-';
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor(s % 86400 / 3600) + 'h';
}

function fmtBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function fmtTime(t) {
  if (!t) return '-';
  const d = new Date(t);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function ago(t) { return t ? fmtSeconds((Date.now() - new Date(t).getTime()) / 1000) + ' ago' : 'never'; }

function toast(msg, err) {
  const el = h('div', { class: 'toast' + (err ? ' err' : '') }, msg);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), err ? 9000 : 5000);
}

// ---- API -------------------------------------------------------------------

class APIError extends Error {
  constructor(status, code, message) { super(code + ': ' + message); this.status = status; this.code = code; }
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch('api/v1/' + path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { throw new APIError(res.status, 'bad_reply', 'the server did not answer JSON (' + res.status + ')'); }
  if (!res.ok || (data && data.error)) {
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code || String(res.status), e.message || res.statusText);
  }
  return data;
}

// ---- loading -----------------------------------------------------------------

// query reads a query once the read models hold state.minSeq (the last
// event seen or written here): read-your-writes.
function query(path) {
  if (!state.minSeq) return api(path);
  return api(path + (path.includes('?') ? '&' : '?') + 'after_seq=' + state.minSeq);
}

const loaders = {
  vms: () => query('vms'), jobs: () => query('jobs?limit=50'), hosts: () => query('hosts'), sites: () => query('sites'),
  plans: () => query('plans'), pairings: () => query('pairings'), policies: () => query('policies'), status: () => query('status'),
};

let loading = null;
let again = false;

// refresh reloads every read model; concurrent calls collapse into one more.
async function refresh() {
  if (loading) { again = true; return loading; }
  loading = (async () => {
    do {
      again = false;
      await loadAll();
    } while (again);
  })();
  try { await loading; } finally { loading = null; }
}

async function loadAll() {
  const names = Object.keys(loaders);
  const results = await Promise.allSettled(names.map((n) => loaders[n]()));
  const errors = [];
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') state[names[i]] = r.value || [];
    else errors.push(names[i] + ': ' + r.reason.message);
  });
  state.fetchedAt = Date.now();
  const banner = document.getElementById('banner');
  banner.hidden = errors.length === 0;
  banner.textContent = errors.length ? 'Could not load: ' + errors.join('; ') : '';
  render();
}

// ---- rendering ---------------------------------------------------------------

function render() {
  renderSummary();
  renderVMs();
  renderJobs();
  renderPlans();
  renderFabric();
}

function renderSummary() {
  const st = state.status;
  const el = document.getElementById('summary');
  if (!st) { el.replaceChildren(); return; }
  const kv = (label, value, cls) => h('span', { class: 'kv ' + (cls || '') }, label + ' ', h('b', {}, value));
  const byState = st.vms.by_protection_state || {};
  const byHealth = st.vms.by_health || {};
  el.replaceChildren(
    kv('VMs', st.vms.total),
    kv('protected', byState.Protected || 0),
    kv('warning', byHealth.Warning || 0, byHealth.Warning ? 'warn' : ''),
    kv('critical', byHealth.Critical || 0, byHealth.Critical ? 'bad' : ''),
    kv('hosts up', st.hosts.reachable + '/' + st.hosts.total, st.hosts.unreachable ? 'bad' : ''),
    kv('jobs running', (st.jobs && st.jobs.InProgress) || 0),
    kv('log', '#' + st.checkpoint),
  );
}

function vmMatches(vm, filter) {
  if (!filter) return true;
  const hay = [vm.name, vm.host, vm.source_host, vm.recovery_host, vm.protection_state, vm.health, vm.active_site].join(' ').toLowerCase();
  return filter.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
}

function renderVMs() {
  const filter = document.getElementById('vm-filter').value.trim();
  const vms = [...state.vms].sort((a, b) => a.name.localeCompare(b.name)).filter((vm) => vmMatches(vm, filter));
  const rows = [];
  for (const vm of vms) {
    rows.push(vmRow(vm));
    if (state.open.has(vm.name)) rows.push(vmDetail(vm));
  }
  fill(document.querySelector('#vms tbody'), rows);
  document.getElementById('vm-count').textContent = state.vms.length;
  document.getElementById('vms-empty').hidden = state.vms.length > 0;
}

function rpoNow(vm) {
  if (vm.rpo_seconds === null || vm.rpo_seconds === undefined) return null;
  return vm.rpo_seconds + (Date.now() - state.fetchedAt) / 1000;
}

function vmRow(vm) {
  const direction = vm.recovery_host
    ? [vm.source_host || vm.host, ' \u2192 ', vm.recovery_host]
    : [vm.host];
  const rpoClass = vm.health === 'Critical' ? 't-crit' : vm.health === 'Warning' ? 't-warn' : '';
  return h('tr', { class: 'vm-row' + (state.open.has(vm.name) ? ' open' : ''), 'data-vm': vm.name, 'data-state': vm.protection_state },
    h('td', { class: 'name', title: 'show details', onclick: () => toggleVM(vm.name) }, vm.name),
    h('td', {}, h('span', { class: 'mono' }, ...direction),
      vm.active_site ? h('div', { class: 'muted' }, 'active at ' + vm.active_site) : null),
    h('td', {}, h('span', { class: 'state badge ' + stateClass(vm.protection_state) }, vm.protection_state), progressOf(vm)),
    h('td', {}, vm.test_failover_state && vm.test_failover_state !== 'None' ? badge(vm.test_failover_state) : h('span', { class: 'muted' }, '-')),
    h('td', {}, h('span', { class: 'health badge ' + stateClass(vm.health) }, vm.health),
      vm.issues && vm.issues.length ? h('div', { class: 'muted' }, vm.issues.join('; ')) : null),
    h('td', { class: 'num rpo ' + rpoClass, 'data-vm': vm.name }, fmtSeconds(rpoNow(vm))),
    h('td', { class: 'num' }, vm.epoch),
    h('td', {}, timeline(vm)),
    h('td', { class: 'actions' }, (vm.allowed_operations || []).map((op) =>
      h('button', { type: 'button', class: dangerous.has(op) ? 'danger' : '', 'data-vm': vm.name, 'data-op': op,
        onclick: () => confirmVMOperation(vm, op) }, opLabel(op)))),
  );
}

function progressOf(vm) {
  const p = vm.ir_progress || vm.resync_progress;
  if (!p || !p.total_bytes || p.done_bytes >= p.total_bytes) return null;
  const pct = Math.min(100, Math.round(100 * p.done_bytes / p.total_bytes));
  const bar = h('span', {});
  bar.style.width = pct + '%';
  return h('span', { title: fmtBytes(p.done_bytes) + ' of ' + fmtBytes(p.total_bytes) },
    h('span', { class: 'progress' }, bar), h('span', { class: 'progress-label' }, pct + '%'));
}

// timeline draws the VM's recovery points on a strip from the oldest point
// (or one hour ago) to now.
function timeline(vm) {
  const points = vm.recovery_points || [];
  const strip = h('span', { class: 'timeline', title: points.length + ' recovery points' });
  const now = Date.now();
  const times = points.map((p) => new Date(p.time).getTime());
  const start = Math.min(now - 3600e3, ...times);
  const span = Math.max(now - start, 1);
  points.forEach((p, i) => {
    const chosen = p.id === vm.failover_recovery_point;
    const tick = h('span', { class: 'tick' + (p.app_consistent ? ' app' : '') + (chosen ? ' chosen' : ''),
      title: fmtTime(p.time) + (p.app_consistent ? ' (app-consistent)' : '') + ' ' + p.id });
    tick.style.left = (100 * (times[i] - start) / span).toFixed(2) + '%';
    strip.append(tick);
  });
  strip.append(h('span', { class: 'now', title: 'now' }));
  const label = points.length ? points.length + ' \u00b7 last ' + ago(vm.last_recovery_point_time) : 'none';
  return h('span', {}, strip, h('span', { class: 'timeline-label' }, label));
}

function toggleVM(name) {
  if (state.open.has(name)) state.open.delete(name); else state.open.add(name);
  renderVMs();
}

function kvTable(pairs) {
  return h('table', {}, h('tbody', {}, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== '')
    .map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))));
}

function vmDetail(vm) {
  const disks = h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Disk'), h('th', {}, 'Size'), h('th', {}, 'Image'), h('th', {}, 'Replica'))),
    h('tbody', {}, (vm.disks || []).map((d) => h('tr', {}, h('td', {}, d.name), h('td', {}, fmtBytes(d.size)),
      h('td', { class: 'mono' }, d.nbd_url || d.image || '-'), h('td', { class: 'mono' }, d.replica_image || '-')))));
  const points = [...(vm.recovery_points || [])].reverse().slice(0, 12);
  const rp = h('table', {}, h('tbody', {}, points.length ? points.map((p) => h('tr', {},
    h('td', {}, fmtTime(p.time)), h('td', { class: 'mono' }, p.id), h('td', {}, p.app_consistent ? badge('app-consistent', 's-done') : 'crash-consistent')))
    : h('tr', {}, h('td', { class: 'muted' }, 'no recovery points'))));
  const jobs = state.jobs.filter((j) => j.target_kind === 'vm' && j.target === vm.name).slice(0, 6);
  return h('tr', { class: 'detail', 'data-detail': vm.name }, h('td', { colspan: 9 }, h('div', { class: 'detail-grid' },
    h('div', {}, h('h3', {}, 'Replication'), kvTable([
      ['Cloud', vm.cloud && vm.target_cloud ? vm.cloud + ' \u2192 ' + vm.target_cloud : vm.cloud],
      ['Sites', vm.source_site && vm.target_site ? vm.source_site + ' \u2192 ' + vm.target_site : vm.source_site],
      ['Policy', vm.policy], ['Pairing', vm.pairing], ['Failover', vm.failover_mode],
      ['Last error', vm.last_error ? vm.last_error.code + ': ' + vm.last_error.message + ' (' + vm.last_error.host + ', ' + ago(vm.last_error.at) + ')' : null],
      ['Divergence', vm.divergence ? vm.divergence.blocks + ' blocks on ' + vm.divergence.host + ' kept aside' : null],
      ['Test VM', vm.test_failover ? vm.test_failover.state + ' on ' + vm.test_failover.host : null],
      ['Version', '#' + vm.version],
    ])),
    h('div', {}, h('h3', {}, 'Disks'), disks),
    h('div', {}, h('h3', {}, 'Recovery points (newest)'), rp),
    h('div', {}, h('h3', {}, 'Jobs'), jobs.length ? h('table', {}, h('tbody', {}, jobs.map((j) =>
      h('tr', {}, h('td', {}, fmtTime(j.started_at)), h('td', {}, j.operation), h('td', {}, badge(j.state))))))
      : h('p', { class: 'muted' }, 'no jobs')),
  )));
}

function jobDuration(j) {
  const end = j.ended_at ? new Date(j.ended_at).getTime() : Date.now();
  return (end - new Date(j.started_at).getTime()) / 1000;
}

function renderJobs() {
  const rows = state.jobs.map((j) => h('tr', { 'data-job': j.id, 'data-target': j.target, 'data-state': j.state },
    h('td', { title: j.started_at }, fmtTime(j.started_at)),
    h('td', { class: 'op' }, j.operation),
    h('td', {}, h('span', { class: 'muted' }, j.target_kind + ' '), j.target),
    h('td', { class: 'job-state' }, badge(j.state), (j.errors || []).length ? h('div', { class: 't-crit' }, j.errors.join('; ')) : null),
    h('td', { class: 'num' }, fmtSeconds(jobDuration(j))),
    h('td', {}, h('details', { class: 'steps' }, h('summary', {}, (j.steps || []).length + ' steps'),
      h('table', {}, h('tbody', {}, (j.steps || []).map((s) => h('tr', {},
        h('td', { class: 'num muted' }, '#' + s.seq), h('td', {}, fmtTime(s.time)), h('td', {}, s.name),
        h('td', {}, badge(s.state)), h('td', { class: 'muted' }, s.detail || ''))))))),
  ));
  fill(document.querySelector('#jobs tbody'), rows);
  document.getElementById('job-count').textContent = state.jobs.length;
  document.getElementById('jobs-empty').hidden = state.jobs.length > 0;
}

function renderPlans() {
  const rows = state.plans.map((p) => h('tr', { 'data-plan': p.name },
    h('td', { class: 'name' }, p.name),
    h('td', {}, (p.groups || []).map((g, i) => h('div', {}, h('span', { class: 'muted' }, 'group ' + (i + 1) + ': '),
      (g.vms || []).join(', '),
      g.pre_script ? h('span', { class: 'muted' }, ' \u00b7 pre ' + g.pre_script) : null,
      g.post_script ? h('span', { class: 'muted' }, ' \u00b7 post ' + g.post_script) : null,
      g.manual_action ? h('span', { class: 't-warn' }, ' \u00b7 manual: ' + g.manual_action) : null))),
    h('td', {}, badge(p.state)),
    h('td', {}, p.operation ? p.operation + (p.group ? ' (group ' + p.group + ')' : '') : '-'),
    h('td', {}, p.current_job ? [badge(p.current_job.state), ' ', h('span', { class: 'muted mono' }, p.current_job.id)] : '-'),
  ));
  fill(document.querySelector('#plans tbody'), rows);
  document.getElementById('plan-count').textContent = state.plans.length;
  document.getElementById('plans-empty').hidden = state.plans.length > 0;
}

// reachability is unknown until the control plane has heard from a host
// (or the threshold passed), then reachable or unreachable.
function reachability(host) {
  return host.reachability || (host.reachable ? 'reachable' : 'unreachable');
}

function reachDot(host) {
  return { reachable: 'ok', unknown: 'unknown' }[reachability(host)] || 'crit';
}

function renderFabric() {
  const hostRows = [...state.hosts].sort((a, b) => (a.site + a.name).localeCompare(b.site + b.name)).map((host) =>
    h('tr', { 'data-host': host.name },
      h('td', {}, host.site),
      h('td', { class: 'name' }, host.name),
      h('td', {}, h('span', { class: 'dot ' + reachDot(host) }), reachability(host)),
      h('td', { class: 'muted' }, ago(host.last_seen)),
      h('td', {}, (host.clouds || []).join(', ')),
      h('td', {}, (host.vms || []).join(', '))));
  const lonely = state.sites.filter((s) => !(s.hosts || []).length).map((s) =>
    h('tr', {}, h('td', {}, s.name), h('td', { class: 'muted', colspan: 5 }, 'no hosts')));
  fill(document.querySelector('#hosts tbody'), [...hostRows, ...lonely]);
  const policy = (name) => state.policies.find((p) => p.name === name) || {};
  fill(document.querySelector('#pairings tbody'), state.pairings.map((p) => h('tr', {},
    h('td', {}, p.source_cloud, h('span', { class: 'muted' }, ' @' + p.source_site)), h('td', {}, '\u2192'),
    h('td', {}, p.target_cloud, h('span', { class: 'muted' }, ' @' + p.target_site)),
    h('td', {}, p.policy), h('td', {}, policy(p.policy).copy_frequency || '-'), h('td', {}, policy(p.policy).retention || '-'))));
}

function renderEvents() {
  fill(document.querySelector('#events tbody'), state.events.map((e) => h('tr', { 'data-seq': e.seq },
    h('td', { class: 'num muted' }, e.seq),
    h('td', {}, fmtTime(e.at)),
    h('td', {}, h('span', { class: 'muted' }, e.kind + ' '), e.id),
    h('td', { class: 'mono' }, e.type),
    h('td', { class: 'muted mono' }, e.correlation_id || ''))));
}

// ---- actions -----------------------------------------------------------------

// operationFields are the optional parameters an operation takes.
function operationFields(vm, op) {
  const points = [...(vm.recovery_points || [])].reverse();
  const pointSelect = (required) => h('select', { name: 'recovery_point' },
    required ? null : h('option', { value: '' }, 'latest'),
    points.map((p) => h('option', { value: p.id }, fmtTime(p.time) + (p.app_consistent ? ' (app-consistent)' : '') + ' \u2014 ' + p.id)));
  switch (op) {
    case 'test_failover':
      return [h('label', {}, 'Recovery point'), pointSelect(false),
        h('label', {}, 'Test network (empty: isolated)'), h('input', { type: 'text', name: 'network' })];
    case 'unplanned_failover':
      return [h('label', {}, 'Recovery point'), pointSelect(false),
        h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'shutdown_source' }), 'try to shut down the source VM first')];
    case 'change_recovery_point':
      return [h('label', {}, 'Recovery point'), pointSelect(true)];
  }
  return [];
}

const consequences = {
  enable: 'Starts initial replication of every disk to the recovery site.',
  disable: 'Stops replication; the replica may be deleted, as the policy says.',
  test_failover: 'Starts a test copy of the VM on the recovery host; replication goes on.',
  test_cleanup: 'Deletes the test VM and its disks.',
  planned_failover: 'Shuts down the source VM, ships the last changes and starts the VM on the recovery site.',
  unplanned_failover: 'Starts the VM on the recovery site from a recovery point; changes after it are lost.',
  commit: 'Makes the failover final; other recovery points are dropped.',
  cancel_failover: 'Abandons the failover; the VM goes back to its source.',
  change_recovery_point: 'Restores the failed-over VM to another recovery point.',
  reverse: 'Starts replication back towards the former source site.',
  pause: 'Pauses replication; changes are tracked and sent on resume.',
  resume: 'Resumes replication.',
  resync: 'Compares source and replica and ships the differing blocks.',
};

function confirmVMOperation(vm, op) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = opLabel(op) + ' \u2014 ' + vm.name;
  document.getElementById('confirm-text').textContent = (consequences[op] || '') + ' Current state: ' + vm.protection_state + '.';
  document.getElementById('confirm-fields').replaceChildren(...operationFields(vm, op));
  const ok = document.getElementById('confirm-ok');
  ok.textContent = opLabel(op);
  ok.className = dangerous.has(op) ? 'primary danger' : 'primary';
  dlg.returnValue = '';
  dlg.onclose = () => {
    if (dlg.returnValue === 'ok') runVMOperation(vm.name, op, dialogValues());
  };
  dlg.showModal();
}

function dialogValues() {
  const body = {};
  for (const el of document.querySelectorAll('#confirm-fields [name]')) {
    if (el.type === 'checkbox') { if (el.checked) body[el.name] = true; } else if (el.value) body[el.name] = el.value;
  }
  return body;
}

async function runVMOperation(name, op, params) {
  try {
    const res = await api('vm/' + op, { vm: name, actor: 'console', ...params });
    state.minSeq = Math.max(state.minSeq, res.seq || 0);
    toast(opLabel(op) + ' ' + name + ': accepted' + (res.job ? ' (job ' + res.job + ')' : ''));
    await refresh();
  } catch (e) {
    toast(opLabel(op) + ' ' + name + ' refused: ' + e.message, true);
  }
}

// ---- live updates --------------------------------------------------------------

let refreshTimer = null;

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 150);
}

function setLive(on, text) {
  const el = document.getElementById('live');
  el.className = 'live ' + (on ? 'on' : 'off');
  el.textContent = text;
}

async function loadRecentEvents() {
  try {
    const evs = await api('events?limit=50');
    state.events = evs.reverse();
    renderEvents();
  } catch (e) {
    toast('event log: ' + e.message, true);
  }
}

function follow() {
  // Start right after the events loaded, so none falls in between; a
  // reconnect resumes after the last one received (Last-Event-ID).
  const from = (state.events.length ? state.events[0].seq : 0) + 1;
  const es = new EventSource('api/v1/stream?from=' + from);
  es.addEventListener('ready', () => { setLive(true, 'live'); scheduleRefresh(); });
  es.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    state.minSeq = Math.max(state.minSeq, ev.seq);
    if (state.events.length && ev.seq <= state.events[0].seq) return;
    state.events.unshift(ev);
    state.events.length = Math.min(state.events.length, maxEvents);
    renderEvents();
    scheduleRefresh();
  };
  es.addEventListener('error', (msg) => {
    if (msg.data) toast('event stream: ' + JSON.parse(msg.data).message, true);
    if (es.readyState !== EventSource.OPEN) setLive(false, 'reconnecting');
  });
}

function tick() {
  for (const cell of document.querySelectorAll('#vms td.rpo')) {
    const vm = state.vms.find((v) => v.name === cell.dataset.vm);
    if (vm) cell.textContent = fmtSeconds(rpoNow(vm));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('vm-filter').addEventListener('input', renderVMs);
  refresh();
  loadRecentEvents().then(follow);
  setInterval(tick, 1000);
  setInterval(refresh, 15000);
});
