// Switchyard's dashboard: reads the control plane's JSON API every second and
// draws three pages (Overview, Canaries, Envoys). The API token lives in this
// tab's sessionStorage and goes only into the Authorization header. Every value
// from the API becomes text (textContent / createTextNode), never HTML.
'use strict';

const TOKEN_KEY = 'switchyard.token';
const POLL_MS = 1000;
const PAGES = ['overview', 'canaries', 'envoys'];

const state = {
  me: null, // {name, role, authenticated}
  status: null, resources: [], history: [], canaries: [],
  series: {}, // canary name -> [{t, canary: {requests, errors}, stable: {...}}] (GET .../series)
  choice: {}, // "ve/app" -> the deployment picked in its release form
  busy: false, // an action is under way
  inflight: false, again: false, // a round of reads is under way / another is wanted
  drawn: '', // what the view was last drawn from (redraw only on change)
  timer: null,
};

// ------------------------------------------------------------------ DOM helpers

/** An element with attributes (`on*` are listeners) and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function $(id) { return document.getElementById(id); }

function text(v) {
  if (v === undefined || v === null) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function ago(unixMs) {
  if (!unixMs) return '—';
  const s = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function pct(x) { return (100 * x).toFixed(2) + '%'; }

function banner(message, kind) {
  const b = $('banner');
  b.textContent = message || '';
  b.className = kind || '';
  b.hidden = !message;
}

// ------------------------------------------------------------------ the API

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** One API call with the session's token; JSON in and out; errors as ApiError. */
async function api(method, path, body) {
  const headers = { 'Authorization': 'Bearer ' + token(), 'Accept': 'application/json' };
  // same-origin (the default): an API with --api-client-ca gets the browser's
  // client certificate. The API sets and reads no cookies.
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    throw new ApiError(r.status, data && data.error, (data && data.message) || ('HTTP ' + r.status));
  }
  return data;
}

function can(role) {
  const mine = state.me && state.me.role;
  if (role === 'release') return mine === 'release' || mine === 'admin';
  return mine === role;
}

// ------------------------------------------------------------------ sign-in

async function signIn() {
  const input = $('token');
  const value = input.value.trim();
  input.value = '';
  if (!value) { banner('Paste an API token first.', 'error'); return; }
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    state.me = await api('GET', '/v1/whoami');
    banner('');
    start();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.me = null;
    banner(e.status === 401 ? 'That token is not valid here (mistyped, revoked, or of another control plane).'
      : 'Sign-in failed: ' + e.message, 'error');
    showSignIn();
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  clearTimeout(state.timer);
  state.timer = null;
  state.drawn = '';
  banner(message || '', message ? 'error' : '');
  showSignIn();
}

function showSignIn() {
  $('sign-in').hidden = false;
  $('view').hidden = true;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('view').replaceChildren();
  $('token').focus();
}

function start() {
  $('sign-in').hidden = true;
  $('view').hidden = false;
  $('nav').hidden = false;
  $('who').hidden = false;
  const me = state.me;
  $('who-text').textContent = me.authenticated ? 'signed in as ' + me.name + ' (' + me.role + ')'
    : 'the API runs without tokens (admin)';
  poll();
}

// ------------------------------------------------------------------ polling

/** One round of reads, then the next in POLL_MS; one round at a time (a call
 * while one runs asks for another right after it). */
async function poll() {
  clearTimeout(state.timer);
  if (state.inflight) { state.again = true; return; }
  state.inflight = true;
  let signedOut = false;
  try {
    const [status, resources, history, canaries] = await Promise.all([
      api('GET', '/v1/status'), api('GET', '/v1/resources'),
      api('GET', '/v1/history'), api('GET', '/v1/canaries')]);
    state.status = status;
    state.resources = resources.resources || [];
    state.history = history.history || [];
    state.canaries = canaries.canaries || [];
    if (page() === 'canaries') await loadSeries(state.canaries);
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString() +
      ' · config version ' + text(status.version);
    draw();
  } catch (e) {
    if (e.status === 401) signedOut = true;
    else $('updated').textContent = 'update failed: ' + e.message + ' (retrying)';
  }
  state.inflight = false;
  if (signedOut) { signOut('The token is no longer valid: sign in again.'); return; }
  if (token()) state.timer = setTimeout(poll, state.again ? 0 : POLL_MS);
  state.again = false;
}

/** Each rollout's cumulative LRS counts over time, sampled by the control
 * plane once a second from the rollout's start (the plots' data). */
async function loadSeries(canaries) {
  const answers = await Promise.all(canaries.map((c) =>
    api('GET', '/v1/canaries/' + encodeURIComponent(c.name) + '/series')));
  state.series = {};
  for (const a of answers) {
    state.series[a.name] = (a.samples || []).map((x) => ({ t: x.atUnixMs, canary: x.canary, stable: x.stable }));
  }
}

function page() {
  const p = (location.hash || '#overview').slice(1);
  return PAGES.includes(p) ? p : 'overview';
}

/** Draws the current page when its data changed (not while a form has focus). */
function draw(force) {
  if (!state.status) return;
  const view = $('view');
  const focused = document.activeElement;
  if (!force && focused && view.contains(focused) && ['SELECT', 'INPUT'].includes(focused.tagName)) return;
  const p = page();
  const key = p + JSON.stringify(p === 'canaries' ? [state.canaries, Object.keys(state.series).length]
    : p === 'envoys' ? [state.status.envoys, state.status.pulling, state.status.replicas, state.status.tlsRefused]
      : [state.status.releases, state.resources, state.history]) + state.busy;
  for (const name of PAGES) $('nav-' + name).className = name === p ? 'active' : '';
  // The Canaries page redraws every tick: its plots move with time.
  if (!force && key === state.drawn && p !== 'canaries' && p !== 'envoys') return;
  state.drawn = key;
  const content = p === 'canaries' ? canariesPage() : p === 'envoys' ? envoysPage() : overviewPage();
  view.replaceChildren(content);
  view.dataset.page = p;
}

// ------------------------------------------------------------------ actions

/** A change through the API, then (like the CLI) the wait until it is live. */
async function act(what, method, path, body) {
  if (state.busy) return;
  state.busy = true;
  banner(what + '…', '');
  try {
    const answer = await api(method, path, body);
    let live = '';
    if (answer && answer.generation !== undefined) {
      const l = await api('GET', '/v1/live?generation=' + encodeURIComponent(answer.generation) + '&timeoutMs=30000');
      live = ' — live on ' + l.live + '/' + l.connected + ' Envoys';
    }
    banner(what + ': done' + live, 'ok');
  } catch (e) {
    banner(what + ' failed: ' + e.message, 'error');
  } finally {
    state.busy = false;
    state.drawn = '';
    poll();
  }
}

// ------------------------------------------------------------------ Overview

function byKind(kind) { return state.resources.filter((r) => r.kind === kind); }

function varsList(vars) {
  const entries = Object.entries(vars || {});
  if (!entries.length) return h('span', { class: 'muted' }, 'no vars');
  return entries.map(([k, v]) => h('span', { class: 'chip var', 'data-var': k }, k + ' = ' + text(v)));
}

function overviewPage() {
  const envs = byKind('Environment');
  const ves = byKind('VirtualEnvironment');
  const releases = Object.fromEntries((state.status.releases || []).map((r) => [r.virtualEnv, r]));
  const root = h('div', { id: 'overview' });
  root.appendChild(h('h2', {}, 'Environments'));
  for (const env of envs) {
    const name = env.metadata.name;
    const card = h('div', { class: 'card env', 'data-env': name },
      h('h3', {}, 'Environment ', h('code', {}, name), ' ',
        h('span', { class: 'muted' }, '/' + text(env.spec.subPath) +
          (env.spec.defaultVirtualEnvironment ? ' · default VE ' + env.spec.defaultVirtualEnvironment : ''))),
      h('div', {}, varsList(env.vars)));
    for (const ve of ves.filter((v) => v.spec.environment === name)) {
      card.appendChild(veBlock(ve, releases[ve.metadata.name]));
    }
    root.appendChild(card);
  }
  root.appendChild(h('h2', {}, 'AppDeployments'));
  root.appendChild(deploymentsTable());
  return root;
}

function veBlock(ve, release) {
  const name = ve.metadata.name;
  const apps = (release && release.apps) || (ve.spec.release && ve.spec.release.apps) || {};
  const block = h('div', { class: 've', 'data-ve': name },
    h('h3', {}, 'VE ', h('code', {}, name), ' ',
      h('span', { class: 'muted' }, 'release ' + text(release && release.id))),
    h('div', {}, varsList(ve.vars)));
  const table = h('table', {}, h('tr', {}, h('th', {}, 'app'), h('th', {}, 'released deployment'),
    can('release') ? h('th', {}, 'actions') : null));
  for (const [app, deployment] of Object.entries(apps)) {
    table.appendChild(h('tr', { 'data-app': app },
      h('td', {}, app),
      h('td', { class: 'released', 'data-release': name + '/' + app }, deployment),
      can('release') ? h('td', {}, releaseForm(name, app, deployment)) : null));
  }
  block.appendChild(table);
  const records = state.history.filter((r) => r.virtualEnv === name).slice(-8).reverse();
  if (records.length) {
    const hist = h('table', { class: 'history' },
      h('tr', {}, h('th', {}, 'when'), h('th', {}, 'release'), h('th', {}, 'change'), h('th', {}, 'who')));
    for (const r of records) {
      hist.appendChild(h('tr', {},
        h('td', { class: 'mono' }, r.at), h('td', { class: 'mono' }, r.id),
        h('td', {}, r.action + ' ' + r.app + ': ' + text(r.previous) + ' → ' + text(r.deployment)),
        h('td', {}, r.who)));
    }
    block.appendChild(h('details', { open: '' }, h('summary', {}, 'history'), hist));
  }
  return block;
}

function releaseForm(ve, app, current) {
  const key = ve + '/' + app;
  const options = byKind('AppDeployment').filter((d) => d.spec.app === app).map((d) => d.metadata.name);
  const picked = state.choice[key] && options.includes(state.choice[key]) ? state.choice[key]
    : options.find((o) => o !== current) || current;
  const select = h('select', {
    'data-release-select': key,
    onchange: (e) => { state.choice[key] = e.target.value; },
  }, options.map((o) => h('option', o === picked ? { value: o, selected: '' } : { value: o }, o)));
  state.choice[key] = picked;
  return h('div', { class: 'actions' }, select,
    h('button', {
      type: 'button', 'data-action': 'release', 'data-target': key,
      onclick: () => act('release ' + state.choice[key] + ' to ' + ve, 'POST', '/v1/release',
        { deployment: state.choice[key], virtualEnv: ve }),
    }, 'Release'),
    h('button', {
      type: 'button', class: 'danger', 'data-action': 'rollback', 'data-target': key,
      onclick: () => act('roll back ' + app + ' in ' + ve, 'POST', '/v1/rollback', { virtualEnv: ve, app }),
    }, 'Roll back'));
}

function deploymentsTable() {
  const deployments = byKind('AppDeployment');
  // app/component/version -> the deployments that have it (one upstream: shared)
  const users = {};
  for (const d of deployments) {
    for (const [c, comp] of Object.entries(d.spec.components || {})) {
      const k = d.spec.app + '/' + c + '/' + comp.version;
      (users[k] = users[k] || []).push(d.metadata.name);
    }
  }
  const releasedIn = {};
  for (const r of state.status.releases || []) {
    for (const dep of Object.values(r.apps || {})) (releasedIn[dep] = releasedIn[dep] || []).push(r.virtualEnv);
  }
  const table = h('table', { id: 'deployments' }, h('tr', {},
    h('th', {}, 'deployment'), h('th', {}, 'app'), h('th', {}, 'version'),
    h('th', {}, 'components (version)'), h('th', {}, 'released in')));
  for (const d of deployments) {
    const chips = Object.entries(d.spec.components || {}).map(([c, comp]) => {
      const others = users[d.spec.app + '/' + c + '/' + comp.version].filter((n) => n !== d.metadata.name);
      return h('span', {
        class: others.length ? 'chip shared' : 'chip',
        title: others.length ? 'shared with ' + others.join(', ') : 'only in this deployment',
      }, c + ' ' + comp.version, others.length ? ' ⇄ ' + others.join(', ') : '');
    });
    table.appendChild(h('tr', { 'data-deployment': d.metadata.name },
      h('td', {}, h('code', {}, d.metadata.name)), h('td', {}, d.spec.app),
      h('td', {}, text(d.spec.version)), h('td', {}, chips),
      h('td', {}, (releasedIn[d.metadata.name] || []).join(', ') || '—')));
  }
  return h('div', { class: 'card' }, table,
    h('p', { class: 'muted' }, '⇄ marks a component version shared with other deployments (one upstream serves them all).'));
}

// ------------------------------------------------------------------ Canaries

const TERMINAL = ['succeeded', 'aborted'];

function canariesPage() {
  const root = h('div', { id: 'canaries' }, h('h2', {}, 'Canaries'));
  if (!state.canaries.length) {
    root.appendChild(h('p', { class: 'muted' }, 'No Canary with steps. Apply one and `switchyard canary start` it.'));
  }
  for (const c of state.canaries) root.appendChild(canaryCard(c));
  return root;
}

function canaryCard(c) {
  const steps = (c.steps || []).join(' → ');
  const card = h('div', { class: 'card canary', 'data-canary': c.name, 'data-phase': c.phase },
    h('h3', {}, 'Canary ', h('code', {}, c.name), ' ',
      h('span', { class: 'phase phase-' + c.phase, 'data-field': 'phase' }, c.phase)),
    h('div', {}, text(c.stable) + ' → ' + c.deployment + ' in ' + c.virtualEnv + ' (' + c.app + ') · step ' +
      c.step + '/' + (c.steps || []).length + ' [' + steps + '] · weight ',
    h('b', { 'data-field': 'weight' }, c.weight)),
    h('div', { class: 'muted', 'data-field': 'reason' }, c.reason));
  if (can('release') && !TERMINAL.includes(c.phase)) card.appendChild(canaryActions(c));
  const counts = c.counts || {};
  const line = (label, n) => n ? label + ': ' + n.requests + ' requests, ' + n.errors + ' errors (' +
    pct(n.requests ? n.errors / n.requests : 0) + ')' : label + ': no reports yet';
  card.appendChild(h('div', {}, h('span', { class: 'legend-canary' }, '■ '), line('canary', counts.canary),
    ' · ', h('span', { class: 'legend-stable' }, '■ '), line('stable', counts.stable)));
  card.appendChild(statisticBar(c.statistic));
  card.appendChild(h('div', { class: 'plots' },
    weightPlot(c), ratePlot(c.name, 'requests/s', (d, dt) => d.requests / dt),
    ratePlot(c.name, 'error rate', (d) => (d.requests ? d.errors / d.requests : null), true)));
  const events = h('table', { class: 'events' }, h('tr', {}, h('th', {}, 'when'), h('th', {}, 'phase'),
    h('th', {}, 'weight'), h('th', {}, 'reason'), h('th', {}, 'who')));
  for (const e of (c.events || []).slice().reverse()) {
    events.appendChild(h('tr', {}, h('td', { class: 'mono' }, e.at), h('td', {}, e.phase),
      h('td', {}, e.weight), h('td', {}, e.reason), h('td', {}, e.who)));
  }
  card.appendChild(h('details', { open: '' }, h('summary', {}, 'events'), events));
  return card;
}

function canaryActions(c) {
  const verb = (name, label, cls, body) => h('button', {
    type: 'button', class: cls, 'data-action': name, 'data-target': c.name,
    onclick: () => act(label + ' ' + c.name, 'POST', '/v1/canary/' + name, Object.assign({ name: c.name }, body || {})),
  }, label);
  if (c.phase === 'pending') return h('div', { class: 'actions' }, verb('start', 'Start'));
  return h('div', { class: 'actions' }, verb('promote', 'Promote'),
    verb('promote', 'Promote fully', '', { full: true }),
    c.phase === 'paused' ? verb('resume', 'Resume') : verb('pause', 'Pause'),
    verb('abort', 'Abort', 'danger'));
}

function statisticBar(st) {
  if (!st) return h('div', {}, 'statistic: —');
  const share = st.bound > 0 ? Math.min(1, st.value / st.bound) : 0;
  const fill = h('span');
  fill.style.width = (100 * share).toFixed(1) + '%';
  return h('div', { 'data-field': 'statistic' }, 'statistic: ' + st.test + ' test ' + Number(st.value).toFixed(2) +
    ' of bound ' + Number(st.bound).toFixed(1) + ' ', h('span', { class: share >= 1 ? 'bar high' : 'bar' }, fill));
}

const W = 360, H = 150, PAD = { l: 44, r: 10, t: 18, b: 22 };

/** An SVG plot of lines [{points: [[t, y]], color}] over time, y from 0. */
function plot(title, lines, yFormat, yMaxMin) {
  const pts = lines.flatMap((l) => l.points);
  const svg = s('svg', { class: 'plot', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title });
  svg.appendChild(s('text', { x: PAD.l, y: 12, class: 'title' }, title));
  if (pts.length < 1) {
    svg.appendChild(s('text', { x: PAD.l, y: H / 2 }, 'waiting for data…'));
    return svg;
  }
  const t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]), t0 + 1000);
  const yMax = Math.max(yMaxMin || 0, ...pts.map((p) => p[1])) || 1;
  const x = (t) => PAD.l + (W - PAD.l - PAD.r) * (t - t0) / (t1 - t0);
  const y = (v) => H - PAD.b - (H - PAD.t - PAD.b) * v / yMax;
  svg.appendChild(s('line', { x1: PAD.l, y1: y(0), x2: W - PAD.r, y2: y(0), stroke: '#c5cad3' }));
  svg.appendChild(s('line', { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: y(0), stroke: '#c5cad3' }));
  svg.appendChild(s('text', { x: 2, y: PAD.t + 4 }, yFormat(yMax)));
  svg.appendChild(s('text', { x: 2, y: y(0) }, yFormat(0)));
  svg.appendChild(s('text', { x: PAD.l, y: H - 6 }, '-' + Math.round((t1 - t0) / 1000) + ' s'));
  svg.appendChild(s('text', { x: W - PAD.r - 20, y: H - 6 }, 'now'));
  for (const l of lines) {
    if (!l.points.length) continue;
    const d = l.points.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join(' ');
    svg.appendChild(s('path', { d, fill: 'none', stroke: l.color, 'stroke-width': 1.8 }));
  }
  return svg;
}

function weightPercent(w) { const n = parseFloat(w); return Number.isFinite(n) ? n : 0; }

/** The weight over time, as a step line from the rollout's events to now. */
function weightPlot(c) {
  const points = [];
  for (const e of c.events || []) {
    if (points.length) points.push([e.atUnixMs, points[points.length - 1][1]]);
    points.push([e.atUnixMs, weightPercent(e.weight)]);
  }
  const now = Date.now();
  points.push([now, weightPercent(c.weight)]);
  return plot('weight (%)', [{ points, color: '#d9480f' }], (v) => v.toFixed(0) + '%', 100);
}

/** Per version, a figure per sampling interval from the cumulative LRS counts. */
function ratePlot(name, title, figure, asPercent) {
  const series = state.series[name] || [];
  const lines = [['canary', '#d9480f'], ['stable', '#1c7ed6']].map(([version, color]) => {
    const points = [];
    for (let i = 1; i < series.length; i++) {
      const a = series[i - 1][version], b = series[i][version];
      if (!a || !b || b.requests < a.requests) continue; // a reset (restart, new leader)
      const dt = (series[i].t - series[i - 1].t) / 1000;
      const v = figure({ requests: b.requests - a.requests, errors: b.errors - a.errors }, dt);
      if (v !== null) points.push([series[i].t, v]);
    }
    return { points, color };
  });
  return plot(title + ' (canary, stable)', lines,
    asPercent ? (v) => (100 * v).toFixed(0) + '%' : (v) => v.toFixed(0), asPercent ? 0.05 : 1);
}

// ------------------------------------------------------------------ Envoys

/** a - b for numeric versions (SotW: the config generation), else null. */
function versionCmp(a, b) {
  return /^\d+$/.test(a || '') && /^\d+$/.test(b || '') ? Number(a) - Number(b) : null;
}

/** ACK, NACK or pending for one xDS type of an Envoy. A type that did not change
 * is not sent again, and Envoy's later ACKs carry the newer version. */
function typeState(t) {
  const nack = t.lastNack;
  if (nack && (nack.version === t.sentVersion || versionCmp(nack.version, t.ackedVersion) > 0)) {
    return ['NACK', 'state-nack'];
  }
  if (t.ackedVersion && (t.ackedVersion === t.sentVersion || versionCmp(t.ackedVersion, t.sentVersion) >= 0)) {
    return ['ACK', 'state-ack'];
  }
  return ['pending', 'state-pending'];
}

function envoysPage() {
  const st = state.status;
  const root = h('div', { id: 'envoys' }, h('h2', {}, 'Envoys (ADS)'));
  const envoys = st.envoys || [];
  const types = [...new Set(envoys.flatMap((e) => Object.keys(e.types || {})))].sort();
  const table = h('table', { id: 'envoy-table' }, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'replica'),
    h('th', {}, 'connected'), h('th', {}, 'last seen'), types.map((t) => h('th', {}, t))));
  const nacks = [];
  for (const e of envoys) {
    table.appendChild(h('tr', { 'data-envoy': e.id },
      h('td', {}, h('code', {}, e.id), e.cluster ? h('div', { class: 'muted' }, e.cluster) : null),
      h('td', {}, text(e.replica)),
      h('td', {}, e.connected ? 'yes (' + e.streams + ' stream' + (e.streams === 1 ? '' : 's') + ')' : 'no'),
      h('td', {}, ago(e.lastSeenUnixMs)),
      types.map((t) => {
        const ty = (e.types || {})[t];
        if (!ty) return h('td', { class: 'muted' }, '—');
        const [label, cls] = typeState(ty);
        if (ty.lastNack) nacks.push([e.id, t, ty.lastNack]);
        return h('td', { class: cls, 'data-type': t }, label + ' ', h('span', { class: 'mono' },
          'v' + text(ty.ackedVersion) + (label === 'ACK' ? '' : ' (sent v' + text(ty.sentVersion) + ')')));
      })));
  }
  root.appendChild(h('div', { class: 'card' }, envoys.length ? table : h('p', { class: 'muted' }, 'No Envoy connected.')));
  if (nacks.length) {
    const t = h('table', { id: 'nacks' }, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'type'), h('th', {}, 'version'),
      h('th', {}, 'when'), h('th', {}, 'message')));
    for (const [id, type, n] of nacks) {
      t.appendChild(h('tr', {}, h('td', {}, id), h('td', {}, type), h('td', {}, text(n.version)),
        h('td', {}, ago(n.atUnixMs)), h('td', { class: 'nack-text' }, text(n.message))));
    }
    root.appendChild(h('h2', {}, 'Last NACKs'), h('div', { class: 'card' }, t));
  }
  root.appendChild(h('h2', {}, 'Pull mode'));
  const pulling = st.pulling || [];
  const pt = h('table', { id: 'pulling' }, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'last poll'), h('th', {}, 'generation')));
  for (const p of pulling) {
    pt.appendChild(h('tr', { 'data-pulling': p.id }, h('td', {}, h('code', {}, p.id)), h('td', {}, ago(p.lastPollUnixMs)),
      h('td', {}, text(p.generation) + (p.generation === st.generation ? ' (current)' : ' (current: ' + st.generation + ')'))));
  }
  root.appendChild(h('div', { class: 'card' }, pulling.length ? pt : h('p', { class: 'muted' }, 'No Envoy polls in pull mode.')));
  if (Array.isArray(st.replicas)) {
    const rt = h('table', { id: 'replicas' }, h('tr', {}, h('th', {}, 'replica'), h('th', {}, 'xDS'), h('th', {}, 'API'),
      h('th', {}, 'leader'), h('th', {}, 'generation'), h('th', {}, 'Envoys')));
    for (const r of st.replicas) {
      rt.appendChild(h('tr', {}, h('td', {}, r.id), h('td', {}, r.xdsAddr), h('td', {}, r.apiAddr),
        h('td', {}, r.leader ? 'yes' : ''), h('td', {}, text(r.generation)), h('td', {}, text(r.envoys))));
    }
    root.appendChild(h('h2', {}, 'Replicas (etcd)'), h('div', { class: 'card' }, rt));
  }
  const refused = st.tlsRefused || {};
  root.appendChild(h('p', { class: 'muted' }, 'TLS handshakes refused: ' + text(refused.total)));
  return root;
}

// ------------------------------------------------------------------ start

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-button').addEventListener('click', signIn);
  $('token').addEventListener('keydown', (e) => { if (e.key === 'Enter') signIn(); });
  $('sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => (page() === 'canaries' ? poll() : draw(true)));
  if (!token()) { showSignIn(); return; }
  api('GET', '/v1/whoami').then((me) => { state.me = me; start(); })
    .catch(() => signOut('The token is no longer valid: sign in again.'));
});
