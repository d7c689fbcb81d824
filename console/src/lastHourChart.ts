/** Deliveries per channel (stacked bars) and fallbacks (dots) per minute over the last hour, as a small SVG. */
import type { ActivitySnapshot } from './api.js';
import { el, svg } from './dom.js';

const WIDTH = 600;
const HEIGHT = 120;
const BOTTOM = 16;

export class LastHourChart {
  readonly element: HTMLElement;
  readonly #figure: HTMLElement;
  readonly #summary: HTMLElement;

  constructor() {
    this.#figure = el('div', { id: 'last-hour-chart' });
    this.#summary = el('p', { class: 'notice', id: 'last-hour-summary' });
    this.element = el('section', { class: 'panel', id: 'last-hour' }, el('h2', {}, 'Deliveries per channel and fallbacks, last hour'), this.#figure, this.#summary);
  }

  update(minutes: ActivitySnapshot['lastHour']): void {
    const peak = Math.max(1, ...minutes.map((minute) => minute.relay + minute.queue), ...minutes.map((minute) => minute.fallbacks));
    const slot = WIDTH / Math.max(1, minutes.length);
    const scale = (HEIGHT - BOTTOM - 4) / peak;
    const parts: SVGElement[] = [];
    minutes.forEach((minute, index) => {
      const x = index * slot + 1;
      const relayHeight = minute.relay * scale;
      const queueHeight = minute.queue * scale;
      const base = HEIGHT - BOTTOM;
      if (minute.relay > 0) parts.push(svg('rect', { class: 'relay', x, y: base - relayHeight, width: slot - 2, height: relayHeight }, svg('title', {}, `${minute.at}: ${minute.relay} by relay`)));
      if (minute.queue > 0) parts.push(svg('rect', { class: 'queue', x, y: base - relayHeight - queueHeight, width: slot - 2, height: queueHeight }, svg('title', {}, `${minute.at}: ${minute.queue} by queue`)));
      if (minute.fallbacks > 0) parts.push(svg('circle', { class: 'fallbacks', cx: x + slot / 2 - 1, cy: base - minute.fallbacks * scale, r: 3 }, svg('title', {}, `${minute.at}: ${minute.fallbacks} fallbacks`)));
    });
    parts.push(svg('text', { x: 0, y: HEIGHT - 3 }, '60 min ago'), svg('text', { x: WIDTH - 24, y: HEIGHT - 3 }, 'now'), svg('text', { x: 0, y: 10 }, `peak ${peak}/min`));
    this.#figure.replaceChildren(svg('svg', { class: 'last-hour', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': 'Deliveries per minute, last hour' }, ...parts));
    const total = minutes.reduce((sum, minute) => ({ relay: sum.relay + minute.relay, queue: sum.queue + minute.queue, fallbacks: sum.fallbacks + minute.fallbacks }), { relay: 0, queue: 0, fallbacks: 0 });
    this.#summary.textContent = `last hour: ${total.relay} by relay, ${total.queue} by queue, ${total.fallbacks} fallbacks`;
  }
}
