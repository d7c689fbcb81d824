/** Shared set-up for the emulator's integration tests: start emulators and SDK clients, and close them all after each test. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient, type ServiceBusClientOptions } from '@azure/service-bus';
import { afterEach } from 'vitest';
import { startServiceBusEmulator, type ServiceBusEmulator, type ServiceBusEmulatorOptions } from '../../../src/emulator/servicebus/index.js';

const closeables: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  const pending = closeables.splice(0).reverse();
  for (const close of pending) {
    // A client whose socket was cut may take long to notice; do not let one cleanup stall the rest.
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)));
    await Promise.race([close().catch(() => undefined), limit]);
    clearTimeout(timer);
  }
});

export function onCleanup(close: () => Promise<unknown>): void {
  closeables.push(close);
}

export async function emulator(options: ServiceBusEmulatorOptions = {}): Promise<ServiceBusEmulator> {
  const started = await startServiceBusEmulator(options);
  onCleanup(() => started.close());
  return started;
}

export const FAST_RETRY: ServiceBusClientOptions = {
  retryOptions: { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 4000 },
};

export function client(connectionString: string, options: ServiceBusClientOptions = FAST_RETRY): ServiceBusClient {
  const created = new ServiceBusClient(connectionString, options);
  onCleanup(() => created.close());
  return created;
}

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sb-emulator-'));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Rejects with the error a promise rejects with (fails if it resolves). */
export async function failureOf(promise: Promise<unknown>): Promise<Error & { code?: string; errors?: unknown[] }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure, but the call succeeded');
}

export function queues(...names: string[]): ServiceBusEmulatorOptions['namespaces'] {
  return [{ queues: names.map((name) => ({ name })) }];
}

/** Waits until `condition()` holds, checking on each turn of the event loop; fails after `timeoutInMs`. */
export async function eventually(condition: () => boolean, timeoutInMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutInMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutInMs} ms`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
