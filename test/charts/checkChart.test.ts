import { describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { activeStateIdsOf, checkChart } from '../../src/charts/checkChart.js';
import { DEFAULT_LINK_POLICY } from '../../src/core/policy.js';
import type { LinkEvent, LinkInput } from '../../src/core/linkContract.js';
import { maintenanceWindowMachine } from '../../samples/policies/maintenanceWindow.machine.js';
import { maintenanceWindowClock } from '../../samples/policies/maintenanceWindow.clock.js';

const linkPolicy = DEFAULT_LINK_POLICY;
const linkSetup = setup({ types: { events: {} as LinkEvent, input: {} as LinkInput } });
const acceptAll = { 'relay.succeeded': {}, 'relay.failed': {}, 'store.announced': {} } as const;

function rulesOf(result: ReturnType<typeof checkChart>): string[] {
  return [...new Set(result.problems.map((problem) => problem.rule))].sort();
}

describe('checkChart', () => {
  it('passes the default chart and reports every state it reached', () => {
    const result = checkChart(storeLinkMachine, { linkPolicy });
    expect(result.problems).toEqual([]);
    expect(result.reachedStates).toEqual([
      'disabled',
      'healthy',
      'healthy.checking',
      'healthy.waiting',
      'probing',
      'starting',
      'tripped',
      'tripped.cooldown',
      'tripped.cooldown.running',
      'tripped.probe',
      'tripped.probe.checking',
      'tripped.probe.waiting',
    ]);
  });

  it('passes the sample maintenance-window chart with its clock', () => {
    const result = checkChart(maintenanceWindowMachine.provide(maintenanceWindowClock), { linkPolicy });
    expect(result.problems).toEqual([]);
    expect(result.reachedStates).toContain('maintenance');
  });

  it('reports a chart that cannot run without implementations it leaves to its host', () => {
    const result = checkChart(maintenanceWindowMachine, { linkPolicy });
    expect(result.problems[0]).toMatchObject({ rule: 'transitions', message: expect.stringContaining('"insideWindow" not provided') });
  });

  it('reports unknown tags and a probe tag without relay', () => {
    const chart = linkSetup.createMachine({
      id: 'tags',
      initial: 'a',
      states: { a: { tags: ['relay', 'fast'], on: { ...acceptAll, 'relay.failed': 'b' } }, b: { tags: ['probe'], on: { 'relay.succeeded': 'a' } } },
    });
    const result = checkChart(chart, { linkPolicy });
    expect(rulesOf(result)).toEqual(['known-tags', 'probe-implies-relay']);
    expect(result.problems.find((problem) => problem.rule === 'known-tags')!.message).toContain('"fast"');
  });

  it('reports an event no state reacts to', () => {
    const chart = linkSetup.createMachine({ id: 'deaf', initial: 'a', states: { a: { tags: ['relay'], on: { 'relay.failed': {} } } } });
    const messages = checkChart(chart, { linkPolicy }).problems.map((problem) => problem.message);
    expect(messages).toEqual(['no state reacts to "relay.succeeded"', 'no state reacts to "store.announced"']);
  });

  it('reports a state only an event the router never sends could reach', () => {
    const chart = setup({ types: { events: {} as LinkEvent | { type: 'maintenance.begin' }, input: {} as LinkInput } }).createMachine({
      id: 'orphan',
      initial: 'a',
      states: { a: { tags: ['relay'], on: { ...acceptAll, 'maintenance.begin': 'hidden' } }, hidden: {} },
    });
    const result = checkChart(chart, { linkPolicy });
    expect(result.problems).toEqual([expect.objectContaining({ rule: 'reachable', message: expect.stringContaining('"hidden"') })]);
  });

  it('counts a state reached through a timer', () => {
    const chart = linkSetup.createMachine({
      id: 'timed',
      initial: 'a',
      states: { a: { on: acceptAll, after: { 1000: 'b' } }, b: { tags: ['relay'], on: acceptAll } },
    });
    expect(checkChart(chart, { linkPolicy }).problems).toEqual([]);
  });

  it('reports a final state', () => {
    const chart = linkSetup.createMachine({
      id: 'ends',
      initial: 'a',
      states: { a: { on: { ...acceptAll, 'relay.failed': 'gone' } }, gone: { type: 'final' } },
    });
    expect(rulesOf(checkChart(chart, { linkPolicy }))).toEqual(['never-final']);
  });

  it('reports a context that is not JSON-serialisable', () => {
    const chart = setup({ types: { events: {} as LinkEvent, input: {} as LinkInput, context: {} as { since: Date | null } } }).createMachine({
      id: 'dated',
      initial: 'a',
      context: { since: null },
      states: { a: { on: { ...acceptAll, 'relay.failed': { actions: assign({ since: () => new Date(0) }) } } } },
    });
    expect(rulesOf(checkChart(chart, { linkPolicy }))).toEqual(['serialisable']);
  });

  it('reports a chart whose start fails', () => {
    const chart = setup({ types: { events: {} as LinkEvent, input: {} as LinkInput, context: {} as { n: number } } }).createMachine({
      id: 'broken',
      initial: 'a',
      context: () => {
        throw new Error('no input handling');
      },
      states: { a: { on: acceptAll } },
    });
    const result = checkChart(chart, { linkPolicy });
    expect(result.problems.length).toBeGreaterThan(0);
    expect(result.problems[0]!.message).toContain('no input handling');
  });

  it('stays bounded on charts whose context grows forever', () => {
    const chart = setup({ types: { events: {} as LinkEvent, input: {} as LinkInput, context: {} as { n: number } } }).createMachine({
      id: 'counter',
      initial: 'a',
      context: { n: 0 },
      states: { a: { tags: ['relay'], on: { ...acceptAll, 'relay.failed': { actions: assign({ n: ({ context }) => context.n + 1 }) } } } },
    });
    const result = checkChart(chart, { linkPolicy, maxSnapshots: 50 });
    expect(result.problems).toEqual([]);
    expect(result.exploredSnapshots).toBeLessThanOrEqual(2 * 51);
  });
});

describe('activeStateIdsOf', () => {
  it.each<[Parameters<typeof activeStateIdsOf>[0], string[]]>([
    ['healthy', ['healthy']],
    [{ healthy: 'waiting' }, ['healthy', 'healthy.waiting']],
    [{ tripped: { cooldown: 'running', probe: 'checking' } }, ['tripped', 'tripped.cooldown', 'tripped.cooldown.running', 'tripped.probe', 'tripped.probe.checking']],
  ])('reads %j', (value, ids) => {
    expect(activeStateIdsOf(value)).toEqual(ids);
  });
});
