/** A few DOM helpers: elements are built with textContent and attributes only, never from HTML strings. */

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attributes: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

/** The colour class of a link state: the default chart's states have their own, any other state one shared colour. */
export function stateClass(state: string): string {
  return ['healthy', 'probing', 'tripped', 'disabled', 'starting'].includes(state) ? `state-${state}` : 'state-other';
}

export function ago(iso: string | null, nowInMs: number): string {
  if (iso === null) return '—';
  const seconds = Math.max(0, Math.round((nowInMs - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  return `${Math.floor(seconds / 3600)}h ago`;
}
