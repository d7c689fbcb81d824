/**
 * The management API of the Service Bus emulator, driven by the real ServiceBusAdministrationClient over HTTPS on the
 * TLS port (ATOM XML, a SAS token with Manage in the Authorization header), as provisioning code written for Azure does.
 */
import { ServiceBusAdministrationClient, ServiceBusClient } from '@azure/service-bus';
import { afterEach, describe, expect, it } from 'vitest';
import { createSasToken } from '../../../src/core/sas.js';
import { MAX_MANAGEMENT_BODY_BYTES, MAX_MANAGEMENT_XML_DEPTH } from '../../../src/emulator/servicebus/index.js';
import { startEmulators, tlsConnectionString, type Emulators } from '../../../src/emulator/startEmulators.js';
import { testTlsFiles } from '../../support/testTls.js';
import { Closeables } from '../relay/relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

async function start(): Promise<Emulators> {
  const { certFile, keyFile } = testTlsFiles();
  const emulators = await startEmulators({
    namespaces: [{ queues: [{ name: 'existing' }] }],
    sharedAccessPolicies: [
      { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key', rights: ['Manage', 'Listen', 'Send'] },
      { keyName: 'sender', primaryKey: 'send-key', rights: ['Send'] },
    ],
    tlsPort: 0,
    tls: { certFile, keyFile },
    serviceBusPort: null,
    relayPort: null,
  });
  closeables.add(() => emulators.close());
  return emulators;
}

const RULE_KEY = 'bGlzdGVuLWtleS1vZi1zdG9yZS1hbHBoYS0wMTIzNDU2Nzg5';

describe('Service Bus management API (ServiceBusAdministrationClient over the TLS port)', () => {
  it('creates, gets, updates, lists and deletes queues, with their authorization rules, and those rules work on AMQP', async () => {
    const emulators = await start();
    const port = emulators.tls!.port;
    const admin = new ServiceBusAdministrationClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' }));

    expect(await admin.queueExists('store-alpha')).toBe(false);
    const created = await admin.createQueue('store-alpha', {
      lockDuration: 'PT30S',
      maxDeliveryCount: 5,
      requiresDuplicateDetection: true,
      duplicateDetectionHistoryTimeWindow: 'PT20M',
      authorizationRules: [{ claimType: 'SharedAccessKey', keyName: 'store-alpha-listen', accessRights: ['Listen'], primaryKey: RULE_KEY }],
    });
    expect(created.name).toBe('store-alpha');
    expect(created.lockDuration).toBe('PT30S');
    expect(created.maxDeliveryCount).toBe(5);
    expect(created.requiresDuplicateDetection).toBe(true);
    expect(created.authorizationRules).toEqual([expect.objectContaining({ keyName: 'store-alpha-listen', accessRights: ['Listen'], primaryKey: RULE_KEY })]);
    expect(await admin.queueExists('store-alpha')).toBe(true);

    await expect(admin.createQueue('store-alpha')).rejects.toMatchObject({ code: 'MessageEntityAlreadyExistsError', statusCode: 409 });

    const got = await admin.getQueue('store-alpha');
    expect(got.maxDeliveryCount).toBe(5);
    got.maxDeliveryCount = 7;
    const updated = await admin.updateQueue(got);
    expect(updated.maxDeliveryCount).toBe(7);
    expect((await admin.getQueue('store-alpha')).authorizationRules?.map((rule) => rule.keyName)).toEqual(['store-alpha-listen']);

    const names: string[] = [];
    for await (const queue of admin.listQueues()) names.push(queue.name);
    expect(names.sort()).toEqual(['existing', 'store-alpha']);

    // The rule created through the management API is a rule of that queue on AMQP: Listen there, nowhere else.
    const sender = new ServiceBusClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' }));
    closeables.add(() => sender.close());
    await sender.createSender('store-alpha').sendMessages({ body: 'hello' });
    const listener = new ServiceBusClient(tlsConnectionString(port, { keyName: 'store-alpha-listen', primaryKey: RULE_KEY }), { retryOptions: { maxRetries: 0, timeoutInMs: 5000 } });
    closeables.add(() => listener.close());
    const [message] = await listener.createReceiver('store-alpha', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5000 });
    expect(message?.body).toBe('hello');
    await expect(listener.createReceiver('existing').receiveMessages(1, { maxWaitTimeInMs: 2000 })).rejects.toMatchObject({ code: 'UnauthorizedAccess' });

    await admin.deleteQueue('store-alpha');
    expect(await admin.queueExists('store-alpha')).toBe(false);
    await expect(admin.deleteQueue('store-alpha')).rejects.toMatchObject({ code: 'MessageEntityNotFoundError', statusCode: 404 });
    await expect(admin.getQueue('store-alpha')).rejects.toMatchObject({ code: 'MessageEntityNotFoundError' });
  });

  it('refuses a key without Manage (401) and a request without a token (401)', async () => {
    const emulators = await start();
    const port = emulators.tls!.port;
    const sendOnly = new ServiceBusAdministrationClient(tlsConnectionString(port, { keyName: 'sender', primaryKey: 'send-key' }));
    await expect(sendOnly.createQueue('sneaky')).rejects.toMatchObject({ code: 'UnauthorizedRequestError', statusCode: 401 });
    const wrongKey = new ServiceBusAdministrationClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'not-the-key' }));
    await expect(wrongKey.getQueue('existing')).rejects.toMatchObject({ statusCode: 401 });
    const response = await fetch(`https://localhost:${port}/existing?api-version=2021-05`);
    expect(response.status).toBe(401);
  });

  it('manages topics, subscriptions and their rules', async () => {
    const emulators = await start();
    const port = emulators.tls!.port;
    const admin = new ServiceBusAdministrationClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' }));
    await admin.createTopic('events', { authorizationRules: [{ claimType: 'SharedAccessKey', keyName: 'events-send', accessRights: ['Send'], primaryKey: RULE_KEY }] });
    expect(await admin.topicExists('events')).toBe(true);
    expect((await admin.getTopic('events')).authorizationRules?.[0]?.keyName).toBe('events-send');
    await admin.createSubscription('events', 'audit', { maxDeliveryCount: 3 });
    expect((await admin.getSubscription('events', 'audit')).maxDeliveryCount).toBe(3);
    expect(await admin.subscriptionExists('events', 'audit')).toBe(true);
    await admin.createRule('events', 'audit', 'only-orders', { sqlExpression: "sys.Label = 'order'" });
    const rules: string[] = [];
    for await (const rule of admin.listRules('events', 'audit')) rules.push(rule.name);
    expect(rules.sort()).toEqual(['$Default', 'only-orders']);
    await admin.deleteRule('events', 'audit', '$Default');

    const client = new ServiceBusClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' }));
    closeables.add(() => client.close());
    await client.createSender('events').sendMessages([{ body: 'a', subject: 'order' }, { body: 'b', subject: 'other' }]);
    const received = await client.createReceiver('events', 'audit', { receiveMode: 'receiveAndDelete' }).receiveMessages(2, { maxWaitTimeInMs: 1000 });
    expect(received.map((m) => m.body as unknown)).toEqual(['a']);

    const subscriptions: string[] = [];
    for await (const subscription of admin.listSubscriptions('events')) subscriptions.push(subscription.subscriptionName);
    expect(subscriptions).toEqual(['audit']);
    const topics: string[] = [];
    for await (const topic of admin.listTopics()) topics.push(topic.name);
    expect(topics).toEqual(['events']);
    await admin.deleteSubscription('events', 'audit');
    expect(await admin.subscriptionExists('events', 'audit')).toBe(false);
    await admin.deleteTopic('events');
    expect(await admin.topicExists('events')).toBe(false);
  });

  it('bounds a PUT body in size (413) and element depth (400) before parsing it, refuses a DTD (400), and creates nothing', async () => {
    const emulators = await start();
    const port = emulators.tls!.port;
    const url = `https://localhost:${port}/bounded?api-version=2021-05`;
    const authorization = createSasToken({ resource: url, keyName: 'RootManageSharedAccessKey', key: 'manage-key' });
    const put = (body: string): Promise<Response> => fetch(url, { method: 'PUT', headers: { authorization, 'content-type': 'application/atom+xml' }, body });
    const large = await put(`<entry><content><QueueDescription><UserMetadata>${'x'.repeat(MAX_MANAGEMENT_BODY_BYTES)}</UserMetadata></QueueDescription></content></entry>`);
    expect(large.status).toBe(413);
    const deep = await put(`<entry><content>${'<a>'.repeat(MAX_MANAGEMENT_XML_DEPTH)}${'</a>'.repeat(MAX_MANAGEMENT_XML_DEPTH)}</content></entry>`);
    expect(deep.status).toBe(400);
    expect(await deep.text()).toContain('deeper than');
    const entities = await put(`<!DOCTYPE entry [<!ENTITY a "aaaaaaaaaa">]><entry><content><QueueDescription><UserMetadata>&a;&a;</UserMetadata></QueueDescription></content></entry>`);
    expect(entities.status).toBe(400);
    const admin = new ServiceBusAdministrationClient(tlsConnectionString(port, { keyName: 'RootManageSharedAccessKey', primaryKey: 'manage-key' }));
    expect(await admin.queueExists('bounded')).toBe(false);
  });
});
