import { describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/runDemo.js';

describe('the embedded demo, shortened', () => {
  it('a morning with a relay cut, a store SIGKILLed and Service Bus restarted reconciles: nothing lost, nothing run twice', async () => {
    const output: string[] = [];
    const report = await runDemo({ stores: 3, durationInSeconds: 6, seed: 7, faults: true, live: false, write: (text) => output.push(text) });
    // The stores run the production way: the emulators' TLS port, Service Bus over WebSockets, the CA in their config.
    const tlsLines = output.join('').split('\n').filter((line) => line.startsWith('stores connect over TLS'));
    expect(tlsLines).toHaveLength(1);
    expect(tlsLines[0]).toMatch(/^stores connect over TLS on 127\.0\.0\.1:\d+, Service Bus over WebSockets, CA \/.+\/tls\/ca\.crt$/);
    expect(report.faults).toEqual(
      expect.arrayContaining([
        expect.stringContaining('relay of paris-1 cut'),
        expect.stringContaining('store lyon-2 SIGKILLed'),
        expect.stringContaining('Service Bus emulator restarted'),
      ]),
    );
    expect(report.published).toBeGreaterThan(10);
    expect(report.lost).toEqual([]);
    expect(report.duplicated).toEqual([]);
    expect(report.reconciled).toBe(true);
    expect(report.outcomes['relay:delivered'] ?? 0).toBeGreaterThan(0);
    expect(report.outcomes['queue:queued'] ?? 0).toBeGreaterThan(0);
    expect(report.fallbacks).toBeGreaterThan(0);
  }, 120_000);
});
