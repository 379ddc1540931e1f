// jobstream dashboard: plain JavaScript, no dependencies, no build step.
// Everything it shows comes from the API under /api. Live updates come from the Server-Sent Events
// endpoints, read with fetch() so that the Authorization header can be sent (EventSource cannot);
// when no event arrives for a while, a job page falls back to reading the job every few seconds.
'use strict';

const PAGE_SIZE = 20;
const MAX_JOB_PAGES = 100; // the API's deepest jobs page by number (MAX_LISTING_PAGE)
const OPERATIONS_PAGE_SIZE = 50;
const TOKEN_KEY = 'jobstream.token';
const POLL_MS = 3000; // a job page without news for this long reads the job itself

// --- small helpers -------------------------------------------------------------------------------

/** An element with attributes (on* become listeners) and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

const STATUS_TEXT = { in_progress: 'In progress', completed: 'Completed', deleted: 'Deleted' };

function statusBadge(status) {
  return h('span', { class: `badge badge-${status}` }, STATUS_TEXT[status] || status);
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const shortFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });

function formatTime(iso) {
  return iso ? dateFormat.format(new Date(iso)) : '—';
}

/** A time element: in full, or compact (the time alone today, else a short date and time). */
function timeElement(iso, compact = false) {
  if (!iso) return '—';
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  const shown = !compact ? formatTime(iso) : today ? timeFormat.format(date) : shortFormat.format(date);
  return h('time', { datetime: iso, title: formatTime(iso) }, shown);
}

function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** How long a job ran (or has been running, measured against now). */
function jobDuration(job) {
  if (!job.created_at) return '—';
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return formatDuration(end - Date.parse(job.created_at));
}

const numberFormat = new Intl.NumberFormat();
const n = (value) => numberFormat.format(value);

function percentDone(ops) {
  if (!ops.total) return 0;
  return Math.floor(((ops.succeeded + ops.failed) * 100) / ops.total);
}

/** A stacked bar: succeeded, failed, pending. */
function progressBar(label, big = false) {
  const ok = h('span', { class: 'ok' });
  const bad = h('span', { class: 'bad' });
  const bar = h('div', {
    class: big ? 'bar bar-big' : 'bar',
    role: 'progressbar',
    'aria-label': label,
    'aria-valuemin': 0,
    'aria-valuemax': 100,
  }, ok, bad);
  bar.update = (ops) => {
    const total = ops.total || 1;
    ok.style.width = `${(ops.succeeded * 100) / total}%`;
    bad.style.width = `${(ops.failed * 100) / total}%`;
    const percent = percentDone(ops);
    bar.setAttribute('aria-valuenow', percent);
    bar.setAttribute('aria-valuetext',
      `${percent} %: ${ops.succeeded} succeeded, ${ops.failed} failed, ${ops.pending} pending`);
    bar.dataset.percent = percent;
  };
  return bar;
}

/** Whether `next` is newer news than `previous` about one job (counters only grow). */
function isNewer(next, previous) {
  if (!previous) return true;
  const rank = { in_progress: 0, completed: 1, deleted: 2 };
  const done = (job) => job.operations.succeeded + job.operations.failed;
  if (rank[next.status] !== rank[previous.status]) return rank[next.status] > rank[previous.status];
  return done(next) > done(previous);
}

// --- the API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.message || `the API answered HTTP ${status}`);
    this.status = status;
    this.code = problem?.error;
  }
}

async function readProblem(response) {
  try {
    return await response.json();
  } catch {
    return { error: 'http', message: `the API answered HTTP ${response.status}` };
  }
}

let tokenPrompt = null;

/** Ask for the API token (once for every request waiting on it); resolves when one is given. */
function askForToken(message) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = $('#token-dialog');
  const input = $('#token-input');
  $('#token-message').textContent = message;
  input.value = '';
  tokenPrompt = new Promise((resolve, reject) => {
    const done = (token) => {
      tokenPrompt = null;
      $('#token-form').removeEventListener('submit', onSubmit);
      $('#token-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      if (token) resolve(token); else reject(new ApiError(401, { message }));
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      done(token);
    };
    const onCancel = (event) => { event.preventDefault(); done(null); };
    $('#token-form').addEventListener('submit', onSubmit);
    $('#token-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
  });
  dialog.showModal();
  input.focus();
  return tokenPrompt;
}

/** fetch() with the session's token; asks for one (again) when the API answers 401. */
async function apiFetch(path, { method = 'GET', body, headers = {}, signal } = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, {
      method,
      body,
      signal,
      headers: token ? { ...headers, Authorization: `Bearer ${token}` } : headers,
    });
    if (response.status !== 401) return response;
    const problem = await readProblem(response);
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    const message = token
      ? `That token was refused: ${problem.message}`
      : `The API asks for a token: ${problem.message}`;
    await askForToken(message);
  }
}

/** The JSON answer of an API call, or an ApiError carrying the API's message. */
async function apiJson(path, options) {
  const response = await apiFetch(path, options);
  if (!response.ok) throw new ApiError(response.status, await readProblem(response));
  return response.status === 204 ? null : response.json();
}

/** The messages of a Server-Sent Events body, as {event, data} objects. */
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue; // a keepalive comment
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = text;
          else if (field === 'data') data.push(text);
        }
        if (data.length) yield { event, data: JSON.parse(data.join('\n')) };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * Follow an event stream, reconnecting after it ends, until `onEvent` returns false or the
 * signal aborts. 400 and 404 are not retried: they are thrown.
 */
async function follow(path, onEvent, { signal, onConnection }) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      onConnection('connecting');
      const response = await apiFetch(path, { headers: { Accept: 'text/event-stream' }, signal });
      if (!response.ok) throw new ApiError(response.status, await readProblem(response));
      onConnection('live');
      delay = 1000;
      for await (const message of readEvents(response.body)) {
        if (onEvent(message) === false) return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && [400, 401, 404].includes(error.status)) throw error;
      onConnection('offline');
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

const CONNECTION_TEXT = {
  idle: '',
  connecting: 'Connecting…',
  live: 'Live',
  polling: 'Live (polling)',
  offline: 'Reconnecting…',
};

function showConnection(state) {
  const box = $('#connection');
  box.dataset.state = state;
  $('#connection-text').textContent = CONNECTION_TEXT[state] ?? state;
}

/** What the API can do, from its OpenAPI document (read once). */
let capabilitiesPromise = null;
function capabilities() {
  capabilitiesPromise ??= apiJson('/api/openapi.json').then((doc) => {
    const names = (operation) => new Set((operation?.parameters || []).map((p) => p.name));
    return { jobStatusFilter: names(doc.paths?.['/api/jobs']?.get).has('status') };
  }).catch(() => ({ jobStatusFilter: false }));
  return capabilitiesPromise;
}

// --- routing -------------------------------------------------------------------------------------

let flash = null; // a message for the next page (e.g. "job deleted")
let cleanup = () => {};

function parseHash() {
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  return { path, params: new URLSearchParams(query || '') };
}

function go(path, params) {
  const query = params ? new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ''),
  ).toString() : '';
  location.hash = query ? `${path}?${query}` : path;
}

function render() {
  cleanup();
  const controller = new AbortController();
  const timers = [];
  cleanup = () => { controller.abort(); timers.forEach(clearInterval); };
  const ctx = {
    signal: controller.signal,
    every: (ms, fn) => timers.push(setInterval(fn, ms)),
  };
  const main = $('#main');
  main.replaceChildren();
  showConnection('idle');
  const { path, params } = parseHash();
  const job = path.match(/^\/jobs\/([0-9a-f]{32})$/);
  let section = 'jobs';
  if (path === '/submit') {
    section = 'submit';
    submitPage(main, ctx);
  } else if (job) {
    jobPage(main, ctx, job[1], params);
  } else {
    jobsPage(main, ctx, params);
  }
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function flashMessage() {
  if (!flash) return '';
  const message = h('p', { class: 'flash', role: 'status' }, flash);
  flash = null;
  return message;
}

function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error.message || String(error));
}

function pager(page, pages, onPage, label, more = false) {
  if (pages <= 1) return h('nav', { class: 'pager', 'aria-label': label }, `Page 1 of 1`);
  return h('nav', { class: 'pager', 'aria-label': label },
    h('button', { type: 'button', disabled: page <= 1, onclick: () => onPage(page - 1) }, '‹ Previous'),
    h('span', { 'aria-current': 'page' }, `Page ${n(page)} of ${n(pages)}${more ? ' shown (more stored)' : ''}`),
    h('button', { type: 'button', disabled: page >= pages, onclick: () => onPage(page + 1) }, 'Next ›'),
  );
}

// --- the jobs list -------------------------------------------------------------------------------

function jobsPage(main, ctx, params) {
  const page = Math.max(1, Number.parseInt(params.get('page'), 10) || 1);
  const status = ['in_progress', 'completed'].includes(params.get('status')) ? params.get('status') : '';
  const totals = {
    in_progress: h('strong', { id: 'total-in-progress' }, '…'),
    completed: h('strong', { id: 'total-completed' }, '…'),
    all: h('strong', { id: 'total-all' }, '…'),
    rate: h('strong', { id: 'ops-rate' }, '0'),
  };
  const filter = h('select', { id: 'status-filter', onchange: () => go('/', { page: 1, status: filter.value }) },
    h('option', { value: '' }, 'All'),
    h('option', { value: 'in_progress' }, 'In progress'),
    h('option', { value: 'completed' }, 'Completed'));
  filter.value = status;
  const tbody = h('tbody');
  const table = h('table', { class: 'jobs', id: 'jobs-table' },
    h('caption', { class: 'sr-only' }, 'Jobs, newest first'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Job'),
      h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col', class: 'wide' }, 'Progress'),
      h('th', { scope: 'col' }, 'Operations'),
      h('th', { scope: 'col' }, 'Created'),
      h('th', { scope: 'col' }, 'Duration'))),
    tbody);
  const pagerBox = h('div');
  const message = h('div', { 'aria-live': 'polite' });
  main.append(
    h('div', { class: 'heading' },
      h('h1', {}, 'Jobs'),
      h('a', { class: 'button primary', href: '#/submit' }, 'Submit a job')),
    flashMessage(),
    h('section', { class: 'totals', 'aria-label': 'Totals' },
      h('div', { class: 'card by-status', hidden: true }, h('span', {}, 'In progress'), totals.in_progress),
      h('div', { class: 'card by-status', hidden: true }, h('span', {}, 'Completed'), totals.completed),
      h('div', { class: 'card' }, h('span', {}, 'All jobs'), totals.all),
      h('div', { class: 'card' }, h('span', {}, 'Operations per second'), totals.rate)),
    h('div', { class: 'toolbar', id: 'jobs-toolbar', hidden: true },
      h('label', { for: 'status-filter' }, 'Status'), filter),
    message,
    h('div', { class: 'scroll' }, table),
    pagerBox,
  );

  const rows = new Map(); // job id -> {job, update}
  let counts = { in_progress: null, completed: null };

  function row(job) {
    const bar = progressBar(`Progress of job ${job.id.slice(0, 8)}`);
    const statusCell = h('td', { 'data-label': 'Status' });
    const opsCell = h('td', { 'data-label': 'Operations', class: 'numbers' });
    const durationCell = h('td', { 'data-label': 'Duration', class: 'numbers' });
    const tr = h('tr', { 'data-job-id': job.id },
      h('td', { 'data-label': 'Job' },
        h('a', { href: `#/jobs/${job.id}`, class: 'mono', title: job.id }, job.id.slice(0, 12) + '…')),
      statusCell,
      h('td', { 'data-label': 'Progress', class: 'wide' }, bar),
      opsCell,
      h('td', { 'data-label': 'Created', class: 'numbers' }, timeElement(job.created_at, true)),
      durationCell);
    const entry = { job, tr };
    entry.update = (next) => {
      entry.job = { ...entry.job, ...next, created_at: next.created_at || entry.job.created_at };
      const { operations: ops, status: s } = entry.job;
      statusCell.replaceChildren(statusBadge(s));
      bar.update(ops);
      opsCell.replaceChildren(
        h('span', { class: 'count ok' }, `${n(ops.succeeded)} ok`), ' · ',
        h('span', { class: ops.failed ? 'count bad' : 'count' }, `${n(ops.failed)} failed`), ' · ',
        `${n(ops.pending)} pending`, h('span', { class: 'of' }, ` of ${n(ops.total)}`));
      durationCell.textContent = jobDuration(entry.job);
      tr.dataset.status = s;
    };
    entry.update(job);
    return entry;
  }

  function showCounts() {
    totals.in_progress.textContent = counts.in_progress === null ? '—' : n(counts.in_progress);
    totals.completed.textContent = counts.completed === null ? '—' : n(counts.completed);
  }

  async function loadTotals() {
    const all = await apiJson('/api/jobs?size=1', { signal: ctx.signal });
    totals.all.textContent = n(all.total);
    if ((await capabilities()).jobStatusFilter) { // totals by status need the API's filter
      $('#jobs-toolbar').hidden = false;
      for (const card of main.querySelectorAll('.by-status')) card.hidden = false;
      for (const s of ['in_progress', 'completed']) {
        counts[s] = (await apiJson(`/api/jobs?size=1&status=${s}`, { signal: ctx.signal })).total;
      }
    }
    showCounts();
  }

  async function load() {
    const query = new URLSearchParams({ page, size: PAGE_SIZE });
    if (status) query.set('status', status);
    try {
      const body = await apiJson(`/api/jobs?${query}`, { signal: ctx.signal });
      const items = body.items;
      rows.clear();
      tbody.replaceChildren(...items.map((job) => {
        const entry = row(job);
        rows.set(job.id, entry);
        return entry.tr;
      }));
      message.replaceChildren(items.length ? '' : h('p', { class: 'empty' },
        status ? 'No job with this status.' : 'No jobs yet. ',
        status ? '' : h('a', { href: '#/submit' }, 'Submit one.')));
      const stored = Math.max(1, Math.ceil(body.total / PAGE_SIZE));
      const pages = Math.min(stored, MAX_JOB_PAGES);
      pagerBox.replaceChildren(
        pager(page, pages, (p) => go('/', { page: p, status }), 'Job pages', stored > pages));
      await loadTotals();
    } catch (error) {
      if (!ctx.signal.aborted) message.replaceChildren(errorBox(error));
    }
  }

  // A job the list does not show yet: load the page again, at most every 2 s.
  let reloadTimer = null;
  function reloadSoon() {
    if (reloadTimer || ctx.signal.aborted) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, 2000);
    ctx.signal.addEventListener('abort', () => clearTimeout(reloadTimer), { once: true });
  }

  // Without news for a while (no worker publishes job events, or they were lost), a page that
  // shows jobs in progress reads itself again every few seconds.
  let lastNews = Date.now();
  ctx.every(POLL_MS, () => {
    const running = [...rows.values()].some((entry) => entry.job.status === 'in_progress');
    if (running && Date.now() - lastNews >= POLL_MS && !reloadTimer) {
      showConnection('polling');
      load();
    }
  });

  function onEvent({ event, data }) {
    if (event === 'job') lastNews = Date.now();
    if (event === 'stats') {
      const rate = data.operations_per_second;
      totals.rate.textContent = rate > 0 && rate < 10 ? rate.toFixed(1) : n(Math.round(rate));
      return;
    }
    if (event !== 'job') return;
    const entry = rows.get(data.id);
    if (!entry) {
      // A job this page does not show: on the first page, most likely a new one to show.
      if (page === 1 && data.status !== 'deleted' && (!status || status === data.status)) reloadSoon();
      return;
    }
    if (!isNewer(data, entry.job)) return;
    if (data.status === 'deleted') {
      entry.tr.remove();
      rows.delete(data.id);
      reloadSoon();
      return;
    }
    if (data.status !== entry.job.status && counts.in_progress !== null) {
      counts[entry.job.status] -= 1;
      counts[data.status] += 1;
      showCounts();
    }
    if (status && data.status !== status) { // no longer in the filtered list: refill the page
      entry.tr.remove();
      rows.delete(data.id);
      reloadSoon();
      return;
    }
    entry.update(data);
  }

  load();
  ctx.every(1000, () => {
    for (const entry of rows.values()) {
      if (entry.job.status === 'in_progress') entry.update({});
    }
  });
  follow('/api/events', onEvent, { signal: ctx.signal, onConnection: showConnection })
    .catch((error) => { if (!ctx.signal.aborted) message.replaceChildren(errorBox(error)); });
}

// --- one job -------------------------------------------------------------------------------------

function jobPage(main, ctx, id, params) {
  const page = Math.max(1, Number.parseInt(params.get('page'), 10) || 1);
  const failedOnly = params.get('status') === 'failed';
  const bar = progressBar('Progress', true);
  const percent = h('span', { class: 'percent', id: 'job-percent' }, '…');
  const badge = h('span', { id: 'job-status' });
  const facts = {};
  const fact = (key, label) => {
    facts[key] = h('dd', { id: `job-${key}` }, '…');
    return h('div', { class: `fact fact-${key}` }, h('dt', {}, label), facts[key]);
  };
  const notice = h('div', { 'aria-live': 'polite', id: 'job-notice' });
  const deleteButton = h('button', { type: 'button', class: 'danger', id: 'delete-job' }, 'Delete job…');
  const failedBox = h('input', { type: 'checkbox', id: 'failed-only', checked: failedOnly });
  const refresh = h('button', { type: 'button', id: 'refresh-operations' }, 'Refresh');
  const opsBody = h('tbody');
  const opsMessage = h('div', { 'aria-live': 'polite' });
  const opsPager = h('div');
  main.append(
    h('p', { class: 'back' }, h('a', { href: '#/' }, '← All jobs')),
    h('div', { class: 'heading' },
      h('h1', {}, 'Job ', h('code', { class: 'job-id' }, id)),
      badge),
    notice,
    h('div', { class: 'progress' }, bar, percent),
    h('dl', { class: 'facts' },
      fact('total', 'Operations'), fact('succeeded', 'Succeeded'), fact('failed', 'Failed'),
      fact('pending', 'Pending'), fact('created', 'Created'), fact('finished', 'Finished'),
      fact('duration', 'Duration')),
    h('div', { class: 'actions' }, deleteButton),
    h('h2', { id: 'operations-title' }, 'Operations'),
    h('div', { class: 'toolbar' },
      h('label', { class: 'check' }, failedBox, ' Failed only'),
      refresh),
    opsMessage,
    h('div', { class: 'scroll' }, h('table', { class: 'operations', id: 'operations-table', 'aria-labelledby': 'operations-title' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'numbers' }, '#'),
        h('th', { scope: 'col' }, 'Expression'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col' }, 'Result or error'))),
      opsBody)),
    opsPager,
  );

  let job = null;
  let lastNews = 0; // when the event stream last said something
  let gone = false;

  function show(next, source) {
    if (source === 'stream') lastNews = Date.now();
    if (gone || (job && !isNewer(next, job))) return;
    const wasFinal = job && job.status !== 'in_progress';
    job = { ...next, created_at: next.created_at || job?.created_at };
    if (job.status === 'deleted') return deleted();
    const ops = job.operations;
    badge.replaceChildren(statusBadge(job.status));
    bar.update(ops);
    percent.textContent = `${percentDone(ops)} %`;
    facts.total.textContent = n(ops.total);
    facts.succeeded.textContent = n(ops.succeeded);
    facts.failed.textContent = n(ops.failed);
    facts.pending.textContent = n(ops.pending);
    facts.created.replaceChildren(timeElement(job.created_at, true));
    facts.finished.replaceChildren(timeElement(job.finished_at, true));
    facts.duration.textContent = jobDuration(job);
    if (job.status === 'completed' && !wasFinal) {
      // The results are all there now. Also when the first state is already completed: the
      // operations were read at the same time, possibly just before the job completed.
      loadOperations();
      showConnection('idle');
    }
  }

  function deleted() {
    gone = true;
    badge.replaceChildren(statusBadge('deleted'));
    notice.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'This job has been deleted.'));
    deleteButton.disabled = true;
    showConnection('idle');
  }

  async function loadOperations() {
    const query = new URLSearchParams({ page, size: OPERATIONS_PAGE_SIZE });
    if (failedOnly) query.set('status', 'failed');
    try {
      const body = await apiJson(`/api/jobs/${id}/operations?${query}`, { signal: ctx.signal });
      const items = body.items;
      opsBody.replaceChildren(...items.map((op) => h('tr', { 'data-index': op.index, 'data-status': op.status },
        h('td', { 'data-label': '#', class: 'numbers' }, op.index),
        h('td', { 'data-label': 'Expression', class: 'mono expression' }, op.expression),
        h('td', { 'data-label': 'Status' }, h('span', { class: `op op-${op.status}` }, op.status)),
        op.status === 'failed'
          ? h('td', { 'data-label': 'Error', class: 'error-text' }, h('span', { class: 'sr-only' }, 'Error: '), op.error)
          : h('td', { 'data-label': 'Result', class: 'mono result' }, op.result ?? '—'))));
      opsMessage.replaceChildren(items.length ? '' : h('p', { class: 'empty' },
        failedOnly ? 'No failed operation.' : 'No operations.'));
      const pages = Math.max(1, Math.ceil(body.total / OPERATIONS_PAGE_SIZE));
      opsPager.replaceChildren(pager(page, pages,
        (p) => go(`/jobs/${id}`, { page: p, status: failedOnly ? 'failed' : '' }), 'Operation pages'));
    } catch (error) {
      if (ctx.signal.aborted) return;
      if (error.status === 404) deleted();
      else opsMessage.replaceChildren(errorBox(error));
    }
  }

  failedBox.addEventListener('change', () => go(`/jobs/${id}`, { status: failedBox.checked ? 'failed' : '' }));
  refresh.addEventListener('click', () => loadOperations());
  deleteButton.addEventListener('click', async () => {
    if (!(await confirmDialog(`Job ${id} and its ${n(job?.operations.total ?? 0)} operations will be removed. This cannot be undone.`))) {
      deleteButton.focus();
      return;
    }
    deleteButton.disabled = true;
    try {
      await apiJson(`/api/jobs/${id}`, { method: 'DELETE', signal: ctx.signal });
      flash = `Job ${id} was deleted.`;
      go('/');
    } catch (error) {
      deleteButton.disabled = false;
      if (error.status === 404) deleted();
      else notice.replaceChildren(errorBox(error));
    }
  });

  // The first state comes from the stream; until then (and while it says nothing for a while,
  // e.g. when no worker publishes job events) the page reads the job itself.
  async function poll() {
    if (gone || ctx.signal.aborted || job?.status === 'completed') return;
    if (job && Date.now() - lastNews < POLL_MS) return;
    try {
      show(await apiJson(`/api/jobs/${id}`, { signal: ctx.signal }), job ? 'poll' : 'first');
      if (job && job.status === 'in_progress' && lastNews) showConnection('polling');
    } catch (error) {
      if (ctx.signal.aborted) return;
      if (error.status === 404) deleted();
      else notice.replaceChildren(errorBox(error));
    }
  }

  ctx.every(POLL_MS, poll);
  ctx.every(1000, () => { if (job?.status === 'in_progress') facts.duration.textContent = jobDuration(job); });
  loadOperations();
  let first = true;
  follow(`/api/jobs/${id}/events`, ({ event, data }) => {
    if (event !== 'job') return true;
    show(data, first ? 'first' : 'stream');
    first = false;
    return data.status === 'in_progress';
  }, { signal: ctx.signal, onConnection: (state) => { if (job?.status !== 'completed' && !gone) showConnection(state); } })
    .catch((error) => {
      if (ctx.signal.aborted) return;
      if (error.status === 404) deleted();
      else poll();
    });
}

function confirmDialog(message) {
  const dialog = $('#confirm-dialog');
  $('#confirm-message').textContent = message;
  dialog.returnValue = '';
  dialog.showModal();
  $('#confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

// --- submitting a job ----------------------------------------------------------------------------

function submitPage(main, ctx) {
  const textarea = h('textarea', {
    id: 'expressions', name: 'expressions', rows: 12, spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'expressions-hint submit-error',
    placeholder: '1 + 2 + 3 - 7 * 2\n3 / 4 + 1',
  });
  const file = h('input', { type: 'file', id: 'expressions-file', accept: '.txt,text/plain' });
  const error = h('p', { id: 'submit-error', class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Submit job');
  const form = h('form', { id: 'submit-form', novalidate: true },
    h('label', { for: 'expressions' }, 'Expressions, one per line'),
    h('p', { class: 'hint', id: 'expressions-hint' },
      'Numbers, + - * / and parentheses. Blank lines are skipped; the API checks the rest and ',
      'says what it refuses here.'),
    textarea,
    error,
    h('div', { class: 'file' },
      h('label', { for: 'expressions-file' }, 'Or load them from a file'),
      file),
    h('div', { class: 'actions' }, button));
  main.append(h('h1', {}, 'Submit a job'), form);

  const showError = (message) => {
    error.textContent = message;
    if (message) textarea.setAttribute('aria-invalid', 'true');
    else textarea.removeAttribute('aria-invalid');
  };
  textarea.addEventListener('input', () => showError(''));
  file.addEventListener('change', async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    try {
      textarea.value = await chosen.text();
      showError('');
    } catch (err) {
      showError(`Could not read ${chosen.name}: ${err.message}`);
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    showError('');
    try {
      const created = await apiJson('/api/jobs', {
        method: 'POST',
        body: textarea.value,
        headers: { 'Content-Type': 'text/plain; charset=utf-8' },
        signal: ctx.signal,
      });
      go(`/jobs/${created.id}`);
    } catch (err) {
      if (ctx.signal.aborted) return;
      showError(err.message);
      textarea.focus();
    } finally {
      button.disabled = false;
    }
  });
  textarea.focus();
}

// --- start ---------------------------------------------------------------------------------------

window.addEventListener('hashchange', () => {
  render();
  $('#main').focus({ preventScroll: true });
});
document.addEventListener('DOMContentLoaded', render);
