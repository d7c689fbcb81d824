import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ServiceBusClient } from '@azure/service-bus';
import { firstValueFrom, filter } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelayListener } from '../../src/channels/relay/relayListener.js';
import { createRelaySender } from '../../src/channels/relay/relaySender.js';
import { runCli } from '../../src/cli/program.js';
import { createOperation } from '../../src/core/operation.js';
import { parseEmulatorsConfig } from '../../src/emulator/emulatorsConfig.js';
import { firstLine, startCliProcess } from '../support/cliProcess.js';
import { testTlsFiles } from '../support/testTls.js';

const root = path.resolve(import.meta.dirname, '../..');
const closeables: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!();
});

interface ReadyLine {
  serviceBus: { port: number; connectionString: string };
  relay: { port: number; connectionString: string };
}

function startCli(args: string[]): ChildProcessWithoutNullStreams {
  const { child, kill } = startCliProcess(args);
  closeables.push(kill);
  return child;
}

const retryOptions = { maxRetries: 1, retryDelayInMs: 50, timeoutInMs: 5_000 };

describe('storelink emulator', () => {
  it('prints one JSON line, serves the real SDKs on both ports, and stops cleanly on SIGTERM', async () => {
    const child = startCli(['emulator', '--servicebus-port', '0', '--relay-port', '0', '--auto-create', '--json']);
    let stdout = '';
    const ready = JSON.parse(await firstLine(child)) as ReadyLine;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    expect(Object.keys(ready).sort()).toEqual(['relay', 'serviceBus']);
    expect(ready.serviceBus.connectionString).toContain(`sb://127.0.0.1:${ready.serviceBus.port}`);
    expect(ready.serviceBus.connectionString).toContain('UseDevelopmentEmulator=true');
    expect(ready.relay.connectionString).toContain(`sb://127.0.0.1:${ready.relay.port}`);

    const client = new ServiceBusClient(ready.serviceBus.connectionString, { retryOptions });
    closeables.push(() => client.close());
    await client.createSender('store-lyon-2').sendMessages({ body: { hello: 'store' }, messageId: 'm-1' });
    const [message] = await client.createReceiver('store-lyon-2', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    expect(message?.body).toEqual({ hello: 'store' });

    const listener = createRelayListener({
      connectionString: ready.relay.connectionString,
      hybridConnection: 'store-lyon-2',
      expose: ['stock.query'],
      execute: () => Promise.resolve({ sku: 'A', quantity: 7 }),
    });
    closeables.push(() => listener.close());
    listener.start();
    await firstValueFrom(listener.state$.pipe(filter((state) => state.status === 'listening')));
    const reply = await createRelaySender({ connectionString: ready.relay.connectionString, hybridConnection: 'store-lyon-2' }).send(
      createOperation({ storeId: 'lyon-2', type: 'stock.query', payload: { skus: ['A'] }, latency: 'realtime', timeToLiveInMs: 10_000 }),
      { timeoutInMs: 5_000 },
    );
    expect(reply.result).toEqual({ sku: 'A', quantity: 7 });
    await listener.close();
    await client.close();

    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(stdout).toBe('');
  });

  it('applies a Config.json with queues, hybrid connections and access policies', async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'storelink-emulator-'));
    closeables.push(() => rm(directory, { recursive: true, force: true }));
    const configFile = path.join(directory, 'Config.json');
    await writeFile(
      configFile,
      JSON.stringify({
        UserConfig: {
          Namespaces: [
            {
              Name: 'sbemulatorns',
              Queues: [{ Name: 'store-nice-1', Properties: { MaxDeliveryCount: 3, LockDuration: 'PT30S' } }],
              HybridConnections: [{ Name: 'store-nice-1', RequiresClientAuthorization: true }],
              SharedAccessPolicies: [
                { Name: 'admin', Key: 'admin-key', Rights: ['Manage'] },
                { Name: 'cloud', Key: 'cloud-key', Rights: ['Send'] },
              ],
            },
          ],
          Logging: { Type: 'File' },
        },
      }),
    );
    const child = startCli(['emulator', '--servicebus-port', '0', '--relay-port', '0', '--config', configFile, '--json']);
    const ready = JSON.parse(await firstLine(child)) as ReadyLine;
    expect(ready.serviceBus.connectionString).toContain('SharedAccessKeyName=admin;SharedAccessKey=admin-key');

    const client = new ServiceBusClient(ready.serviceBus.connectionString, { retryOptions });
    closeables.push(() => client.close());
    await client.createSender('store-nice-1').sendMessages({ body: 'configured' });
    const unknown = client.createSender('store-unknown');
    await expect(unknown.sendMessages({ body: 'x' })).rejects.toMatchObject({ code: 'MessagingEntityNotFound' });

    const relayConnection = ready.relay.connectionString.replace('SharedAccessKeyName=admin;SharedAccessKey=admin-key', 'SharedAccessKeyName=cloud;SharedAccessKey=cloud-key');
    const noListener = createRelaySender({ connectionString: relayConnection, hybridConnection: 'store-nice-1' }).checkHealth({ timeoutInMs: 5_000 });
    await expect(noListener).rejects.toMatchObject({ code: 'RELAY_NO_LISTENER' });
    await client.close();
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  });

  it('stops when its stop signal aborts, in process', async () => {
    const controller = new AbortController();
    let stdout = '';
    const run = runCli(['emulator', '--servicebus-port', '0', '--relay-port', '0'], {
      stdout: (text) => {
        stdout += text;
        if (text.includes('Press Ctrl+C')) controller.abort();
      },
      stderr: () => undefined,
      cwd: root,
      stopSignal: controller.signal,
    });
    await expect(run).resolves.toBe(0);
    expect(stdout).toMatch(/Service Bus emulator on 127\.0\.0\.1:\d+\n {2}Endpoint=sb:\/\/127\.0\.0\.1:\d+/);
    expect(stdout).toContain('Relay emulator on 127.0.0.1:');
  });

  it('with --tls-port and certificate files, adds a tls object to the JSON line whose connection string works as it is', async () => {
    const controller = new AbortController();
    const { certFile, keyFile } = testTlsFiles();
    let line: ((text: string) => void) | undefined;
    const printed = new Promise<string>((resolve) => (line = resolve));
    const run = runCli(['emulator', '--servicebus-port', '0', '--relay-port', '0', '--auto-create', '--tls-port', '0', '--tls-cert', certFile, '--tls-key', keyFile, '--json'], {
      stdout: (text) => line?.(text),
      stderr: () => undefined,
      cwd: root,
      stopSignal: controller.signal,
    });
    const ready = JSON.parse(await printed) as ReadyLine & {
      tls: { port: number; caFile: string | null; serviceBus: { connectionString: string; endpointAddress: string }; relay: { connectionString: string } };
    };
    const port = ready.tls.port;
    expect(ready.tls).toEqual({
      port,
      caFile: null,
      serviceBus: { connectionString: `Endpoint=sb://localhost:${port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE`, endpointAddress: `https://localhost:${port}` },
      relay: { connectionString: `Endpoint=sb://localhost:${port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE` },
    });
    const client = new ServiceBusClient(ready.tls.serviceBus.connectionString, { retryOptions });
    await client.createSender('store-lyon-2').sendMessages({ body: 'over tls' });
    const [message] = await client.createReceiver('store-lyon-2', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    await client.close();
    expect(message?.body).toBe('over tls');
    controller.abort();
    await expect(run).resolves.toBe(0);
  });

  it('with --tls-port and a data dir, prints the TLS port, the CA file for NODE_EXTRA_CA_CERTS and the production-form strings', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-emulator-tls-cli-'));
    closeables.push(() => rm(dataDir, { recursive: true, force: true }));
    const controller = new AbortController();
    let stdout = '';
    const run = runCli(['emulator', '--servicebus-port', '0', '--relay-port', '0', '--tls-port', '0', '--data-dir', dataDir], {
      stdout: (text) => {
        stdout += text;
        if (text.includes('Press Ctrl+C')) controller.abort();
      },
      stderr: () => undefined,
      cwd: root,
      stopSignal: controller.signal,
    });
    await expect(run).resolves.toBe(0);
    const port = /Both over TLS on 127\.0\.0\.1:(\d+)/.exec(stdout)?.[1];
    expect(port).toBeDefined();
    expect(stdout).toContain(`NODE_EXTRA_CA_CERTS=${path.join(dataDir, 'tls', 'ca.crt')}`);
    expect(stdout).toContain(`Service Bus: Endpoint=sb://localhost:${port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE\n`);
    expect(stdout).toContain(`Relay:       Endpoint=sb://localhost:${port}/;`);
    await expect(readFile(path.join(dataDir, 'tls', 'ca.crt'), 'utf8')).resolves.toMatch(/BEGIN CERTIFICATE/);
  });

  it.each([
    [['emulator', '--tls-port', '0', '--tls-cert', 'server.crt'], 2, '--tls-cert and --tls-key go together'],
    [['emulator', '--tls-cert', 'server.crt', '--tls-key', 'server.key'], 2, 'with --tls-port'],
    [['emulator', '--tls-port', '65536'], 2, 'expected a port number'],
    [['emulator', '--servicebus-port', 'http'], 2, 'expected a port number'],
    [['emulator', '--relay-port', '70000'], 2, 'expected a port number'],
    [['emulator', '--config', 'no/such/Config.json'], 2, 'no such file'],
  ])('refuses %j with exit %i', async (argv, expected, message) => {
    let stderr = '';
    const code = await runCli(argv, { stdout: () => undefined, stderr: (text) => (stderr += text), cwd: root });
    expect(code).toBe(expected);
    expect(stderr).toContain(message);
  });
});

describe('parseEmulatorsConfig', () => {
  it('reads the extensions and leaves the default key when no policy is named', () => {
    const config = parseEmulatorsConfig({
      UserConfig: { Namespaces: [{ Name: 'ns', Queues: [{ Name: 'q' }], HybridConnections: [{ Name: 'hc', RequiresClientAuthorization: false }] }] },
    });
    expect(config.namespaces[0]?.queues).toEqual([{ name: 'q' }]);
    expect(config.hybridConnections).toEqual([{ name: 'hc', requiresClientAuthorization: false }]);
    expect(config.sharedAccessPolicies).toBeUndefined();
  });

  it.each([
    [{ UserConfig: { Namespaces: [{ HybridConnections: [{ Name: '' }] }] } }, 'HybridConnections[0].Name'],
    [{ UserConfig: { Namespaces: [{ SharedAccessPolicies: [{ Name: 'a', Key: 'k', Rights: ['Read'] }] }] } }, 'Rights[0]'],
    [{ UserConfig: { Namespaces: [{ HybridConnections: [{ Name: 'a' }, { Name: 'A' }] }] } }, 'defined twice'],
    [{ UserConfig: { Namespaces: [{ Queues: [{ Name: 'q', Properties: { LockDuration: 'soon' } }] }] } }, 'LockDuration'],
    ['{ nope', 'not valid JSON'],
  ])('names the problem in %j', (config, message) => {
    expect(() => parseEmulatorsConfig(config, 'Config.json')).toThrow(expect.objectContaining({ message: expect.stringContaining(message) }));
  });
});
