import { describe, expect, it } from 'vitest';
import type { Delivery } from '../../src/cloud/deliver.js';
import { OutcomeTracker, outcomeOfDelivery, type OperationOutcome } from '../../src/cloud/outcomes.js';

const NOW = Date.parse('2026-11-28T10:00:00.000Z');
const AT = new Date(NOW).toISOString();

function tracker(maxRecent?: number) {
  const emitted: OperationOutcome[] = [];
  let now = NOW;
  const outcomes = new OutcomeTracker({ emit: (outcome) => emitted.push(outcome), now: () => now, ...(maxRecent === undefined ? {} : { maxRecent }) });
  return { outcomes, emitted, advance: (ms: number) => (now += ms) };
}

function delivery(overrides: Partial<Delivery> = {}): Delivery {
  return {
    operationId: 'op-1',
    storeId: 'paris-1',
    type: 'clickAndCollect.order',
    latency: 'realtime',
    channel: 'relay',
    outcome: 'delivered',
    reply: { accepted: true },
    attempts: 1,
    durationInMs: 1,
    ...overrides,
  };
}

const REPLY = { storeId: 'paris-1', type: 'clickAndCollect.order', correlationId: 'op-1' };

describe('OutcomeTracker', () => {
  it('remembers which store each operation went to: in flight, awaiting its outcome, and reported', () => {
    const { outcomes } = tracker(2);
    outcomes.began('op-1', 'paris-1');
    expect(outcomes.storeOf('op-1')).toBe('paris-1');
    outcomes.returned('op-1', delivery({ channel: 'queue', outcome: 'queued', reply: undefined }));
    expect(outcomes.storeOf('op-1')).toBe('paris-1');
    outcomes.replied(REPLY, { outcome: 'done', result: 1 });
    expect(outcomes.storeOf('op-1')).toBe('paris-1');
    expect(outcomes.storeOf('op-unknown')).toBeUndefined();
    for (const id of ['op-2', 'op-3', 'op-4']) {
      outcomes.began(id, 'lyon-2');
      outcomes.returned(id, delivery({ operationId: id, storeId: 'lyon-2', channel: 'queue', outcome: 'queued', reply: undefined }));
    }
    // Bounded: the oldest awaiting id is forgotten first.
    expect(outcomes.storeOf('op-2')).toBeUndefined();
    expect(outcomes.storeOf('op-4')).toBe('lyon-2');
  });

  it('reports a relay answer in time once, not again when the store replies through the outbox later', () => {
    const { outcomes, emitted } = tracker();
    outcomes.began('op-1', 'paris-1');
    outcomes.returned('op-1', delivery());
    outcomes.replied(REPLY, { outcome: 'done', result: { accepted: true } });
    expect(emitted).toEqual([
      { operationId: 'op-1', storeId: 'paris-1', type: 'clickAndCollect.order', outcome: 'done', reply: { accepted: true }, channel: 'relay', late: false, at: AT },
    ]);
  });

  it('holds a reply that arrives while its publish is under way, and drops it when the publish returns with the outcome', () => {
    const { outcomes, emitted } = tracker();
    outcomes.began('op-1', 'paris-1');
    outcomes.replied(REPLY, { outcome: 'done', result: { accepted: true } });
    expect(emitted).toEqual([]);
    outcomes.returned('op-1', delivery({ channel: 'queue' }));
    expect(emitted).toMatchObject([{ operationId: 'op-1', outcome: 'done', channel: 'queue', late: false }]);
  });

  it('reports the held reply as late when the publish returns without an outcome (relay timeout, failed fallback)', () => {
    const { outcomes, emitted, advance } = tracker();
    outcomes.began('op-1', 'paris-1');
    outcomes.replied(REPLY, { outcome: 'done', result: { accepted: true } });
    advance(1_000);
    outcomes.returned('op-1', undefined);
    expect(emitted).toEqual([
      {
        operationId: 'op-1',
        storeId: 'paris-1',
        type: 'clickAndCollect.order',
        outcome: 'done',
        reply: { accepted: true },
        channel: 'queue',
        late: true,
        at: new Date(NOW + 1_000).toISOString(),
      },
    ]);
  });

  it('reports a reply after a publish returned without the outcome as late, once', () => {
    const { outcomes, emitted } = tracker();
    outcomes.began('op-1', 'paris-1');
    outcomes.returned('op-1', delivery({ channel: 'queue', outcome: 'queued', reply: undefined }));
    expect(emitted).toEqual([]);
    outcomes.replied(REPLY, { outcome: 'failed', executed: false, error: { code: 'OPERATION_EXPIRED', message: 'expired' } });
    outcomes.replied(REPLY, { outcome: 'failed', executed: false, error: { code: 'OPERATION_EXPIRED', message: 'expired' } });
    expect(emitted).toMatchObject([
      { operationId: 'op-1', outcome: 'failed', failure: { code: 'OPERATION_EXPIRED', message: 'expired', executed: false }, channel: 'queue', late: true },
    ]);
  });

  it('reports a reply for an operation this instance never published as late', () => {
    const { outcomes, emitted } = tracker();
    outcomes.replied(REPLY, { outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'no stock' } });
    expect(emitted).toMatchObject([{ outcome: 'rejected', rejection: { code: 'OPERATION_REJECTED', message: 'no stock' }, late: true }]);
  });

  it('waits for the last of two overlapping publishes of one id before reporting a held reply', () => {
    const { outcomes, emitted } = tracker();
    outcomes.began('op-1', 'paris-1');
    outcomes.began('op-1', 'paris-1');
    outcomes.replied(REPLY, { outcome: 'done', result: 1 });
    outcomes.returned('op-1', undefined);
    expect(emitted).toEqual([]);
    outcomes.returned('op-1', undefined);
    expect(emitted).toMatchObject([{ late: true, reply: 1 }]);
  });

  it('forgets the oldest reported ids past its bound, so memory stays bounded', () => {
    const { outcomes, emitted } = tracker(2);
    for (const id of ['a', 'b', 'c']) outcomes.replied({ ...REPLY, correlationId: id }, { outcome: 'done', result: id });
    expect(outcomes.recentCount).toBe(2);
    outcomes.replied({ ...REPLY, correlationId: 'c' }, { outcome: 'done', result: 'c' });
    expect(emitted).toHaveLength(3);
    // 'a' was forgotten: a second report of it is reported again (the bound is the price of bounded memory).
    outcomes.replied({ ...REPLY, correlationId: 'a' }, { outcome: 'done', result: 'a' });
    expect(emitted).toHaveLength(4);
  });

  it('refuses a bound that is not a positive whole number', () => {
    expect(() => new OutcomeTracker({ emit: () => undefined, now: () => NOW, maxRecent: 0 })).toThrow(RangeError);
  });
});

describe('outcomeOfDelivery', () => {
  it.each<[string, Partial<Delivery>, Partial<OperationOutcome> | undefined]>([
    ['a relay answer', {}, { outcome: 'done', reply: { accepted: true }, channel: 'relay' }],
    ['a queued reply', { channel: 'queue' }, { outcome: 'done', channel: 'queue' }],
    ['a refusal by the handler on the relay', { outcome: 'rejected', rejection: { code: 'OPERATION_REJECTED', message: 'no' } }, { outcome: 'rejected' }],
    [
      'an expired operation on the relay',
      { outcome: 'rejected', rejection: { code: 'OPERATION_EXPIRED', message: 'late' } },
      { outcome: 'failed', failure: { code: 'OPERATION_EXPIRED', message: 'late', executed: false } },
    ],
    ['a handler crash on the relay (not final)', { outcome: 'rejected', rejection: { code: 'HANDLER_FAILED', message: 'boom' } }, undefined],
    ['a fallback refusal', { channel: null, outcome: 'rejected', rejection: { code: 'REALTIME_UNAVAILABLE', message: 'down' } }, undefined],
    ['a cached reply', { channel: null, outcome: 'served-cached' }, undefined],
    ['a queued operation', { channel: 'queue', outcome: 'queued', reply: undefined }, undefined],
    [
      'a failed reply',
      { channel: 'queue', outcome: 'failed', reply: undefined, failure: { code: 'REPLY_TOO_LARGE', message: 'big', executed: true } },
      { outcome: 'failed', failure: { code: 'REPLY_TOO_LARGE', message: 'big', executed: true } },
    ],
  ])('%s', (_name, overrides, expected) => {
    const learnt = outcomeOfDelivery(delivery(overrides));
    if (expected === undefined) expect(learnt).toBeUndefined();
    else expect(learnt).toMatchObject(expected);
  });
});
