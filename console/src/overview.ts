/** Every store as one coloured cell by link state, on a canvas (5,000 cells would be 5,000 DOM nodes), with counts per state. */
import type { StoreRow } from './api.js';
import { el, stateClass } from './dom.js';

const CELL = 10;
const GAP = 2;

const COLOURS: Record<string, string> = {
  'state-healthy': '#2e8b57',
  'state-probing': '#d99a00',
  'state-tripped': '#c0392b',
  'state-disabled': '#8a8f98',
  'state-starting': '#3b7dd8',
  'state-other': '#7d4cc0',
};

export class Overview {
  readonly element: HTMLElement;
  readonly #canvas: HTMLCanvasElement;
  readonly #legend: HTMLElement;
  #rows: StoreRow[] = [];
  #columns = 1;
  #frame = 0;

  constructor(open: (storeId: string) => void) {
    this.#canvas = el('canvas', { class: 'overview', role: 'img', 'aria-label': 'Stores by link state' });
    this.#legend = el('div', { class: 'legend', id: 'overview-legend' });
    this.#canvas.addEventListener('click', (event) => {
      const bounds = this.#canvas.getBoundingClientRect();
      const column = Math.floor((event.clientX - bounds.left) / (CELL + GAP));
      const line = Math.floor((event.clientY - bounds.top) / (CELL + GAP));
      const row = this.#rows[line * this.#columns + column];
      if (row !== undefined && column < this.#columns) open(row.storeId);
    });
    this.element = el('section', { class: 'panel', id: 'overview' }, el('h2', {}, 'Overview'), this.#canvas, this.#legend);
  }

  setRows(rows: StoreRow[]): void {
    this.#rows = rows;
    this.schedule();
  }

  schedule(): void {
    if (this.#frame !== 0) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#draw();
    });
  }

  #draw(): void {
    const width = Math.max(CELL, this.#canvas.clientWidth || 400);
    this.#columns = Math.max(1, Math.floor((width + GAP) / (CELL + GAP)));
    const lines = Math.max(1, Math.ceil(this.#rows.length / this.#columns));
    const height = lines * (CELL + GAP);
    const ratio = window.devicePixelRatio || 1;
    this.#canvas.width = Math.round(width * ratio);
    this.#canvas.height = Math.round(height * ratio);
    this.#canvas.style.height = `${height}px`;
    const context = this.#canvas.getContext('2d');
    const counts = new Map<string, number>();
    if (context !== null) {
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.clearRect(0, 0, width, height);
      this.#rows.forEach((row, index) => {
        context.fillStyle = COLOURS[stateClass(row.state)]!;
        context.fillRect((index % this.#columns) * (CELL + GAP), Math.floor(index / this.#columns) * (CELL + GAP), CELL, CELL);
      });
    }
    for (const row of this.#rows) counts.set(row.state, (counts.get(row.state) ?? 0) + 1);
    this.#legend.replaceChildren(
      ...[...counts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([state, count]) =>
        el('span', { 'data-legend-state': state, class: stateClass(state) }, el('span', { class: 'swatch' }), `${state} ${count}`),
      ),
    );
  }
}
