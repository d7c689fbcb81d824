/**
 * The all-stores table: searchable, sortable, virtualised. Only the rows in view (and a few either side) are in the
 * DOM, positioned over a spacer as tall as all rows, so 5,000 stores cost as much to scroll as 30.
 */
import type { StoreRow } from './api.js';
import { ago, el, stateClass } from './dom.js';

export const ROW_HEIGHT = 28;
const OVERSCAN = 8;

interface Column {
  key: string;
  title: string;
  numeric?: boolean;
  text: (row: StoreRow, nowInMs: number) => string;
  sortValue: (row: StoreRow) => string | number;
}

const COLUMNS: Column[] = [
  { key: 'storeId', title: 'Store', text: (row) => row.storeId, sortValue: (row) => row.storeId },
  { key: 'mode', title: 'Mode', text: (row) => (row.bidirectional ? 'real-time' : 'async'), sortValue: (row) => (row.bidirectional ? 0 : 1) },
  { key: 'state', title: 'Link', text: (row) => row.state, sortValue: (row) => row.state },
  { key: 'reason', title: 'Why', text: (row) => row.reason ?? '', sortValue: (row) => row.reason ?? '' },
  { key: 'lastHeard', title: 'Last heard', text: (row, now) => ago(row.lastHeardFromAt, now), sortValue: (row) => (row.lastHeardFromAt === null ? 0 : Date.parse(row.lastHeardFromAt)) },
  { key: 'latency', title: 'Relay ms', numeric: true, text: (row) => (row.relayLatencyInMs === null ? '—' : row.relayLatencyInMs.toFixed(1)), sortValue: (row) => row.relayLatencyInMs ?? -1 },
  { key: 'backlog', title: 'Backlog', numeric: true, text: (row) => String(row.backlog), sortValue: (row) => row.backlog },
  { key: 'relay', title: 'Relay/h', numeric: true, text: (row) => String(row.lastHour.relay), sortValue: (row) => row.lastHour.relay },
  { key: 'queue', title: 'Queue/h', numeric: true, text: (row) => String(row.lastHour.queue), sortValue: (row) => row.lastHour.queue },
  { key: 'fallbacks', title: 'Fallbacks/h', numeric: true, text: (row) => String(row.lastHour.fallbacks), sortValue: (row) => row.lastHour.fallbacks },
  { key: 'failures', title: 'Failures/h', numeric: true, text: (row) => String(row.lastHour.failures), sortValue: (row) => row.lastHour.failures },
];

export class StoreTable {
  readonly element: HTMLElement;
  readonly #body: HTMLElement;
  readonly #spacer: HTMLElement;
  readonly #count: HTMLElement;
  readonly #search: HTMLInputElement;
  readonly #headers = new Map<string, HTMLButtonElement>();
  /** Row elements reused as the view scrolls. */
  readonly #pool: HTMLElement[] = [];
  #rows: StoreRow[] = [];
  #view: StoreRow[] = [];
  #query = '';
  #sortKey = 'storeId';
  #sortDirection = 1;
  #frame = 0;
  /** Set when the rows' data changed: every shown row is bound again at the next frame. */
  #dirty = true;
  #nowInMs = Date.now();

  constructor(private readonly open: (storeId: string) => void) {
    this.#search = el('input', { type: 'search', placeholder: 'Filter stores: id, state, mode, reason', 'aria-label': 'Filter stores', id: 'store-filter' });
    this.#search.addEventListener('input', () => {
      this.#query = this.#search.value.trim().toLowerCase();
      this.#refilter();
    });
    this.#count = el('span', { class: 'notice', id: 'store-count' });
    const head = el('div', { class: 'grid-head', role: 'row' });
    for (const column of COLUMNS) {
      const button = el('button', { type: 'button', 'data-sort': column.key, class: column.numeric === true ? 'num' : '' }, column.title);
      button.addEventListener('click', () => {
        if (this.#sortKey === column.key) this.#sortDirection = -this.#sortDirection;
        else {
          this.#sortKey = column.key;
          this.#sortDirection = 1;
        }
        this.#refilter();
      });
      this.#headers.set(column.key, button);
      head.append(el('span', { role: 'columnheader' }, button));
    }
    this.#spacer = el('div', { class: 'grid-spacer' });
    this.#body = el('div', { class: 'grid-body', id: 'store-rows', role: 'rowgroup' }, this.#spacer);
    this.#body.addEventListener('scroll', () => this.#schedule(), { passive: true });
    this.#body.addEventListener('click', (event) => {
      const row = (event.target as HTMLElement).closest<HTMLElement>('.grid-row');
      const storeId = row?.dataset['storeId'];
      if (storeId !== undefined) this.open(storeId);
    });
    this.element = el('section', { class: 'panel', id: 'stores' }, el('h2', {}, 'Stores'), el('div', { class: 'toolbar' }, this.#search, this.#count), el('div', { role: 'table', 'aria-label': 'Stores' }, head, this.#body));
  }

  /** Replaces every row (a fresh snapshot). */
  setRows(rows: StoreRow[], nowInMs: number): void {
    this.#rows = rows;
    this.#nowInMs = nowInMs;
    this.#refilter();
  }

  /** A link change from the event stream: that row only, at once. */
  updateLink(storeId: string, state: string, tags: string[]): void {
    const row = this.#rows.find((candidate) => candidate.storeId === storeId);
    if (row === undefined) return;
    row.state = state;
    row.tags = tags;
    if (tags.includes('relay')) row.reason = null;
    else if (row.bidirectional) row.reason ??= 'relay unavailable';
    this.#dirty = true;
    this.#schedule();
  }

  #refilter(): void {
    const query = this.#query;
    const column = COLUMNS.find(({ key }) => key === this.#sortKey)!;
    const now = this.#nowInMs;
    this.#view = query === '' ? [...this.#rows] : this.#rows.filter((row) => COLUMNS.slice(0, 4).some((candidate) => candidate.text(row, now).toLowerCase().includes(query)));
    const direction = this.#sortDirection;
    this.#view.sort((a, b) => {
      const left = column.sortValue(a);
      const right = column.sortValue(b);
      return (left < right ? -1 : left > right ? 1 : 0) * direction || (a.storeId < b.storeId ? -1 : 1);
    });
    for (const [key, button] of this.#headers) button.setAttribute('aria-sort', key === this.#sortKey ? (direction === 1 ? 'ascending' : 'descending') : 'none');
    this.#count.textContent = `${this.#view.length} of ${this.#rows.length} stores`;
    this.#spacer.style.height = `${this.#view.length * ROW_HEIGHT}px`;
    this.#dirty = true;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#frame !== 0) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#render();
    });
  }

  #render(): void {
    const height = this.#body.clientHeight || 448;
    const first = Math.max(0, Math.floor(this.#body.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.#view.length, Math.ceil((this.#body.scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
    // Row i always lives in slot i % capacity: scrolling by k rows rebinds k elements, the others stay untouched.
    const capacity = Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN + 1;
    if (this.#pool.length !== capacity) {
      while (this.#pool.length < capacity) {
        const row = el('div', { class: 'grid-row', role: 'row' });
        for (const column of COLUMNS) row.append(el('span', { role: 'cell', class: column.numeric === true ? 'num' : '' }));
        this.#body.append(row);
        this.#pool.push(row);
      }
      while (this.#pool.length > capacity) this.#pool.pop()!.remove();
      this.#dirty = true;
    }
    const dirty = this.#dirty;
    this.#dirty = false;
    for (let slot = 0; slot < capacity; slot += 1) {
      const element = this.#pool[slot]!;
      // The row index this slot shows in [first, last), if any.
      const index = first + ((slot - (first % capacity) + capacity) % capacity);
      if (index >= last) {
        if (!element.hidden) {
          element.hidden = true;
          delete element.dataset['index'];
          delete element.dataset['storeId'];
          delete element.dataset['state'];
        }
        continue;
      }
      if (element.hidden) element.hidden = false;
      if (!dirty && element.dataset['index'] === String(index)) continue;
      this.#bind(element, index);
    }
  }

  #bind(element: HTMLElement, index: number): void {
    const store = this.#view[index]!;
    const now = this.#nowInMs;
    element.dataset['index'] = String(index);
    element.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
    if (element.dataset['storeId'] !== store.storeId) element.dataset['storeId'] = store.storeId;
    if (element.dataset['state'] !== store.state) element.dataset['state'] = store.state;
    const cells = element.children;
    for (let column = 0; column < COLUMNS.length; column += 1) {
      const cell = cells[column] as HTMLElement;
      const text = COLUMNS[column]!.text(store, now);
      if (cell.textContent !== text) cell.textContent = text;
    }
    const badge = cells[2] as HTMLElement;
    const wanted = `badge ${stateClass(store.state)}`;
    if (badge.className !== wanted) badge.className = wanted;
  }
}
