/**
 * Checks that a chart honours the routing contract (src/core/linkContract.ts): it starts from the router's input,
 * reacts to the three link events, uses only known tags (and `probe` only with `relay`), keeps its context
 * JSON-serialisable, never finishes, and every state can be reached with the events and timers the router actually
 * produces. The exploration is a breadth-first walk over pure transitions, bounded so that charts with counters stay
 * finite.
 */
import { initialTransition, transition, type AnyMachineSnapshot, type AnyStateMachine, type StateValue } from 'xstate';
import { findNonJson } from '../core/json.js';
import { LINK_TAGS, REQUIRED_LINK_EVENT_TYPES, SAMPLE_LINK_EVENTS, type LinkInput } from '../core/linkContract.js';
import type { LinkPolicy } from '../core/policy.js';
import { allChartStates, chartModelOf, declaredEvents } from './chartModel.js';

export interface ChartProblem {
  /** A stable identifier of the rule that failed. */
  rule: 'starts' | 'accepts-events' | 'known-tags' | 'probe-implies-relay' | 'reachable' | 'serialisable' | 'never-final' | 'transitions';
  message: string;
}

export interface CheckChartOptions {
  /** The link policy the chart is started with. */
  linkPolicy: LinkPolicy;
  /** The most snapshots explored per input; default 500. */
  maxSnapshots?: number;
}

export interface ChartCheckResult {
  problems: ChartProblem[];
  /** Dotted ids of the states reached, for reports. */
  reachedStates: string[];
  exploredSnapshots: number;
}

function snapshotKey(snapshot: AnyMachineSnapshot): string {
  return JSON.stringify([snapshot.value, snapshot.context]);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The dotted ids of every active state, read from the public state value (`{ a: { b: "c" } }` is a, a.b, a.b.c). */
export function activeStateIdsOf(value: StateValue, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  return Object.entries(value).flatMap(([key, child]) =>
    child === undefined ? [`${prefix}${key}`] : [`${prefix}${key}`, ...activeStateIdsOf(child, `${prefix}${key}.`)],
  );
}

export function checkChart(machine: AnyStateMachine, options: CheckChartOptions): ChartCheckResult {
  const model = chartModelOf(machine);
  const problems: ChartProblem[] = [];
  const seenProblems = new Set<string>();
  const report = (problem: ChartProblem): void => {
    const key = `${problem.rule}:${problem.message}`;
    if (!seenProblems.has(key)) {
      seenProblems.add(key);
      problems.push(problem);
    }
  };

  const states = allChartStates(model.states);
  for (const state of states) {
    for (const tag of state.tags) {
      if (!(LINK_TAGS as readonly string[]).includes(tag)) {
        report({ rule: 'known-tags', message: `state "${state.id}" has tag "${tag}"; allowed tags are ${LINK_TAGS.join(', ')}` });
      }
    }
  }
  const handled = new Set(declaredEvents(machine));
  for (const eventType of REQUIRED_LINK_EVENT_TYPES) {
    if (!handled.has(eventType) && !handled.has('*')) {
      report({ rule: 'accepts-events', message: `no state reacts to "${eventType}"` });
    }
  }

  const timerEvents = [...handled].filter((event) => event.startsWith('xstate.after.')).map((type) => ({ type }));

  const events = [...SAMPLE_LINK_EVENTS, ...timerEvents];
  const maxSnapshots = options.maxSnapshots ?? 500;
  const reached = new Set<string>();
  let explored = 0;

  for (const bidirectional of [true, false]) {
    const input: LinkInput = { storeId: 'chart-check', policy: options.linkPolicy, bidirectional, at: 0 };
    let first: AnyMachineSnapshot;
    try {
      [first] = initialTransition(machine, input);
    } catch (error) {
      report({ rule: 'starts', message: `the chart does not start with input ${JSON.stringify(input)}: ${describe(error)}` });
      continue;
    }
    const visited = new Set<string>([snapshotKey(first)]);
    const queue: AnyMachineSnapshot[] = [first];
    while (queue.length > 0 && visited.size <= maxSnapshots) {
      const snapshot = queue.shift()!;
      explored += 1;
      for (const id of activeStateIdsOf(snapshot.value as StateValue)) reached.add(id);
      const nonJson = findNonJson(snapshot.context);
      if (nonJson !== undefined) {
        const where = ['context', ...nonJson.path].join('.');
        report({ rule: 'serialisable', message: `${where} in state ${JSON.stringify(snapshot.value)} ${nonJson.message}` });
      }
      if (snapshot.hasTag('probe') && !snapshot.hasTag('relay')) {
        report({ rule: 'probe-implies-relay', message: `state ${JSON.stringify(snapshot.value)} has tag "probe" without "relay"` });
      }
      if (snapshot.status === 'error') {
        report({ rule: 'transitions', message: `the chart failed in state ${JSON.stringify(snapshot.value)}: ${describe(snapshot.error)}` });
        continue;
      }
      if (snapshot.status !== 'active') {
        report({
          rule: 'never-final',
          message: `state ${JSON.stringify(snapshot.value)} finishes the chart; a finished link would ignore every event`,
        });
        continue;
      }
      for (const event of events) {
        let next: AnyMachineSnapshot;
        try {
          [next] = transition(machine, snapshot, event);
        } catch (error) {
          report({
            rule: 'transitions',
            message: `"${event.type}" in state ${JSON.stringify(snapshot.value)} throws: ${describe(error)}`,
          });
          continue;
        }
        const key = snapshotKey(next);
        if (!visited.has(key)) {
          visited.add(key);
          queue.push(next);
        }
      }
    }
  }

  // A transient state (only eventless transitions) is left in the same step it is entered, so no snapshot shows it:
  // it counts as reached when it is the chart's initial state or a reached state targets it.
  const transient = states.filter(
    (state) => state.transitions.length > 0 && state.transitions.every((candidate) => candidate.kind === 'always'),
  );
  for (const state of transient) {
    const targeted = states.some(
      (source) => reached.has(source.id) && source.transitions.some((candidate) => candidate.targets.includes(state.id)),
    );
    if (state.id === model.initial || targeted) reached.add(state.id);
  }

  for (const state of states) {
    if (state.type === 'history' || reached.has(state.id)) continue;
    report({
      rule: 'reachable',
      message: `state "${state.id}" is never reached with the link events and timers (explored ${explored} snapshots)`,
    });
  }
  return { problems, reachedStates: [...reached].filter((id) => id.length > 0).sort(), exploredSnapshots: explored };
}
