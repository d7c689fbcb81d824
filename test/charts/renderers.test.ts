import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { allChartStates, chartModelOf } from '../../src/charts/chartModel.js';
import { renderMermaid } from '../../src/charts/renderMermaid.js';
import { renderScxml } from '../../src/charts/renderScxml.js';
import { maintenanceWindowMachine } from '../../samples/policies/maintenanceWindow.machine.js';

const storeLink = chartModelOf(storeLinkMachine);

/** A chart with every construct the renderers know: nesting, parallel regions, history, final, numeric timers. */
const kitchenSink = chartModelOf(
  setup({ guards: { ready: () => true }, actions: { log: () => undefined } }).createMachine({
    id: 'sink',
    initial: 'idle',
    on: { reset: '.idle' },
    states: {
      idle: { on: { go: { target: 'busy', guard: 'ready', actions: 'log' } }, exit: 'log' },
      busy: {
        type: 'parallel',
        states: {
          left: { initial: 'a', states: { a: { after: { 250: 'b' } }, b: {}, hist: { type: 'history', history: 'deep' } } },
          right: { initial: 'c', states: { c: { on: { finish: '#sink.done' } } } },
        },
      },
      done: { type: 'final', entry: 'log' },
    },
  }),
);

describe('chartModelOf', () => {
  it('lists every state of the default chart with its tags and transitions', () => {
    const states = allChartStates(storeLink.states);
    // The timed states hold their timers and health probes in sub-states.
    expect(states.map((state) => state.id)).toEqual([
      'starting',
      'disabled',
      'healthy',
      'healthy.waiting',
      'healthy.checking',
      'tripped',
      'tripped.cooldown',
      'tripped.cooldown.running',
      'tripped.probe',
      'tripped.probe.waiting',
      'tripped.probe.checking',
      'probing',
    ]);
    const topLevel = states.filter((state) => !state.id.includes('.'));
    expect(Object.fromEntries(topLevel.map((state) => [state.id, state.tags]))).toEqual({
      starting: [],
      disabled: [],
      healthy: ['relay'],
      tripped: [],
      probing: ['relay', 'probe'],
    });
    expect(storeLink.initial).toBe('starting');
    expect(storeLink.events).toEqual(['link.resumed', 'relay.failed', 'relay.succeeded', 'store.announced']);
    const tripped = states.find((state) => state.id === 'tripped')!;
    expect(tripped.entry).toEqual(['startCooldown']);
    const coolingDown = states.find((state) => state.id === 'tripped.cooldown.running')!;
    expect(coolingDown.transitions).toContainEqual({
      kind: 'after',
      event: 'xstate.after.untilCooldownEnds.storeLink.tripped.cooldown.running',
      delay: 'untilCooldownEnds',
      targets: ['probing'],
      actions: [],
    });
  });

  it('shows the parameters of parameterized guards', () => {
    const inService = allChartStates(chartModelOf(maintenanceWindowMachine).states).find((state) => state.id === 'inService.available')!;
    expect(inService.transitions.map((transition) => transition.guard)).toContain('announced(down)');
  });
});

describe('renderMermaid', () => {
  const text = renderMermaid(storeLink);

  it('prints a stateDiagram-v2 with every state, the initial state and every transition', () => {
    expect(text.startsWith('stateDiagram-v2\n')).toBe(true);
    for (const state of ['starting', 'disabled', 'healthy', 'tripped', 'probing']) {
      expect(text).toContain(`state "${state}" as ${state}`);
    }
    expect(text).toContain('[*] --> starting');
    expect(text).toContain('tripped_cooldown_running --> probing : after untilCooldownEnds');
    expect(text).toContain('healthy --> tripped : relay.failed [reachesFailureThreshold] / countFailure');
    expect(text).toContain('note right of probing : tags relay, probe');
    const edges = text.split('\n').filter((line) => line.includes(' --> ') && !line.includes('[*]'));
    const transitionCount = allChartStates(storeLink.states).reduce((sum, state) => sum + state.transitions.length, 0);
    expect(edges).toHaveLength(transitionCount);
  });

  it('renders nesting, parallel regions, finals, numeric timers and chart-wide transitions', () => {
    const sink = renderMermaid(kitchenSink);
    expect(sink).toContain('state busy {');
    expect(sink).toContain('  --');
    expect(sink).toContain('busy_left_a --> busy_left_b : after 250 ms');
    expect(sink).toContain('done --> [*]');
    expect(sink).toContain('idle --> busy : go [ready] / log');
    expect(sink).toContain('busy --> idle : reset');
  });
});

describe('renderScxml', () => {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', isArray: (name) => ['state', 'transition', 'send', 'cancel'].includes(name) });

  it('is well-formed XML with an <scxml> root, every state, transitions and timers as delayed events', () => {
    const xml = renderScxml(storeLink);
    expect(XMLValidator.validate(xml)).toBe(true);
    const document = parser.parse(xml) as { scxml: { '@xmlns': string; '@initial': string; state: Record<string, unknown>[] } };
    expect(document.scxml['@xmlns']).toBe('http://www.w3.org/2005/07/scxml');
    expect(document.scxml['@initial']).toBe('starting');
    const states = document.scxml.state as { '@id': string; '@storelink:tags'?: string; transition?: { '@event'?: string; '@target'?: string }[]; onentry?: { send: { '@event': string; '@delayexpr': string; '@id': string }[] }; onexit?: { cancel: { '@sendid': string }[] } }[];
    // tripped runs its cool-down and its health probes side by side: an SCXML <parallel>.
    expect(states.map((state) => state['@id'])).toEqual(['starting', 'disabled', 'healthy', 'probing']);
    const parallels = [(document.scxml as { parallel?: { '@id': string } | { '@id': string }[] }).parallel ?? []].flat();
    expect(parallels.map((parallel) => parallel['@id'])).toEqual(['tripped']);
    expect(states.find((state) => state['@id'] === 'probing')!['@storelink:tags']).toBe('relay probe');
    const timer = 'xstate.after.untilCooldownEnds.storeLink.tripped.cooldown.running';
    expect(xml).toContain(`<send id="tripped.cooldown.running.${timer}" event="${timer}" delayexpr="untilCooldownEnds"/>`);
    expect(xml).toContain(`<cancel sendid="tripped.cooldown.running.${timer}"/>`);
    expect(xml).toContain(`<transition event="${timer}" target="probing"/>`);
  });

  it('wraps chart-wide transitions in a state and renders nesting, history, finals and numeric delays', () => {
    const xml = renderScxml(kitchenSink);
    expect(XMLValidator.validate(xml)).toBe(true);
    expect(xml).toContain('<scxml');
    expect(xml).toMatch(/initial="sink"/);
    expect(xml).toContain('<parallel id="busy">');
    expect(xml).toContain('<history id="busy.left.hist" type="deep"/>');
    expect(xml).toContain('<final id="done">');
    expect(xml).toMatch(/<send [^>]*delay="250ms"/);
    expect(xml).toContain('<transition event="reset" target="idle"/>');
  });

  it('escapes text that is not XML-safe', () => {
    const model = chartModelOf(
      setup({}).createMachine({ id: 'odd', initial: 'a', states: { a: { description: 'a <b> & "c" -- d', on: { 'x.y': 'b' } }, b: {} } }),
    );
    const xml = renderScxml(model);
    expect(XMLValidator.validate(xml)).toBe(true);
    expect(xml).not.toContain('<b>');
  });
});
