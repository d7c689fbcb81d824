import type { AmqpAnnotatedMessage } from '@azure/core-amqp';
import { describe, expect, it } from 'vitest';
import { parseSql, ruleMatches } from '../../../src/emulator/servicebus/filters.js';
import type { MessageFacts } from '../../../src/emulator/servicebus/message.js';
import { client, emulator, queues } from './harness.js';

describe('service bus emulator: message fidelity', () => {
  it('keeps every property the sender set, byte for byte, through delivery, peek and dead-lettering', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const when = new Date('2024-05-06T07:08:09.010Z');
    const sent = {
      body: { order: 42, lines: ['a', 'b'] },
      messageId: 'id-1',
      correlationId: 'corr-1',
      contentType: 'application/json',
      subject: 'order.created',
      to: 'store-7',
      replyTo: 'cloud-inbox',
      replyToSessionId: 'reply-session',
      partitionKey: 'pk',
      timeToLive: 3_600_000,
      applicationProperties: { text: 'é€𝄞', int: 7, neg: -3, big: 2 ** 40, float: 1.5, yes: true, when },
    };
    await c.createSender('q1').sendMessages(sent);
    const receiver = c.createReceiver('q1');
    const [peeked] = await receiver.peekMessages(1);
    const [got] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
    for (const message of [peeked!, got!]) {
      expect(message.body).toEqual(sent.body);
      expect(message).toMatchObject({
        messageId: 'id-1',
        correlationId: 'corr-1',
        contentType: 'application/json',
        subject: 'order.created',
        to: 'store-7',
        replyTo: 'cloud-inbox',
        replyToSessionId: 'reply-session',
        partitionKey: 'pk',
        timeToLive: 3_600_000,
      });
      // The SDK turns timestamps into numbers unless told otherwise (skipConvertingDate).
      expect(message.applicationProperties).toEqual({ ...sent.applicationProperties, when: when.getTime() });
      expect(message.expiresAtUtc!.getTime()).toBe(message.enqueuedTimeUtc!.getTime() + 3_600_000);
    }
    await receiver.deadLetterMessage(got!, { deadLetterReason: 'why', deadLetterErrorDescription: 'because' });
    const [dead] = await c.createReceiver('q1', { subQueueType: 'deadLetter' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(dead!.applicationProperties).toEqual({ ...sent.applicationProperties, when: when.getTime(), DeadLetterReason: 'why', DeadLetterErrorDescription: 'because' });
    expect(dead!.body).toEqual(sent.body);
  });

  it('passes AMQP value and sequence bodies through', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const c = client(sb.connectionString());
    const value: AmqpAnnotatedMessage = { body: { nested: [1, 'two'] }, bodyType: 'value' };
    const sequence: AmqpAnnotatedMessage = { body: [[1, 2], ['x']], bodyType: 'sequence' };
    await c.createSender('q1').sendMessages([value, sequence]);
    const got = await c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(2, { maxWaitTimeInMs: 3000 });
    expect(got.map((m) => m._rawAmqpMessage.bodyType)).toEqual(['value', 'sequence']);
    expect(got[0]!.body).toEqual({ nested: [1, 'two'] });
    expect(got[1]!.body).toEqual([[1, 2], ['x']]);
  });
});

describe('SQL filter subset', () => {
  const facts: MessageFacts = {
    messageId: 'm1',
    sessionId: undefined,
    ttl: undefined,
    scheduledEnqueueTime: undefined,
    correlationId: 'c1',
    to: undefined,
    subject: 'order',
    replyTo: undefined,
    replyToSessionId: undefined,
    contentType: undefined,
    applicationProperties: { color: 'red', size: 12, vip: true, 'my prop': 'x' },
  };
  it.each([
    ["color = 'red'", true],
    ["color <> 'red'", false],
    ['size > 10 AND size <= 12', true],
    ["size > 20 OR color = 'red'", true],
    ["NOT (color = 'red')", false],
    ["color IN ('blue', 'red')", true],
    ["color NOT IN ('blue', 'red')", false],
    ["color LIKE 'r_d'", true],
    ["sys.Label LIKE 'ord%'", true],
    ["sys.CorrelationId = 'c1' AND user.vip = TRUE", true],
    ['missing IS NULL', true],
    ['missing = 1', false],
    ['EXISTS(size) AND NOT EXISTS(missing)', true],
    ["[my prop] = 'x'", true],
    ['1 = 1', true],
    ['size = -12 OR size = 12.0', true],
  ])('%s -> %s', (expression, expected) => {
    expect(ruleMatches({ name: 'r', filter: { kind: 'sql', expression, compiled: parseSql(expression) } }, facts)).toBe(expected);
  });

  it.each(["color = 'red", 'size >', 'color ~ 1', "color NOT 'x'"])('rejects %s', (expression) => {
    expect(() => parseSql(expression)).toThrow();
  });
});
