import { ServiceBusClient } from '@azure/service-bus';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmulators, type EmulatorsOptions } from '../../src/emulator/startEmulators.js';
import { Closeables, sasToken, startRawListener } from './relay/relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const HOUR_IN_MS = 60 * 60 * 1000;

describe('startEmulators', () => {
  it('gives both emulators the clock it is given', async () => {
    const now = (): number => Date.now() - 2 * HOUR_IN_MS;
    const emulators = await startEmulators({ namespaces: [{ queues: [{ name: 'q1' }] }], hybridConnections: [{ name: 'hc1' }], now });
    closeables.add(() => emulators.close());

    const beforeSendMs = now();
    const c = new ServiceBusClient(emulators.serviceBusConnectionString(), { retryOptions: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 4000 } });
    closeables.add(() => c.close());
    await c.createSender('q1').sendMessages({ body: 'stamped' });
    const [message] = await c.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(message!.enqueuedTimeUtc!.getTime()).toBeGreaterThanOrEqual(beforeSendMs);
    expect(message!.enqueuedTimeUtc!.getTime()).toBeLessThanOrEqual(now());

    // Expired an hour ago by the machine clock, still valid for an hour by the relay's.
    const token = sasToken(emulators.relay, 'hc1', { expiresOnInSeconds: Math.floor(Date.now() / 1000) - 3600 });
    const beforeConnectMs = now();
    await startRawListener(closeables, emulators.relay, 'hc1', { token });
    const [listener] = emulators.relay.listeners('hc1');
    expect(listener!.connectedAtMs).toBeGreaterThanOrEqual(beforeConnectMs);
    expect(listener!.connectedAtMs).toBeLessThanOrEqual(now());
  });

  it('refuses a clock that is not a function', async () => {
    const failure = startEmulators({ now: Date.now() } as unknown as EmulatorsOptions);
    await expect(failure).rejects.toThrow(TypeError);
    await expect(failure).rejects.toThrow(/now must be a function/);
  });
});
