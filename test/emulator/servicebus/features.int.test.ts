import { isServiceBusError, type RuleProperties, type ServiceBusReceivedMessage, type ServiceBusReceiver } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { client, emulator, eventually, failureOf, queues } from './harness.js';

async function receiveExactly(receiver: ServiceBusReceiver, count: number, maxWaitTimeInMs = 3000): Promise<ServiceBusReceivedMessage[]> {
  const received: ServiceBusReceivedMessage[] = [];
  for (let attempt = 0; received.length < count && attempt < 20; attempt++) {
    received.push(...(await receiver.receiveMessages(count - received.length, { maxWaitTimeInMs })));
  }
  return received;
}

describe('service bus emulator: expiry, scheduling, peek, duplicates', () => {
  it('dead-letters expired messages when the queue says so', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', defaultMessageTimeToLiveInMs: 300, deadLetteringOnMessageExpiration: true }] }] });
    const c = client(sb.connectionString());
    await c.createSender('q1').sendMessages({ body: 'short-lived' });
    const dlq = c.createReceiver('q1', { subQueueType: 'deadLetter' });
    const [dead] = await receiveExactly(dlq, 1);
    expect(dead!.body).toBe('short-lived');
    expect(dead!.deadLetterReason).toBe('TTLExpiredException');
    expect(sb.messageCounts().q1).toBe(0);
    await dlq.completeMessage(dead!);
  });

  it('drops expired messages otherwise, honouring a per-message time to live', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const sender = c.createSender('q1');
    await sender.sendMessages([{ body: 'brief', timeToLive: 300 }, { body: 'lasting' }]);
    expect(sb.messageCounts().q1).toBe(2);
    await eventually(() => sb.messageCounts().q1 === 1);
    const [left] = await receiveExactly(c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }), 1);
    expect(left!.body).toBe('lasting');
    expect(sb.messageCounts()['q1/$DeadLetterQueue']).toBe(0);
  });

  it('schedules messages, shows them in peek, delivers them on time, and cancels', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const sender = c.createSender('q1');
    const soon = new Date(Date.now() + 300);
    const [seqSoon] = await sender.scheduleMessages({ body: 'soon' }, soon);
    const [seqLate] = await sender.scheduleMessages({ body: 'late' }, new Date(Date.now() + 3_600_000));
    const receiver = c.createReceiver('q1');
    const peeked = await receiver.peekMessages(10);
    expect(peeked.map((m): unknown[] => [m.body, m.state])).toEqual([
      ['soon', 'scheduled'],
      ['late', 'scheduled'],
    ]);
    await sender.cancelScheduledMessages(seqLate!);
    const [message] = await receiveExactly(receiver, 1);
    expect(message!.body).toBe('soon');
    expect(Number(message!.sequenceNumber)).toBe(Number(seqSoon));
    expect(Date.now()).toBeGreaterThanOrEqual(soon.getTime() - 5);
    expect(message!.scheduledEnqueueTimeUtc?.getTime()).toBe(soon.getTime());
    await receiver.completeMessage(message!);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('holds a sent message carrying scheduledEnqueueTimeUtc until its time', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    // Far enough ahead that the unscheduled message is received first even on a loaded machine (300 ms was not, once,
    // under a 2-core run of several suites at a time).
    const at = new Date(Date.now() + 2_000);
    await c.createSender('q1').sendMessages([{ body: 'timed', scheduledEnqueueTimeUtc: at }, { body: 'now' }]);
    const receiver = c.createReceiver('q1', { receiveMode: 'receiveAndDelete' });
    const [first] = await receiveExactly(receiver, 1);
    expect(first!.body).toBe('now');
    const [second] = await receiveExactly(receiver, 1);
    expect(second!.body).toBe('timed');
    expect(Date.now()).toBeGreaterThanOrEqual(at.getTime() - 5);
    expect(second!.enqueuedTimeUtc!.getTime()).toBe(at.getTime());
  });

  it('peeks without locking, continues from the last peeked message, and returns [] when empty', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const receiver = c.createReceiver('q1');
    expect(await receiver.peekMessages(5)).toEqual([]);
    await c.createSender('q1').sendMessages([1, 2, 3].map((n) => ({ body: n })));
    expect((await receiver.peekMessages(2)).map((m): unknown => m.body)).toEqual([1, 2]);
    expect((await receiver.peekMessages(2)).map((m): unknown => m.body)).toEqual([3]);
    const got = await receiveExactly(receiver, 3);
    expect(got).toHaveLength(3);
    expect((await receiver.peekMessages(5, { fromSequenceNumber: got[0]!.sequenceNumber })).map((m): unknown => m.body)).toEqual([1, 2, 3]);
  });

  it('drops duplicates by message id within the detection window', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', requiresDuplicateDetection: true, duplicateDetectionHistoryTimeWindowInMs: 60_000 }] }] });
    const c = client(sb.connectionString());
    const sender = c.createSender('q1');
    await sender.sendMessages({ body: 'first', messageId: 'order-1' });
    await sender.sendMessages({ body: 'second', messageId: 'order-1' });
    await sender.sendMessages([{ body: 'third', messageId: 'order-2' }, { body: 'fourth', messageId: 'order-2' }]);
    expect(sb.messageCounts().q1).toBe(2);
    const got = await receiveExactly(c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }), 2);
    expect(got.map((m): unknown => m.body)).toEqual(['first', 'third']);
  });
});

describe('service bus emulator: topics and subscriptions', () => {
  it('fans out to subscriptions whose correlation or SQL filters match', async () => {
    const sb = await emulator({
      namespaces: [
        {
          topics: [
            {
              name: 't1',
              subscriptions: [
                { name: 'all' },
                { name: 'red', rules: [{ name: 'red', correlationFilter: { applicationProperties: { color: 'red' } } }] },
                { name: 'big', rules: [{ name: 'big', sqlFilter: "size > 10 AND color <> 'blue'" }] },
                { name: 'orders', rules: [{ name: 'subject', correlationFilter: { subject: 'order' } }, { name: 'like', sqlFilter: "sys.Label LIKE 'ret%'" }] },
              ],
            },
          ],
        },
      ],
    });
    const c = client(sb.connectionString());
    await c.createSender('t1').sendMessages([
      { body: 'a', applicationProperties: { color: 'red', size: 5 } },
      { body: 'b', applicationProperties: { color: 'green', size: 50 }, subject: 'order' },
      { body: 'c', applicationProperties: { color: 'blue', size: 50 }, subject: 'return' },
    ]);
    const bodies = async (sub: string, count: number): Promise<unknown[]> =>
      (await receiveExactly(c.createReceiver('t1', sub, { receiveMode: 'receiveAndDelete' }), count)).map((m): unknown => m.body);
    expect(await bodies('all', 3)).toEqual(['a', 'b', 'c']);
    expect(await bodies('red', 1)).toEqual(['a']);
    expect(await bodies('big', 1)).toEqual(['b']);
    expect(await bodies('orders', 2)).toEqual(['b', 'c']);
    expect(sb.messageCounts()).toMatchObject({ 't1/Subscriptions/all': 0, 't1/Subscriptions/red': 0, 't1/Subscriptions/big': 0, 't1/Subscriptions/orders': 0 });
  });

  it('schedules and cancels on a topic with topic-wide sequence numbers', async () => {
    const sb = await emulator({ namespaces: [{ topics: [{ name: 't1', subscriptions: [{ name: 's1' }, { name: 's2' }] }] }] });
    const c = client(sb.connectionString());
    const sender = c.createSender('t1');
    await sender.sendMessages({ body: 'now' });
    const [seq] = await sender.scheduleMessages({ body: 'later' }, new Date(Date.now() + 3_600_000));
    for (const sub of ['s1', 's2']) {
      const peeked = await c.createReceiver('t1', sub).peekMessages(5);
      expect(peeked.map((m): unknown[] => [m.body, m.state, Number(m.sequenceNumber)])).toEqual([
        ['now', 'active', 1],
        ['later', 'scheduled', Number(seq)],
      ]);
    }
    await sender.cancelScheduledMessages(seq!);
    expect(sb.messageCounts()).toMatchObject({ 't1/Subscriptions/s1': 1, 't1/Subscriptions/s2': 1 });
  });

  it('manages rules through the SDK rule manager', async () => {
    const sb = await emulator({ namespaces: [{ topics: [{ name: 't1', subscriptions: [{ name: 's1' }] }] }] });
    const c = client(sb.connectionString());
    const rules = c.createRuleManager('t1', 's1');
    const list = async (): Promise<RuleProperties[]> => {
      const found: RuleProperties[] = [];
      for await (const rule of rules.listRules()) found.push(rule);
      return found;
    };
    expect((await list()).map((rule) => rule.name)).toEqual(['$Default']);
    await rules.deleteRule('$Default');
    await rules.createRule('vip', { sqlExpression: "tier = 'gold'" });
    await rules.createRule('corr', { correlationId: 'abc', applicationProperties: { k: 'v' } });
    const listed = await list();
    expect(listed.map((rule) => rule.name)).toEqual(['vip', 'corr']);
    expect(listed[0]!.filter).toMatchObject({ sqlExpression: "tier = 'gold'" });
    expect(listed[1]!.filter).toMatchObject({ correlationId: 'abc' });
    await c.createSender('t1').sendMessages([
      { body: 'no', applicationProperties: { tier: 'silver' } },
      { body: 'yes', applicationProperties: { tier: 'gold' } },
      { body: 'corr', correlationId: 'abc', applicationProperties: { k: 'v' } },
    ]);
    expect(sb.messageCounts()['t1/Subscriptions/s1']).toBe(2);
  });

  it('dead-letters from a subscription into its own dead-letter queue', async () => {
    const sb = await emulator({ namespaces: [{ topics: [{ name: 't1', subscriptions: [{ name: 's1' }, { name: 's2' }] }] }] });
    const c = client(sb.connectionString());
    await c.createSender('t1').sendMessages({ body: 'fan' });
    const s1 = c.createReceiver('t1', 's1');
    const [message] = await receiveExactly(s1, 1);
    await s1.deadLetterMessage(message!, { deadLetterReason: 'sub', deadLetterErrorDescription: 'from s1' });
    const [dead] = await receiveExactly(c.createReceiver('t1', 's1', { subQueueType: 'deadLetter', receiveMode: 'receiveAndDelete' }), 1);
    expect([dead!.body, dead!.deadLetterReason, Number(dead!.sequenceNumber)]).toEqual(['fan', 'sub', 1]);
    expect(sb.messageCounts()).toMatchObject({ 't1/Subscriptions/s1': 0, 't1/Subscriptions/s2': 1, 't1/Subscriptions/s1/$DeadLetterQueue': 0 });
  });

  it('forwards from a queue to another entity, and dead letters to a chosen queue', async () => {
    const sb = await emulator({
      namespaces: [
        {
          queues: [
            { name: 'inbox', forwardTo: 'archive' },
            { name: 'archive' },
            { name: 'work', forwardDeadLetteredMessagesTo: 'graveyard' },
            { name: 'graveyard' },
          ],
        },
      ],
    });
    const c = client(sb.connectionString());
    await c.createSender('inbox').sendMessages({ body: 'moved' });
    expect(sb.messageCounts()).toMatchObject({ inbox: 0, archive: 1 });
    await c.createSender('work').sendMessages({ body: 'doomed' });
    const receiver = c.createReceiver('work');
    const [message] = await receiveExactly(receiver, 1);
    await receiver.deadLetterMessage(message!, { deadLetterReason: 'nope', deadLetterErrorDescription: 'not wanted' });
    const [dead] = await receiveExactly(c.createReceiver('graveyard', { receiveMode: 'receiveAndDelete' }), 1);
    expect(dead!.body).toBe('doomed');
    expect(dead!.deadLetterReason).toBe('nope');
  });
});

describe('service bus emulator: sessions', () => {
  const sessionQueue = [{ queues: [{ name: 'qs', requiresSession: true }, { name: 'plain' }] }];

  it('accepts a named session, delivers only its messages, and keeps session state', async () => {
    const sb = await emulator({ namespaces: sessionQueue });
    const c = client(sb.connectionString());
    await c.createSender('qs').sendMessages([
      { body: 'a1', sessionId: 'A' },
      { body: 'b1', sessionId: 'B' },
      { body: 'a2', sessionId: 'A' },
    ]);
    const a = await c.acceptSession('qs', 'A');
    expect(a.sessionId).toBe('A');
    expect(a.sessionLockedUntilUtc.getTime()).toBeGreaterThan(Date.now());
    const got = await receiveExactly(a, 2);
    expect(got.map((m): unknown => m.body)).toEqual(['a1', 'a2']);
    for (const m of got) await a.completeMessage(m);
    await a.setSessionState({ step: 2 });
    expect(await a.getSessionState()).toEqual({ step: 2 });
    const renewed = await a.renewSessionLock();
    expect(renewed.getTime()).toBeGreaterThan(Date.now());
    const locked = await failureOf(c.acceptSession('qs', 'A'));
    expect(isServiceBusError(locked) && locked.code).toBe('SessionCannotBeLocked');
    const next = await c.acceptNextSession('qs');
    expect(next.sessionId).toBe('B');
    const [b] = await receiveExactly(next, 1);
    expect(b!.body).toBe('b1');
    await next.completeMessage(b!);
    await a.close();
    const again = await c.acceptSession('qs', 'A');
    expect(await again.getSessionState()).toEqual({ step: 2 });
  });

  it('a session receiver whose lock lapses gets SessionLockLost and the session becomes available again', async () => {
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'qs', requiresSession: true, lockDurationInMs: 300 }] }] });
    const c = client(sb.connectionString());
    await c.createSender('qs').sendMessages({ body: 'x', sessionId: 'S' });
    const first = await c.acceptSession('qs', 'S', { maxAutoLockRenewalDurationInMs: 0 });
    const [message] = await receiveExactly(first, 1);
    const lost = await failureOf(first.receiveMessages(1, { maxWaitTimeInMs: 3000 }));
    expect(isServiceBusError(lost) && lost.code).toBe('SessionLockLost');
    const second = await c.acceptSession('qs', 'S');
    const [again] = await receiveExactly(second, 1);
    expect(again!.messageId).toBe(message!.messageId);
    await second.completeMessage(again!);
  });

  it('acceptNextSession waits for a session to appear, or times out with ServiceTimeout', async () => {
    const sb = await emulator({ namespaces: sessionQueue });
    const c = client(sb.connectionString(), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 1500 } });
    const timeout = await failureOf(c.acceptNextSession('qs'));
    expect(isServiceBusError(timeout) && timeout.code).toBe('ServiceTimeout');
    const waiting = c.acceptNextSession('qs');
    await c.createSender('qs').sendMessages({ body: 'hello', sessionId: 'late' });
    const receiver = await waiting;
    expect(receiver.sessionId).toBe('late');
  });

  it('refuses messages without a session id and mismatched receivers', async () => {
    const sb = await emulator({ namespaces: sessionQueue });
    const c = client(sb.connectionString(), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 2000 } });
    const noSession = await failureOf(c.createSender('qs').sendMessages({ body: 'x' }));
    expect(isServiceBusError(noSession) && noSession.code).toBe('GeneralError');
    expect(noSession.message).toMatch(/SessionId/);
    const plainOnSession = await failureOf(c.createReceiver('qs').receiveMessages(1, { maxWaitTimeInMs: 500 }));
    expect(plainOnSession.message).toMatch(/requires sessions/);
    const sessionOnPlain = await failureOf(c.acceptSession('plain', 'A'));
    // The SDK reads the refused attach (no session in the source) before the detach's amqp:not-allowed.
    expect(isServiceBusError(sessionOnPlain) && sessionOnPlain.code).toBe('SessionCannotBeLocked');
  });
});
