/**
 * The store doctor with a credential of its own for the inbox (serviceBus.cloudInboxConnectionString): each right is
 * tried with the credential that holds it, and any right beyond Listen on the queue and Send on the inbox is found.
 * Real SDK against the Service Bus emulator with per-entity rules.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSasToken } from '../../src/core/sas.js';
import type { DoctorReport } from '../../src/doctor/checkup.js';
import { runStoreDoctor } from '../../src/doctor/doctor.js';
import { startEmulators, type Emulators } from '../../src/emulator/index.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulatorsWithRules(): Promise<Emulators> {
  const emulators = await startEmulators({
    namespaces: [
      {
        queues: [
          { name: 'store-paris-1', authorizationRules: [{ keyName: 'store', primaryKey: 'paris-listen-key', rights: ['Listen'] }] },
          { name: 'cloud-inbox', authorizationRules: [{ keyName: 'stores-send', primaryKey: 'inbox-send-key', rights: ['Send'] }] },
        ],
      },
    ],
    sharedAccessPolicies: [
      { keyName: 'admin', primaryKey: 'admin-key', rights: ['Manage', 'Listen', 'Send'] },
      { keyName: 'wide', primaryKey: 'wide-key', rights: ['Listen', 'Send'] },
    ],
  });
  cleanups.push(() => emulators.close());
  return emulators;
}

function doctorOf(emulators: Emulators, inbox: string): Promise<DoctorReport> {
  const port = emulators.serviceBus.port;
  return runStoreDoctor({
    storeId: 'paris-1',
    serviceBus: {
      connectionString: `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=store;SharedAccessKey=paris-listen-key;UseDevelopmentEmulator=true`,
      cloudInboxConnectionString: inbox,
      transport: 'amqp',
    },
    timeoutInMs: 5_000,
    env: {},
  });
}

function row(report: DoctorReport, id: string) {
  const found = report.checks.find((check) => check.id === id);
  if (found === undefined) throw new Error(`no check ${id} in ${JSON.stringify(report.checks.map((check) => check.id))}`);
  return found;
}

describe('store doctor: a separate inbox credential', () => {
  it('passes a Listen rule on the queue and a Send token for the inbox, and says each holds no more', async () => {
    const emulators = await emulatorsWithRules();
    const port = emulators.serviceBus.port;
    const token = createSasToken({ resource: `sb://127.0.0.1:${port}/cloud-inbox`, keyName: 'stores-send', key: 'inbox-send-key' });
    const report = await doctorOf(emulators, `Endpoint=sb://127.0.0.1:${port}/;SharedAccessSignature=${token};UseDevelopmentEmulator=true`);
    expect(row(report, 'servicebus.listen').ok).toBe(true);
    expect(row(report, 'servicebus.send')).toMatchObject({ ok: true, title: expect.stringContaining('cloudInboxConnectionString') });
    expect(row(report, 'servicebus.rights')).toMatchObject({
      ok: true,
      detail: expect.stringContaining('the inbox credential "stores-send" has Send on cloud-inbox and no more'),
    });
  });

  it('finds an inbox credential that can also read the inbox', async () => {
    const emulators = await emulatorsWithRules();
    const report = await doctorOf(emulators, `Endpoint=sb://127.0.0.1:${emulators.serviceBus.port}/;SharedAccessKeyName=wide;SharedAccessKey=wide-key;UseDevelopmentEmulator=true`);
    expect(row(report, 'servicebus.send').ok).toBe(true);
    const rights = row(report, 'servicebus.rights');
    expect(rights.ok).toBe(false);
    expect(rights.detail).toContain('the inbox credential "wide" can also read cloud-inbox and send to the store\'s queue store-paris-1');
  });
});
