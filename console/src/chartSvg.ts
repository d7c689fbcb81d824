/**
 * Draws a link chart from its structure (`GET /stores/:storeId/chart`): top-level states in a row, a compound state's
 * children stacked inside it, a parallel state's regions side by side; transitions as arcs between boxes, rightward
 * above and leftward below, labelled with their events. The store's current states are marked `active`.
 */
import type { ChartStateView, StoreChart } from './api.js';
import { svg } from './dom.js';

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

const PADDING = 10;
const HEADER = 22;
const GAP = 12;
const TOP_GAP = 70;
const ARC_ROOM = 70;

function size(state: ChartStateView, sizes: Map<string, { width: number; height: number }>): { width: number; height: number } {
  const title = state.key.length * 7 + 24;
  let result: { width: number; height: number };
  if (state.states.length === 0) {
    result = { width: Math.max(84, title), height: 32 };
  } else {
    const children = state.states.map((child) => size(child, sizes));
    if (state.type === 'parallel') {
      const width = children.reduce((sum, child) => sum + child.width, 0) + GAP * (children.length - 1);
      result = { width: Math.max(title, width + 2 * PADDING), height: HEADER + Math.max(...children.map((child) => child.height)) + PADDING };
    } else {
      const height = children.reduce((sum, child) => sum + child.height, 0) + GAP * (children.length - 1);
      result = { width: Math.max(title, Math.max(...children.map((child) => child.width)) + 2 * PADDING), height: HEADER + height + PADDING };
    }
  }
  sizes.set(state.id, result);
  return result;
}

function place(state: ChartStateView, x: number, y: number, sizes: Map<string, { width: number; height: number }>, boxes: Map<string, Box>): void {
  const { width, height } = sizes.get(state.id)!;
  boxes.set(state.id, { x, y, width, height });
  let cursorX = x + PADDING;
  let cursorY = y + HEADER;
  for (const child of state.states) {
    const childSize = sizes.get(child.id)!;
    // Centred in its parent when stacked.
    place(child, state.type === 'parallel' ? cursorX : x + (width - childSize.width) / 2, cursorY, sizes, boxes);
    if (state.type === 'parallel') cursorX += childSize.width + GAP;
    else cursorY += childSize.height + GAP;
  }
}

function all(states: readonly ChartStateView[]): ChartStateView[] {
  return states.flatMap((state) => [state, ...all(state.states)]);
}

/** A transition's label: its event, shortened for xstate's own (`after untilHealthyProbe`, `done`, `error`). */
export function labelOf(transition: ChartStateView['transitions'][number]): string {
  if (transition.kind === 'always') return 'always';
  const event = transition.event ?? '';
  if (transition.kind === 'after') return `after ${typeof transition.delay === 'string' ? transition.delay : `${String(transition.delay)} ms`}`;
  if (event.startsWith('xstate.done.actor')) return 'done';
  if (event.startsWith('xstate.error.actor')) return 'error';
  return event;
}

export function drawChart(view: StoreChart): SVGElement {
  const sizes = new Map<string, { width: number; height: number }>();
  const boxes = new Map<string, Box>();
  const top = view.chart.states.map((state) => size(state, sizes));
  const rowHeight = Math.max(...top.map((box) => box.height));
  let x = 20;
  view.chart.states.forEach((state, index) => {
    place(state, x, ARC_ROOM + (rowHeight - top[index]!.height) / 2, sizes, boxes);
    x += top[index]!.width + TOP_GAP;
  });
  const width = x - TOP_GAP + 20;
  const height = rowHeight + 2 * ARC_ROOM;
  const active = new Set(view.activeStates);
  const states = all(view.chart.states);

  const groups = states.map((state) => {
    const box = boxes.get(state.id)!;
    const leaf = state.states.length === 0;
    const classes = ['state', state.type, leaf ? 'leaf' : '', active.has(state.id) ? 'active' : ''].filter(Boolean).join(' ');
    const label = svg('text', { x: box.x + 8, y: leaf ? box.y + box.height / 2 + 4 : box.y + 15 }, state.key + (state.tags.length > 0 ? ` [${state.tags.join(', ')}]` : ''));
    return svg('g', { class: classes, 'data-state-id': state.id, ...(active.has(state.id) ? { 'aria-current': 'true' } : {}) }, svg('rect', { x: box.x, y: box.y, width: box.width, height: box.height, rx: 6 }), label);
  });

  // One arc per source and target, its events joined.
  const arcs = new Map<string, { from: string; to: string; labels: Set<string> }>();
  for (const state of states) {
    for (const transition of state.transitions) {
      for (const target of transition.targets) {
        if (target === state.id || !boxes.has(target)) continue;
        const key = `${state.id}→${target}`;
        const arc = arcs.get(key) ?? { from: state.id, to: target, labels: new Set<string>() };
        arc.labels.add(labelOf(transition));
        arcs.set(key, arc);
      }
    }
  }
  let lane = 0;
  const paths = [...arcs.values()].map(({ from, to, labels }) => {
    const a = boxes.get(from)!;
    const b = boxes.get(to)!;
    const rightward = a.x + a.width / 2 <= b.x + b.width / 2;
    const startX = a.x + a.width / 2;
    const endX = b.x + b.width / 2;
    const startY = rightward ? a.y : a.y + a.height;
    const endY = rightward ? b.y : b.y + b.height;
    lane = (lane + 1) % 4;
    const bend = (rightward ? -1 : 1) * (24 + lane * 10 + Math.min(40, Math.abs(endX - startX) / 12));
    const controlY = (rightward ? Math.min(startY, endY) : Math.max(startY, endY)) + bend;
    const midX = (startX + endX) / 2;
    return svg(
      'g',
      { class: 'transition', 'data-from': from, 'data-to': to },
      svg('path', { d: `M ${startX} ${startY} Q ${midX} ${controlY} ${endX} ${endY}` }),
      svg('text', { x: midX, y: (startY + endY) / 2 + (controlY - (startY + endY) / 2) / 2 + (rightward ? -2 : 10), 'text-anchor': 'middle' }, [...labels].join(', ')),
    );
  });

  const marker = svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8a93a3' })));
  return svg('svg', { class: 'chart', id: 'store-chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `chart ${view.chart.id}, current state ${view.state}` }, marker, ...groups, ...paths);
}
