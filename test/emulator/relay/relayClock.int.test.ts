// The relay emulator reads the time only through its `now` option: token expiry, fault windows, timestamps.
import { afterEach, describe, expect, it } from 'vitest';
import {
  Closeables,
  echoHandler,
  sasToken,
  send,
  startListener,
  startRawListener,
  startTestRelay,
} from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const HOUR_IN_MS = 60 * 60 * 1000;

/** The machine clock moved by `offsetInMs`; the offset can be changed later to make time pass at once. */
function movedClock(offsetInMs: number): { now: () => number; advance(byInMs: number): void } {
  let offset = offsetInMs;
  return {
    now: () => Date.now() + offset,
    advance: (byInMs) => {
      offset += byInMs;
    },
  };
}

/** The instant in a relay error detail (`…, Timestamp:2026-12-01T22:10:34.635Z`), in ms since the epoch. */
function timestampOf(detail: string): number {
  const match = /Timestamp:(\S+?)(<|$)/.exec(detail);
  if (match === null) throw new Error(`no Timestamp in ${detail}`);
  return Date.parse(match[1]!);
}

describe('relay emulator clock', () => {
  it('judges listener and sender tokens by the injected clock, and stamps what it reports with it', async () => {
    // Two hours ahead: a one-hour token signed by the machine clock has expired for this relay.
    const clock = movedClock(2 * HOUR_IN_MS);
    const { emulator, log } = await startTestRelay(closeables, { now: clock.now });

    const stale = await startListener(closeables, emulator, 'hc1', echoHandler, { tokenSeconds: 3600, noWait: true });
    expect((await stale.nextError()).message).toBe('Unexpected server response: 401');
    stale.server.close();
    expect((await log.seen('listener.rejected')).message).toContain('ExpiredToken');

    // Three hours by the machine clock is one hour by the relay's.
    const beforeConnectMs = clock.now();
    await startListener(closeables, emulator, 'hc1', echoHandler, { tokenSeconds: 3 * 3600 });
    const afterConnectMs = clock.now();
    const [listener] = emulator.listeners('hc1');
    expect(listener!.connectedAtMs).toBeGreaterThanOrEqual(beforeConnectMs);
    expect(listener!.connectedAtMs).toBeLessThanOrEqual(afterConnectMs);

    const beforeRefusalMs = clock.now();
    const refused = await send(emulator, 'hc1/orders', { method: 'POST', body: 'o1', token: sasToken(emulator, 'hc1') });
    const afterRefusalMs = clock.now();
    expect(refused.status).toBe(401);
    const detail = await refused.text();
    expect(detail).toContain('ExpiredToken');
    expect(timestampOf(detail)).toBeGreaterThanOrEqual(beforeRefusalMs);
    expect(timestampOf(detail)).toBeLessThanOrEqual(afterRefusalMs);
    const logged = await log.seen('sender.error', (entry) => entry.statusCode === 401);
    expect(logged.timeInMs).toBeGreaterThanOrEqual(beforeRefusalMs);
    expect(logged.timeInMs).toBeLessThanOrEqual(afterRefusalMs);

    const accepted = await send(emulator, 'hc1/orders', { method: 'POST', body: 'o2', token: sasToken(emulator, 'hc1', { nowInMs: clock.now() }) });
    expect(accepted.status).toBe(200);
    expect(await accepted.text()).toBe('o2');
  });

  it('closes a control channel when its token expires by the injected clock', async () => {
    const clock = movedClock(2 * HOUR_IN_MS);
    const { emulator, log } = await startTestRelay(closeables, { now: clock.now, tokenExpiryGraceInMs: 0 });
    // Expiry has a one-second resolution: this token has between one and two seconds left on the relay's clock.
    const expiresOnInSeconds = Math.floor(clock.now() / 1000) + 2;
    const raw = await startRawListener(closeables, emulator, 'hc1', { token: sasToken(emulator, 'hc1', { expiresOnInSeconds }) });
    const expired = await log.next('listener.tokenExpired');
    expect(await raw.closed).toBe(1008);
    expect(expired.timeInMs).toBeGreaterThanOrEqual(expiresOnInSeconds * 1000);
  });

  it('ends a refuseListeners window once the injected clock has passed it, without waiting', async () => {
    const clock = movedClock(0);
    const { emulator } = await startTestRelay(closeables, { now: clock.now });
    emulator.refuseListeners('hc1', 10 * 60_000);
    const token = (): string => sasToken(emulator, 'hc1', { nowInMs: clock.now() });
    await expect(startRawListener(closeables, emulator, 'hc1', { token: token() })).rejects.toThrow('Unexpected server response: 503');
    clock.advance(10 * 60_000 + 1);
    await startRawListener(closeables, emulator, 'hc1', { token: token() });
    expect(emulator.listenerCount('hc1')).toBe(1);
  });
});
