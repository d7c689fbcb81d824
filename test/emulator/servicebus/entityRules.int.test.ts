/**
 * Authorization rules of one queue or topic, as Azure has them: their keys sign for that entity (and the paths under
 * it) only. The real @azure/service-bus SDK, with rule keys and with pre-issued tokens, against the emulator.
 */
import { isServiceBusError, type ServiceBusClientOptions } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { createSasToken } from '../../../src/core/sas.js';
import { parseEmulatorConfig } from '../../../src/emulator/servicebus/index.js';
import type { ServiceBusEmulator, ServiceBusEmulatorOptions } from '../../../src/emulator/servicebus/index.js';
import { client, emulator, failureOf } from './harness.js';

const NO_RETRY: ServiceBusClientOptions = { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 4000 } };

const RULES: ServiceBusEmulatorOptions = {
  sharedAccessPolicies: [{ keyName: 'cloud', primaryKey: 'cloud-key', rights: ['Listen', 'Send'] }],
  namespaces: [
    {
      queues: [
        { name: 'store-alpha', authorizationRules: [{ keyName: 'store', primaryKey: 'alpha-key', rights: ['Listen'] }] },
        { name: 'store-beta', authorizationRules: [{ keyName: 'store', primaryKey: 'beta-key', secondaryKey: 'beta-key-2', rights: ['Listen'] }] },
        { name: 'cloud-inbox', authorizationRules: [{ keyName: 'stores-send', primaryKey: 'inbox-send-key', rights: ['Send'] }] },
      ],
      topics: [
        {
          name: 'events',
          authorizationRules: [{ keyName: 'events-listen', primaryKey: 'events-key', rights: ['Listen'] }],
          subscriptions: [{ name: 'audit' }],
        },
      ],
    },
  ],
};

function ruleKeyString(sb: ServiceBusEmulator, keyName: string, key: string): string {
  return `Endpoint=sb://127.0.0.1:${sb.port};SharedAccessKeyName=${keyName};SharedAccessKey=${key};UseDevelopmentEmulator=true`;
}

function tokenString(sb: ServiceBusEmulator, resourcePath: string, keyName: string, key: string): string {
  const token = createSasToken({ resource: `sb://127.0.0.1:${sb.port}/${resourcePath}`, keyName, key });
  return `Endpoint=sb://127.0.0.1:${sb.port};SharedAccessSignature=${token};UseDevelopmentEmulator=true`;
}

function expectUnauthorized(error: Error & { code?: string }): void {
  expect(isServiceBusError(error) && error.code).toBe('UnauthorizedAccess');
}

describe('service bus emulator: authorization rules per entity', () => {
  it("a queue's Listen rule receives and peeks that queue and its dead-letter queue", async () => {
    const sb = await emulator(RULES);
    const cloud = client(sb.connectionString('cloud'));
    await cloud.createSender('store-alpha').sendMessages([{ body: 'first' }, { body: 'second' }]);
    const alpha = client(sb.connectionString('store', { entity: 'store-alpha' }), NO_RETRY);
    const receiver = alpha.createReceiver('store-alpha');
    expect((await receiver.peekMessages(2)).map((m): unknown => m.body)).toEqual(['first', 'second']);
    const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('first');
    await receiver.deadLetterMessage(message!, { deadLetterReason: 'test', deadLetterErrorDescription: 'moved by the test' });
    const [dead] = await alpha.createReceiver('store-alpha', { subQueueType: 'deadLetter' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(dead?.body).toBe('first');
  });

  it("a queue's rule key is refused on another queue, for receive, peek and send (UnauthorizedAccess)", async () => {
    const sb = await emulator(RULES);
    await client(sb.connectionString('cloud')).createSender('store-beta').sendMessages({ body: 'beta order' });
    const alpha = client(ruleKeyString(sb, 'store', 'alpha-key'), NO_RETRY);
    const receive = await failureOf(alpha.createReceiver('store-beta').receiveMessages(1, { maxWaitTimeInMs: 2000 }));
    expectUnauthorized(receive);
    expect(receive.message).toMatch(/InvalidSignature/);
    expectUnauthorized(await failureOf(alpha.createReceiver('store-beta').peekMessages(1)));
    expectUnauthorized(await failureOf(alpha.createSender('store-beta').sendMessages({ body: 'forged' })));
    expectUnauthorized(await failureOf(alpha.createReceiver('cloud-inbox').receiveMessages(1, { maxWaitTimeInMs: 2000 })));
    expect(sb.messageCounts()['store-beta']).toBe(1);
  });

  it("a rule's key does not sign for the whole namespace: a token for sb://ns/ with it is refused everywhere", async () => {
    const sb = await emulator(RULES);
    const wide = client(tokenString(sb, '', 'store', 'alpha-key'), NO_RETRY);
    expectUnauthorized(await failureOf(wide.createReceiver('store-alpha').receiveMessages(1, { maxWaitTimeInMs: 2000 })));
    expectUnauthorized(await failureOf(wide.createReceiver('store-beta').peekMessages(1)));
  });

  it('a token for one entity, signed with its rule, is accepted there and refused elsewhere (InvalidAudience)', async () => {
    const sb = await emulator(RULES);
    const inbox = client(tokenString(sb, 'cloud-inbox', 'stores-send', 'inbox-send-key'), NO_RETRY);
    await inbox.createSender('cloud-inbox').sendMessages({ body: 'reply' });
    expect(sb.messageCounts()['cloud-inbox']).toBe(1);
    // Send only: the inbox cannot be read with it.
    const read = await failureOf(inbox.createReceiver('cloud-inbox').receiveMessages(1, { maxWaitTimeInMs: 2000 }));
    expectUnauthorized(read);
    expect(read.message).toMatch(/'Listen' claim/);
    const elsewhere = await failureOf(inbox.createSender('store-alpha').sendMessages({ body: 'forged' }));
    expectUnauthorized(elsewhere);
    expect(elsewhere.message).toMatch(/InvalidAudience/);
    expect(sb.messageCounts()['store-alpha']).toBe(0);
  });

  it("a queue rule's secondary key works as well as its primary", async () => {
    const sb = await emulator(RULES);
    await client(sb.connectionString('cloud')).createSender('store-beta').sendMessages({ body: 'b' });
    const beta = client(ruleKeyString(sb, 'store', 'beta-key-2'), NO_RETRY);
    expect((await beta.createReceiver('store-beta').peekMessages(1)).map((m): unknown => m.body)).toEqual(['b']);
  });

  it("a topic's rule covers its subscriptions, and no other entity", async () => {
    const sb = await emulator(RULES);
    await client(sb.connectionString('cloud')).createSender('events').sendMessages({ body: 'event' });
    const events = client(sb.connectionString('events-listen', { entity: 'events' }), NO_RETRY);
    const [message] = await events.createReceiver('events', 'audit', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('event');
    expectUnauthorized(await failureOf(events.createReceiver('store-alpha').peekMessages(1)));
  });

  it('namespace policies keep working beside the rules', async () => {
    const sb = await emulator(RULES);
    const cloud = client(sb.connectionString('cloud'), NO_RETRY);
    await cloud.createSender('cloud-inbox').sendMessages({ body: 'x' });
    const [message] = await cloud.createReceiver('cloud-inbox', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message?.body).toBe('x');
  });

  it('reads AuthorizationRules from Config.json, and refuses more than 12 on one entity', async () => {
    const config = {
      UserConfig: {
        Namespaces: [
          {
            Name: 'sbemulatorns',
            Queues: [
              {
                Name: 'store-alpha',
                Properties: { MaxDeliveryCount: 5, AuthorizationRules: [{ KeyName: 'store', PrimaryKey: 'alpha-key', Rights: ['Listen'] }] },
              },
            ],
          },
        ],
      },
    };
    const { namespaces } = parseEmulatorConfig(config);
    expect(namespaces[0]!.queues![0]).toEqual({
      name: 'store-alpha',
      maxDeliveryCount: 5,
      authorizationRules: [{ keyName: 'store', primaryKey: 'alpha-key', rights: ['Listen'] }],
    });
    const sb = await emulator({ namespaces });
    await client(sb.connectionString()).createSender('store-alpha').sendMessages({ body: 'configured' });
    const alpha = client(ruleKeyString(sb, 'store', 'alpha-key'), NO_RETRY);
    expect((await alpha.createReceiver('store-alpha').peekMessages(1)).map((m): unknown => m.body)).toEqual(['configured']);

    const thirteen = Array.from({ length: 13 }, (_, i) => ({ KeyName: `k${i}`, PrimaryKey: 'x', Rights: ['Listen'] }));
    const tooMany = structuredClone(config);
    tooMany.UserConfig.Namespaces[0]!.Queues[0]!.Properties.AuthorizationRules = thirteen;
    expect(() => parseEmulatorConfig(tooMany)).toThrow(/AuthorizationRules.*at most 12/);
    await expect(
      emulator({ namespaces: [{ queues: [{ name: 'q', authorizationRules: thirteen.map((r) => ({ keyName: r.KeyName, primaryKey: 'x', rights: ['Listen'] })) }] }] }),
    ).rejects.toThrow(/authorizationRules holds 13 rules; Azure allows at most 12/);
  });
});
