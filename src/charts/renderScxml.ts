/**
 * Renders a chart model as W3C SCXML. `after` timers become what SCXML calls delayed events: a `<send>` on entry,
 * a `<cancel>` on exit and a transition on the event. Named actions, guards and delays are implementations the chart
 * leaves to its host, so they appear by name: guards as `cond`, named delays as `delayexpr`, actions and tags in the
 * storelink namespace.
 */
import type { ChartModel, ChartState, ChartTransition } from './chartModel.js';

const SCXML_NS = 'http://www.w3.org/2005/07/scxml';
const STORELINK_NS = 'urn:storelink:chart';

function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

function attributes(values: Record<string, string | undefined>): string {
  return Object.entries(values)
    .filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== '')
    .map(([name, value]) => ` ${name}="${escapeXml(value)}"`)
    .join('');
}

/** An id SCXML accepts (an XML NCName): the dotted path, with anything else replaced. */
function scxmlId(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z_]/.test(safe) ? safe : `_${safe}`;
}

function sendId(state: ChartState, transition: ChartTransition): string {
  return scxmlId(`${state.id}.${transition.event ?? 'after'}`);
}

function delayAttributes(delay: string | number | undefined): Record<string, string | undefined> {
  if (typeof delay === 'number') return { delay: `${delay}ms` };
  return { delayexpr: delay };
}

function actionElements(actions: readonly string[], indent: string): string[] {
  return actions.map((name) => `${indent}<storelink:action${attributes({ name })}/>`);
}

function renderState(state: ChartState, indent: string, lines: string[]): void {
  const element = state.type === 'final' ? 'final' : state.type === 'parallel' ? 'parallel' : state.type === 'history' ? 'history' : 'state';
  const attrs = attributes({
    id: scxmlId(state.id),
    initial: state.type === 'compound' && state.initial !== undefined ? scxmlId(state.initial) : undefined,
    type: state.history,
    'storelink:tags': state.tags.join(' '),
  });
  const timers = state.transitions.filter((transition) => transition.kind === 'after');
  const lines0 = lines.length;
  lines.push(`${indent}<${element}${attrs}>`);
  const inner = `${indent}  `;
  if (state.description !== undefined) lines.push(`${inner}<!-- ${escapeXml(state.description).replace(/--/g, '- -')} -->`);
  if (state.entry.length > 0 || timers.length > 0) {
    lines.push(`${inner}<onentry>`);
    lines.push(...actionElements(state.entry, `${inner}  `));
    for (const timer of timers) {
      lines.push(`${inner}  <send${attributes({ id: sendId(state, timer), event: timer.event, ...delayAttributes(timer.delay) })}/>`);
    }
    lines.push(`${inner}</onentry>`);
  }
  if (state.exit.length > 0 || timers.length > 0) {
    lines.push(`${inner}<onexit>`);
    lines.push(...actionElements(state.exit, `${inner}  `));
    for (const timer of timers) lines.push(`${inner}  <cancel${attributes({ sendid: sendId(state, timer) })}/>`);
    lines.push(`${inner}</onexit>`);
  }
  for (const transition of state.transitions) {
    const attrs = attributes({
      event: transition.event,
      cond: transition.guard,
      target: transition.targets.map(scxmlId).join(' '),
      type: transition.targets.length === 0 ? 'internal' : undefined,
    });
    if (transition.actions.length === 0) {
      lines.push(`${inner}<transition${attrs}/>`);
    } else {
      lines.push(`${inner}<transition${attrs}>`, ...actionElements(transition.actions, `${inner}  `), `${inner}</transition>`);
    }
  }
  for (const child of state.states) renderState(child, inner, lines);
  if (lines.length === lines0 + 1) {
    lines[lines0] = `${indent}<${element}${attrs}/>`;
  } else {
    lines.push(`${indent}</${element}>`);
  }
}

export function renderScxml(model: ChartModel): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<scxml${attributes({
      xmlns: SCXML_NS,
      'xmlns:storelink': STORELINK_NS,
      version: '1.0',
      datamodel: 'ecmascript',
      name: model.id,
      initial: model.initial === undefined ? undefined : scxmlId(model.initial),
    })}>`,
  ];
  if (model.transitions.length === 0) {
    for (const state of model.states) renderState(state, '  ', lines);
  } else {
    // SCXML's root holds no transitions: chart-wide ones go on a state wrapping the whole chart.
    const wrapper: ChartState = {
      id: `${model.id}`,
      key: model.id,
      type: 'compound',
      tags: [],
      entry: [],
      exit: [],
      transitions: model.transitions,
      states: model.states,
      ...(model.initial === undefined ? {} : { initial: model.initial }),
    };
    lines[1] = lines[1]!.replace(/ initial="[^"]*"/, ` initial="${escapeXml(scxmlId(model.id))}"`);
    renderState(wrapper, '  ', lines);
  }
  lines.push('</scxml>');
  return `${lines.join('\n')}\n`;
}
