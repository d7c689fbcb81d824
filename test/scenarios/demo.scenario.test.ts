import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/runDemo.js';

describe('the embedded demo, shortened', () => {
  it('a morning with a relay cut, a store SIGKILLed and Service Bus restarted reconciles: nothing lost, nothing run twice', async () => {
    const output: string[] = [];
    // The run's directory is gone when runDemo returns: a store's config is read when the demo names the directory.
    const storeConfigs: string[] = [];
    const write = (text: string) => {
      output.push(text);
      const provisioned = /^stores provisioned with least-privilege credentials: (\/.+)$/m.exec(text)?.[1];
      if (provisioned !== undefined) storeConfigs.push(readFileSync(path.join(provisioned, 'paris-1', 'store.json'), 'utf8'));
    };
    const report = await runDemo({ stores: 3, durationInSeconds: 6, seed: 7, faults: true, live: false, write });
    // The stores run from what `storelink provision` wrote: their own rules' keys, never a namespace key.
    expect(output.join('').split('\n').filter((line) => line.startsWith('stores provisioned with least-privilege credentials: '))).toHaveLength(1);
    expect(storeConfigs).toHaveLength(1);
    const storeConfig = JSON.parse(storeConfigs[0]!) as { storeId: string; serviceBus: { connectionString: string; cloudInboxConnectionString: string }; relay: { connectionString: string } };
    expect(storeConfig.storeId).toBe('paris-1');
    expect(storeConfigs[0]).not.toMatch(/RootManageSharedAccessKey/);
    expect(storeConfig.serviceBus.connectionString).toMatch(/;SharedAccessKeyName=store;SharedAccessKey=/);
    expect(storeConfig.serviceBus.cloudInboxConnectionString).toMatch(/;SharedAccessSignature=SharedAccessSignature /);
    expect(storeConfig.relay.connectionString).toMatch(/;SharedAccessKeyName=store;SharedAccessKey=/);
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
