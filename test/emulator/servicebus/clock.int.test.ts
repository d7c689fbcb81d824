// The Service Bus emulator reads the time only through its `now` option: enqueue times, locks, expiry, SAS tokens.
import { isServiceBusError } from '@azure/service-bus';
import { describe, expect, it } from 'vitest';
import { startServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';
import { client, emulator, failureOf, onCleanup, queues, tempDir } from './harness.js';

const HOUR_IN_MS = 60 * 60 * 1000;

describe('service bus emulator clock', () => {
  it('stamps enqueue times and lock expiries with the injected clock, not the machine clock', async () => {
    // Behind the machine clock, so the SDK's one-hour tokens (signed by the machine clock) are still valid here.
    const now = (): number => Date.now() - 2 * HOUR_IN_MS;
    const sb = await emulator({ namespaces: [{ queues: [{ name: 'q1', lockDurationInMs: 30_000 }] }], now });
    const c = client(sb.connectionString());
    // A lock that looks two hours stale to the SDK would otherwise be renewed in a tight loop.
    const receiver = c.createReceiver('q1', { maxAutoLockRenewalDurationInMs: 0 });
    const beforeSendMs = now();
    await c.createSender('q1').sendMessages({ body: 'stamped' });
    const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
    const afterReceiveMs = now();
    expect(message!.enqueuedTimeUtc!.getTime()).toBeGreaterThanOrEqual(beforeSendMs);
    expect(message!.enqueuedTimeUtc!.getTime()).toBeLessThanOrEqual(afterReceiveMs);
    expect(message!.lockedUntilUtc!.getTime()).toBeGreaterThanOrEqual(beforeSendMs + 30_000);
    expect(message!.lockedUntilUtc!.getTime()).toBeLessThanOrEqual(afterReceiveMs + 30_000);
    // The lock is judged by the same clock that set it.
    await receiver.completeMessage(message!);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('refuses SAS tokens that have expired by the injected clock', async () => {
    // Two hours ahead, the SDK's one-hour tokens have expired for the emulator.
    const sb = await emulator({ namespaces: queues('q1'), now: () => Date.now() + 2 * HOUR_IN_MS });
    const c = client(sb.connectionString(), { retryOptions: { maxRetries: 0, retryDelayInMs: 50, timeoutInMs: 3000 } });
    const failure = await failureOf(c.createSender('q1').sendMessages({ body: 'refused' }));
    expect(isServiceBusError(failure) && failure.code).toBe('UnauthorizedAccess');
    expect(failure.message).toMatch(/ExpiredToken/);
    expect(sb.messageCounts().q1).toBe(0);
  });

  it('expires, on recovery, a journalled message whose time to live has passed by the restarted emulator clock', async () => {
    const dataDir = await tempDir();
    const namespaces = [{ queues: [{ name: 'q1', deadLetteringOnMessageExpiration: true }] }];
    const first = await startServiceBusEmulator({ dataDir, namespaces });
    const c = client(first.connectionString());
    await c.createSender('q1').sendMessages({ body: 'perishable', timeToLive: HOUR_IN_MS });
    await c.close();
    await first.close();
    // The host clock jumped two hours while the emulator was down.
    const second = await startServiceBusEmulator({ dataDir, namespaces, now: () => Date.now() + 2 * HOUR_IN_MS });
    onCleanup(() => second.close());
    expect(second.messageCounts()).toMatchObject({ q1: 0, 'q1/$DeadLetterQueue': 1 });
  });
});
