/**
 * A plain, JSON-friendly description of a state chart, read from an xstate v5 machine's state nodes. The Mermaid and
 * SCXML renderers and the `--format json` output all start from it, so they agree on what a chart contains.
 */
import type { AnyStateMachine } from 'xstate';

export type ChartStateType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface ChartTransition {
  /** `event`: on an event; `after`: a timer; `always`: eventless, taken as soon as its guard holds. */
  kind: 'event' | 'after' | 'always';
  /** The event type (for `after`, the internal `xstate.after.*` event). */
  event?: string;
  /** A named delay or a number of milliseconds, for `after`. */
  delay?: string | number;
  guard?: string;
  /** Target state ids; empty for a transition that only runs actions. */
  targets: string[];
  actions: string[];
}

export interface ChartState {
  /** Dotted path from the root, without the machine id: `bidirectional.healthy`. */
  id: string;
  key: string;
  type: ChartStateType;
  /** The id of the initial child, for compound states. */
  initial?: string;
  history?: 'shallow' | 'deep';
  tags: string[];
  description?: string;
  entry: string[];
  exit: string[];
  transitions: ChartTransition[];
  states: ChartState[];
}

export interface ChartModel {
  id: string;
  description?: string;
  initial?: string;
  states: ChartState[];
  /** Transitions declared on the machine itself: they apply in every state. */
  transitions: ChartTransition[];
  /** Events the chart reacts to anywhere, `xstate.after.*` timers excluded. */
  events: string[];
}

type AnyStateNode = AnyStateMachine['root'];

interface NamedThing {
  type?: unknown;
  name?: unknown;
  params?: unknown;
}

/** `name`, or `name(params)` for a parameterized guard or action with plain parameters. */
function nameOf(thing: unknown, fallback: string): string {
  if (typeof thing === 'string') return thing;
  if (typeof thing === 'function' || (typeof thing === 'object' && thing !== null)) {
    const { type, name, params } = thing as NamedThing;
    const base = typeof type === 'string' && type.length > 0 ? type : typeof name === 'string' && name.length > 0 ? name : fallback;
    if (params === undefined || typeof params === 'function') return base;
    const shown = typeof params === 'string' ? params : JSON.stringify(params);
    return shown === undefined ? base : `${base}(${shown})`;
  }
  return fallback;
}

/** Actions xstate adds itself to schedule and cancel `after` timers. */
const TIMER_PLUMBING = new Set(['xstate.raise', 'xstate.cancel']);

function actionNames(actions: readonly unknown[] | undefined, hideTimerPlumbing: boolean): string[] {
  return (actions ?? [])
    .map((action) => nameOf(action, 'inline action'))
    .filter((name) => !(hideTimerPlumbing && TIMER_PLUMBING.has(name)));
}

function stateId(node: AnyStateNode): string {
  return node.path.join('.');
}

interface TransitionLike {
  target?: readonly AnyStateNode[] | undefined;
  guard?: unknown;
  actions?: readonly unknown[];
  eventType: string;
  delay?: string | number | ((...args: never[]) => unknown);
}

function toTransition(kind: ChartTransition['kind'], definition: TransitionLike): ChartTransition {
  const transition: ChartTransition = {
    kind,
    targets: (definition.target ?? []).map(stateId),
    actions: actionNames(definition.actions, false),
  };
  if (kind !== 'always') transition.event = definition.eventType;
  if (kind === 'after' && definition.delay !== undefined) {
    transition.delay = typeof definition.delay === 'function' ? 'computed delay' : definition.delay;
  }
  if (definition.guard !== undefined) transition.guard = nameOf(definition.guard, 'inline guard');
  return transition;
}

function transitionsOf(node: AnyStateNode): ChartTransition[] {
  const delayedEvents = new Set(node.after.map((definition) => String(definition.eventType)));
  const transitions: ChartTransition[] = [];
  for (const [eventType, definitions] of Object.entries(node.on)) {
    if (delayedEvents.has(eventType)) continue;
    for (const definition of definitions) transitions.push(toTransition('event', definition));
  }
  for (const definition of node.after) transitions.push(toTransition('after', definition));
  for (const definition of node.always ?? []) transitions.push(toTransition('always', definition));
  return transitions;
}

function toState(node: AnyStateNode): ChartState {
  const hasTimers = node.after.length > 0;
  const transitions = transitionsOf(node);

  const state: ChartState = {
    id: stateId(node),
    key: node.key,
    type: node.type,
    tags: [...node.tags],
    entry: actionNames(node.entry, hasTimers),
    exit: actionNames(node.exit, hasTimers),
    transitions,
    states: Object.values(node.states).map(toState),
  };
  const initialTarget = node.type === 'compound' ? node.initial.target[0] : undefined;
  if (initialTarget !== undefined) state.initial = stateId(initialTarget);
  if (node.type === 'history' && node.history !== false) state.history = node.history;
  if (node.description !== undefined) state.description = node.description;
  return state;
}

export function chartModelOf(machine: AnyStateMachine): ChartModel {
  const root = machine.root;
  const model: ChartModel = {
    id: machine.id,
    states: Object.values(root.states).map(toState),
    transitions: transitionsOf(root),
    events: declaredEvents(machine).filter((event) => !event.startsWith('xstate.')),
  };
  const initialTarget = root.initial.target[0];
  if (initialTarget !== undefined) model.initial = stateId(initialTarget);
  if (root.description !== undefined) model.description = root.description;
  return model;
}

function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...Object.values(node.states).flatMap(allNodes)];
}

/**
 * Every event type some state declares a transition for, timers (`xstate.after.*`) included. Unlike xstate's own
 * `events`, this keeps events a state declares only to ignore (`on: { 'relay.failed': {} }`): ignoring is handling.
 */
export function declaredEvents(machine: AnyStateMachine): string[] {
  const events = new Set<string>();
  for (const node of allNodes(machine.root)) for (const event of node.transitions.keys()) events.add(String(event));
  return [...events].sort();
}

/** Every state of the model, depth first. */
export function allChartStates(states: readonly ChartState[]): ChartState[] {
  return states.flatMap((state) => [state, ...allChartStates(state.states)]);
}
