/**
 * The storelink operations console: sign in with an API key (kept in sessionStorage only, sent in a header, never
 * in a URL), then the all-stores page (overview, last hour, the table) or one store's page (its chart, recent
 * operations, dead letters), kept live by the cloud's event stream.
 */
import { Api, ApiError, type ActivitySnapshot, type OperationView, type Session } from './api.js';
import { drawChart } from './chartSvg.js';
import { ago, el, stateClass } from './dom.js';
import { LastHourChart } from './lastHourChart.js';
import { Overview } from './overview.js';
import { StoreTable } from './storeTable.js';

const KEY_STORAGE = 'storelink.console.apiKey';
/** Operations seen on the event stream, kept for the store pages (newest last); older ones are dropped. */
const MAX_SEEN_OPERATIONS = 5_000;
/** A burst of events refreshes the aggregates once, at most this often. */
const REFRESH_INTERVAL_IN_MS = 1_000;

const app = document.getElementById('app')!;
const who = document.getElementById('who')!;
const streamBadge = document.getElementById('stream')!;
const signOutButton = document.getElementById('sign-out') as HTMLButtonElement;

interface Signed {
  api: Api;
  session: Session;
  admin: boolean;
  stop: AbortController;
}

let signed: Signed | undefined;
let snapshot: ActivitySnapshot | undefined;
const seen = new Map<string, OperationView>();
const table = new StoreTable((storeId) => (location.hash = `#/stores/${encodeURIComponent(storeId)}`));
const overview = new Overview((storeId) => (location.hash = `#/stores/${encodeURIComponent(storeId)}`));
const lastHour = new LastHourChart();
/** Set while a store page is shown: what the event stream should update on it. */
let storePage: { storeId: string; refreshChart: () => void; refreshOperations: () => void } | undefined;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let lastRefreshAt = 0;

function refusalText(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 401) return 'This API key is unknown, revoked or expired, or its secret is wrong.';
    if (error.status === 403) return `This API key may not do that: ${error.message}`;
    return `${error.code}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function showSignIn(message?: string): void {
  signed?.stop.abort();
  signed = undefined;
  storePage = undefined;
  who.textContent = '';
  signOutButton.hidden = true;
  const input = el('input', { type: 'password', id: 'api-key', name: 'api-key', autocomplete: 'off', placeholder: 'name.secret', 'aria-label': 'API key', required: '' });
  const error = el('p', { class: 'error', id: 'sign-in-error', role: 'alert' }, message ?? '');
  const form = el(
    'form',
    { class: 'panel sign-in', id: 'sign-in' },
    el('h2', {}, 'Sign in'),
    el('p', { class: 'notice' }, 'An API key with the read scope (storelink apikeys create --scope read). It is kept in this tab only.'),
    input,
    el('button', { type: 'submit' }, 'Sign in'),
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void signIn(input.value.trim()).catch((failure: unknown) => {
      error.textContent = refusalText(failure);
    });
  });
  app.replaceChildren(form);
  input.focus();
}

async function signIn(key: string): Promise<void> {
  if (key === '') throw new Error('Type an API key.');
  const api = new Api(key);
  let session: Session;
  try {
    session = await api.session();
  } catch (error) {
    sessionStorage.removeItem(KEY_STORAGE);
    throw error;
  }
  if (!session.scopes.includes('read')) {
    sessionStorage.removeItem(KEY_STORAGE);
    throw new Error(`The key "${session.name}" has no read scope (it has: ${session.scopes.join(', ') || 'none'}); the console needs a key with the read scope.`);
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  signed = { api, session, admin: session.scopes.includes('admin'), stop: new AbortController() };
  who.textContent = `${session.name} (${session.scopes.join(', ')})`;
  signOutButton.hidden = false;
  document.body.dataset['signedIn'] = 'true';
  void signed.api.follow(onEvent, onStreamState, signed.stop.signal);
  await refresh();
  route();
}

function onStreamState(open: boolean, refused?: ApiError): void {
  streamBadge.dataset['stream'] = open ? 'open' : 'closed';
  streamBadge.textContent = open ? 'live' : 'offline';
  if (refused !== undefined) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn(refusalText(refused));
  }
}

function remember(operation: OperationView): void {
  seen.delete(operation.id);
  seen.set(operation.id, operation);
  if (seen.size > MAX_SEEN_OPERATIONS) seen.delete(seen.keys().next().value!);
}

interface DeliveryEvent {
  operationId: string;
  storeId: string;
  type: string;
  channel: 'relay' | 'queue' | null;
  outcome: string;
  reply?: unknown;
  rejection?: { code: string; message: string };
  failure?: { code: string; message: string };
  fallbackReason?: string;
  durationInMs: number;
}

interface OutcomeEvent {
  operationId: string;
  storeId: string;
  type: string;
  outcome: string;
  reply?: unknown;
  rejection?: { code: string; message: string };
  failure?: { code: string; message: string };
  channel: 'relay' | 'queue';
  late: boolean;
  at: string;
}

const STATUS_OF_DELIVERY: Record<string, string> = { delivered: 'done', queued: 'queued', rejected: 'rejected', 'served-cached': 'done', failed: 'failed' };

function onEvent(event: string, data: unknown): void {
  if (event === 'link') {
    const change = data as { storeId: string; state: string; tags: string[] };
    table.updateLink(change.storeId, change.state, change.tags);
    const row = snapshot?.stores.find((candidate) => candidate.storeId === change.storeId);
    if (row !== undefined) {
      row.state = change.state;
      row.tags = change.tags;
      overview.schedule();
    }
    if (storePage?.storeId === change.storeId) storePage.refreshChart();
  } else if (event === 'delivery') {
    const delivery = data as DeliveryEvent;
    const known = seen.get(delivery.operationId);
    remember({
      id: delivery.operationId,
      storeId: delivery.storeId,
      type: delivery.type,
      status: STATUS_OF_DELIVERY[delivery.outcome] ?? delivery.outcome,
      channel: delivery.channel,
      fallback: delivery.fallbackReason ?? null,
      outcome:
        delivery.outcome === 'queued'
          ? (known?.outcome ?? null)
          : { outcome: delivery.outcome, ...(delivery.reply === undefined ? {} : { reply: delivery.reply }), ...(delivery.rejection === undefined ? {} : { rejection: delivery.rejection }), ...(delivery.failure === undefined ? {} : { failure: delivery.failure }) },
      lateOutcomes: known?.lateOutcomes ?? 0,
      publishedAt: known?.publishedAt ?? new Date().toISOString(),
      durationInMs: delivery.durationInMs,
    });
    if (storePage?.storeId === delivery.storeId) storePage.refreshOperations();
  } else if (event === 'outcome') {
    const outcome = data as OutcomeEvent;
    const known = seen.get(outcome.operationId);
    remember({
      id: outcome.operationId,
      storeId: outcome.storeId,
      type: outcome.type,
      status: outcome.outcome,
      channel: known?.channel ?? outcome.channel,
      fallback: known?.fallback ?? null,
      outcome: { outcome: outcome.outcome, ...(outcome.reply === undefined ? {} : { reply: outcome.reply }), ...(outcome.rejection === undefined ? {} : { rejection: outcome.rejection }), ...(outcome.failure === undefined ? {} : { failure: outcome.failure }) },
      lateOutcomes: (known?.lateOutcomes ?? 0) + (outcome.late ? 1 : 0),
      publishedAt: known?.publishedAt ?? outcome.at,
      durationInMs: known?.durationInMs ?? null,
    });
    if (storePage?.storeId === outcome.storeId) storePage.refreshOperations();
  } else if (event === 'reset') {
    // Events were missed: the aggregates are read again below.
  }
  scheduleRefresh();
}

function scheduleRefresh(): void {
  if (refreshTimer !== undefined) return;
  const wait = Math.max(0, lastRefreshAt + REFRESH_INTERVAL_IN_MS - Date.now());
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined;
    void refresh().catch((error: unknown) => console.warn('storelink console: refresh failed', error));
  }, wait);
}

async function refresh(): Promise<void> {
  if (signed === undefined) return;
  lastRefreshAt = Date.now();
  snapshot = await signed.api.activity();
  const now = Date.parse(snapshot.at);
  table.setRows(snapshot.stores.map((row) => ({ ...row })), now);
  overview.setRows(snapshot.stores);
  lastHour.update(snapshot.lastHour);
}

function route(): void {
  if (signed === undefined) return;
  const match = /^#\/stores\/(.+)$/.exec(location.hash);
  if (match === null) showStores();
  else showStore(decodeURIComponent(match[1]!));
}

function showStores(): void {
  storePage = undefined;
  document.title = 'storelink console';
  app.replaceChildren(el('div', { class: 'row-of-panels' }, overview.element, lastHour.element), table.element);
  overview.schedule();
  if (snapshot !== undefined) table.setRows(snapshot.stores.map((row) => ({ ...row })), Date.parse(snapshot.at));
}

function replyText(operation: OperationView): string {
  const outcome = operation.outcome;
  if (outcome === null) return '';
  if (outcome.rejection !== undefined) return `${outcome.rejection.code}: ${outcome.rejection.message}`;
  if (outcome.failure !== undefined) return `${outcome.failure.code}: ${outcome.failure.message}`;
  return outcome.reply === undefined ? '' : JSON.stringify(outcome.reply).slice(0, 300);
}

function showStore(storeId: string): void {
  const current = signed!;
  document.title = `${storeId} — storelink console`;
  const heading = el('h2', { id: 'store-heading' }, `Store ${storeId}`);
  const state = el('span', { id: 'store-state' });
  const chartBox = el('div', { id: 'chart-box' }, el('p', { class: 'notice' }, 'Loading the chart…'));
  const operationsBody = el('tbody', { id: 'operations' });
  const operationsNote = el('p', { class: 'notice', id: 'operations-source' });
  const deadLettersBox = el('div', { id: 'dead-letters' }, el('p', { class: 'notice' }, 'Loading dead letters…'));
  const deadLettersNote = el('p', { class: 'notice', id: 'dead-letters-note', role: 'status' });
  app.replaceChildren(
    el('p', {}, el('a', { href: '#/' }, '← all stores')),
    el('section', { class: 'panel' }, heading, state, chartBox),
    el(
      'section',
      { class: 'panel' },
      el('h2', {}, 'Recent operations'),
      operationsNote,
      el('table', { class: 'plain' }, el('thead', {}, el('tr', {}, ...['Operation', 'Type', 'Status', 'Channel', 'Fallback', 'Duration', 'Late outcomes', 'Reply'].map((title) => el('th', {}, title)))), operationsBody),
    ),
    el('section', { class: 'panel' }, el('h2', {}, 'Dead letters'), deadLettersNote, deadLettersBox),
  );

  let routeOperations: OperationView[] | undefined;
  const renderOperations = () => {
    const live = [...seen.values()].filter((operation) => operation.storeId === storeId).reverse();
    const merged = new Map<string, OperationView>();
    for (const operation of [...live, ...(routeOperations ?? [])]) if (!merged.has(operation.id)) merged.set(operation.id, operation);
    const list = [...merged.values()].slice(0, 50);
    operationsNote.textContent = routeOperations === undefined ? 'Operations seen on the live event stream since this page opened.' : 'Operations recorded by the cloud, and live ones.';
    operationsBody.replaceChildren(
      ...list.map((operation) =>
        el(
          'tr',
          { 'data-operation-id': operation.id, 'data-status': operation.status },
          el('td', {}, operation.id.slice(0, 8)),
          el('td', {}, operation.type),
          el('td', {}, operation.status),
          el('td', {}, operation.channel ?? '—'),
          el('td', {}, operation.fallback ?? ''),
          el('td', { class: 'num' }, operation.durationInMs === null ? '—' : `${operation.durationInMs.toFixed(1)} ms`),
          el('td', { class: 'num' }, String(operation.lateOutcomes)),
          el('td', { class: 'reply' }, replyText(operation)),
        ),
      ),
    );
  };
  const loadChart = async () => {
    try {
      const view = await current.api.chart(storeId);
      if (storePage?.storeId !== storeId) return;
      state.replaceChildren('Link ', el('span', { class: `badge ${stateClass(view.state)}`, 'data-state': view.state }, view.state), ` ${view.tags.length > 0 ? `tags ${view.tags.join(', ')}` : 'no tags: relay unavailable'}`);
      chartBox.replaceChildren(drawChart(view));
    } catch (error) {
      chartBox.replaceChildren(el('p', { class: 'error' }, refusalText(error)));
    }
  };
  const loadDeadLetters = async () => {
    try {
      const { deadLetters } = await current.api.deadLetters(storeId);
      if (deadLetters.length === 0) {
        deadLettersBox.replaceChildren(el('p', { class: 'notice', id: 'no-dead-letters' }, 'No dead letters.'));
        return;
      }
      const rows = deadLetters.map((letter) => {
        const cells = [
          el('td', {}, letter.sequenceNumber),
          el('td', {}, letter.reason ?? ''),
          el('td', {}, letter.description ?? ''),
          el('td', {}, letter.operation === null ? '(not an operation)' : `${letter.operation.type} ${letter.operation.id.slice(0, 8)}`),
          el('td', {}, ago(letter.enqueuedAt, Date.now())),
        ];
        if (current.admin) {
          const button = el('button', { type: 'button', 'data-resubmit': letter.sequenceNumber }, 'Resubmit');
          button.addEventListener('click', () => {
            button.disabled = true;
            void current.api.resubmit(storeId, letter.sequenceNumber).then(
              (result) => {
                deadLettersNote.textContent = `Resubmitted ${result.operationId ?? letter.sequenceNumber}${result.mayBeDroppedAsDuplicate ? ' (if the queue detects duplicates, Service Bus may drop it)' : ''}.`;
                void loadDeadLetters();
              },
              (error: unknown) => {
                button.disabled = false;
                deadLettersNote.textContent = refusalText(error);
              },
            );
          });
          cells.push(el('td', {}, button));
        }
        return el('tr', { 'data-sequence-number': letter.sequenceNumber }, ...cells);
      });
      const titles = ['Seq', 'Reason', 'Description', 'Operation', 'Enqueued', ...(current.admin ? [''] : [])];
      deadLettersBox.replaceChildren(el('table', { class: 'plain' }, el('thead', {}, el('tr', {}, ...titles.map((title) => el('th', {}, title)))), el('tbody', {}, ...rows)));
      if (!current.admin) deadLettersNote.textContent = 'Resubmitting needs a key with the admin scope.';
    } catch (error) {
      deadLettersBox.replaceChildren(el('p', { class: 'notice' }, refusalText(error)));
    }
  };
  storePage = { storeId, refreshChart: () => void loadChart(), refreshOperations: renderOperations };
  renderOperations();
  void loadChart();
  void loadDeadLetters();
  void current.api.operations(storeId).then(
    ({ operations }) => {
      routeOperations = operations;
      if (storePage?.storeId === storeId) renderOperations();
    },
    // Not served by this cloud (yet): the live event stream is the source.
    () => undefined,
  );
}

signOutButton.addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  delete document.body.dataset['signedIn'];
  showSignIn();
});
window.addEventListener('hashchange', route);

const stored = sessionStorage.getItem(KEY_STORAGE);
if (stored === null) showSignIn();
else void signIn(stored).catch((error: unknown) => showSignIn(refusalText(error)));
