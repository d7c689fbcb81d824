import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { AzureNamedKeyCredential } from '@azure/core-auth';
import { ServiceBusClient, type ServiceBusClientOptions } from '@azure/service-bus';
import { request } from 'undici';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/core/connectionString.js';
import { DEVELOPMENT_KEY, DEVELOPMENT_KEY_NAME } from '../../src/emulator/relay/index.js';
import { startEmulators, type Emulators, type EmulatorsOptions } from '../../src/emulator/startEmulators.js';
import { startRelayEmulator } from '../../src/emulator/relay/index.js';
import { startTlsPort } from '../../src/emulator/tlsPort.js';
import { testTlsFiles } from '../support/testTls.js';
import { Closeables } from './relay/relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const RETRY: ServiceBusClientOptions['retryOptions'] = { maxRetries: 0, timeoutInMs: 5000 };

async function startTlsEmulators(options: EmulatorsOptions = {}): Promise<Emulators> {
  const { certFile, keyFile } = testTlsFiles();
  const emulators = await startEmulators({ namespaces: [{ queues: [{ name: 'q1' }] }], tlsPort: 0, tls: { certFile, keyFile }, ...options });
  closeables.add(() => emulators.close());
  return emulators;
}

/** Sends one message, receives it peek-lock, completes it, and shows the queue is then empty. */
async function roundTrip(client: ServiceBusClient, emulators: Emulators, body: string): Promise<void> {
  closeables.add(() => client.close());
  await client.createSender('q1').sendMessages({ body });
  const receiver = client.createReceiver('q1');
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 5000 });
  expect(message?.body).toBe(body);
  await receiver.completeMessage(message!);
  expect(emulators.serviceBus.messageCounts().q1).toBe(0);
}

describe('the TLS port of the emulators: Service Bus', () => {
  it('serves AMQPS to a client built from a host name and a named key credential (customEndpointAddress for the port)', async () => {
    const emulators = await startTlsEmulators();
    const client = new ServiceBusClient('localhost', new AzureNamedKeyCredential(DEVELOPMENT_KEY_NAME, DEVELOPMENT_KEY), {
      customEndpointAddress: emulators.tls!.serviceBusEndpointAddress,
      retryOptions: RETRY,
    });
    await roundTrip(client, emulators, 'over amqps');
    // Nothing went to the plaintext port.
    expect(emulators.tls!.serviceBusEndpointAddress).toBe(`https://localhost:${emulators.tls!.port}`);
  });

  it('serves AMQP over secure WebSockets at /$servicebus/websocket', async () => {
    const emulators = await startTlsEmulators();
    const client = new ServiceBusClient('localhost', new AzureNamedKeyCredential(DEVELOPMENT_KEY_NAME, DEVELOPMENT_KEY), {
      customEndpointAddress: emulators.tls!.serviceBusEndpointAddress,
      webSocketOptions: { webSocket: WebSocket },
      retryOptions: RETRY,
    });
    await roundTrip(client, emulators, 'over wss');
  });

  it('gives a production-form connection string that works as it is, over AMQPS and over WebSockets', async () => {
    const emulators = await startTlsEmulators();
    const text = emulators.tls!.serviceBusConnectionString();
    expect(text).toBe(`Endpoint=sb://localhost:${emulators.tls!.port}/;SharedAccessKeyName=${DEVELOPMENT_KEY_NAME};SharedAccessKey=${DEVELOPMENT_KEY}`);
    expect(parseConnectionString(text).useDevelopmentEmulator).toBe(false);
    await roundTrip(new ServiceBusClient(text, { retryOptions: RETRY }), emulators, 'amqps from a connection string');
    await roundTrip(new ServiceBusClient(text, { retryOptions: RETRY, webSocketOptions: { webSocket: WebSocket } }), emulators, 'wss from a connection string');
  });

  it('keeps the frame guard in front of rhea on the TLS port: an oversized frame before authentication closes the connection', async () => {
    const emulators = await startTlsEmulators({ serviceBusPort: 0 });
    const { connect: tlsConnect } = await import('node:tls');
    const socket = tlsConnect({ host: '127.0.0.1', port: emulators.tls!.port, servername: 'localhost' });
    closeables.add(() => void socket.destroy());
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const header = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
    const frame = Buffer.alloc(8);
    frame.writeUInt32BE(1024 * 1024 * 1024, 0);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.write(Buffer.concat([header, frame]));
    await closed;
    expect(socket.destroyed).toBe(true);
  });

  it('turns away a plaintext client cleanly: the SDK with a development connection string fails, the port stays up', async () => {
    const emulators = await startTlsEmulators();
    const plain = `Endpoint=sb://127.0.0.1:${emulators.tls!.port};SharedAccessKeyName=${DEVELOPMENT_KEY_NAME};SharedAccessKey=${DEVELOPMENT_KEY};UseDevelopmentEmulator=true`;
    const client = new ServiceBusClient(plain, { retryOptions: { maxRetries: 0, timeoutInMs: 3000 } });
    closeables.add(() => client.close());
    await expect(client.createSender('q1').sendMessages({ body: 'plain' })).rejects.toThrow();
    const http = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: emulators.tls!.port }, () => socket.write('GET /hc1 HTTP/1.1\r\nHost: localhost\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.once('close', () => resolve(text));
    });
    expect(http).not.toMatch(/^HTTP\//);
    await roundTrip(new ServiceBusClient(emulators.tls!.serviceBusConnectionString(), { retryOptions: RETRY }), emulators, 'still up');
  });
});

describe('the TLS port of the emulators: no plaintext port', () => {
  it('refuses a null port without a TLS port (nothing could reach that emulator)', async () => {
    await expect(startEmulators({ serviceBusPort: null })).rejects.toThrow(/needs a tlsPort/);
    await expect(startEmulators({ relayPort: null })).rejects.toThrow(/needs a tlsPort/);
  });

  it('a relay without a plaintext port still cuts a client too slow with its headers (408) on the TLS port', async () => {
    const relay = await startRelayEmulator({ port: null, headersTimeoutInMs: 300, requestTimeoutInMs: 1_000 });
    closeables.add(() => relay.close());
    expect(relay.port).toBe(0);
    const { certFile, keyFile } = testTlsFiles();
    const refuse = (socket: { destroy(): void }): void => socket.destroy();
    const port = await startTlsPort({
      host: '127.0.0.1',
      port: 0,
      cert: await readFile(certFile),
      key: await readFile(keyFile),
      serviceBus: { acceptConnection: refuse, handleUpgrade: (_req, socket) => refuse(socket), handleManagementRequest: (_req, res) => res.destroy() },
      relay,
    });
    closeables.add(() => port.close());
    const { connect: tlsConnect } = await import('node:tls');
    const answer = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: port.port, servername: 'localhost' }, () => socket.write('GET /hc1 HTTP/1.1\r\nHost: localhost\r\n'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.once('close', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
  });
});

describe('the TLS port of the emulators: the development CA', () => {
  it('is created in <dataDir>/tls on first start, reused on the second, and its path is given for NODE_EXTRA_CA_CERTS', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'storelink-tls-datadir-'));
    closeables.add(() => rm(dataDir, { recursive: true, force: true }));
    const first = await startEmulators({ dataDir, tlsPort: 0 });
    const caFile = first.tls!.caFile!;
    expect(caFile).toBe(path.join(dataDir, 'tls', 'ca.crt'));
    const firstCa = new X509Certificate(await readFile(caFile));
    expect(firstCa.ca).toBe(true);
    const served = await serverCertificate(first.tls!.port);
    expect(served.verify(firstCa.publicKey)).toBe(true);
    expect(served.checkHost('localhost')).toBe('localhost');
    await first.close();

    const second = await startEmulators({ dataDir, tlsPort: 0 });
    closeables.add(() => second.close());
    expect(second.tls!.caFile).toBe(caFile);
    expect(new X509Certificate(await readFile(caFile)).fingerprint256).toBe(firstCa.fingerprint256);
    expect((await serverCertificate(second.tls!.port)).fingerprint256).toBe(served.fingerprint256);
  });

  it('without a data dir, keeps its CA in a temporary directory removed on close', async () => {
    const emulators = await startEmulators({ tlsPort: 0 });
    const caFile = emulators.tls!.caFile!;
    await expect(readFile(caFile, 'utf8')).resolves.toMatch(/BEGIN CERTIFICATE/);
    await emulators.close();
    await expect(readFile(caFile, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('with certificate files given, serves them and names no CA file', async () => {
    const emulators = await startTlsEmulators();
    expect(emulators.tls!.caFile).toBeUndefined();
    const given = new X509Certificate(await readFile(testTlsFiles().certFile));
    expect((await serverCertificate(emulators.tls!.port)).fingerprint256).toBe(given.fingerprint256);
    const response = await request(`https://localhost:${emulators.tls!.port}/nothing-here`);
    expect(response.statusCode).toBe(404);
    await response.body.dump();
  });

  it('refuses a key that does not belong to the certificate with FILE_UNREADABLE, naming the file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'storelink-tls-mismatch-'));
    closeables.add(() => rm(dir, { recursive: true, force: true }));
    const other = await startEmulators({ dataDir: dir, tlsPort: 0 });
    await other.close();
    const failure = startEmulators({ tlsPort: 0, tls: { certFile: testTlsFiles().certFile, keyFile: path.join(dir, 'tls', 'server.key') } });
    await expect(failure).rejects.toMatchObject({ code: 'FILE_UNREADABLE', message: expect.stringContaining(path.join(dir, 'tls', 'server.key')) });
    await expect(startEmulators({ tlsPort: 0, tls: { certFile: path.join(dir, 'missing.crt'), keyFile: path.join(dir, 'tls', 'server.key') } })).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
    });
  });
});

async function serverCertificate(port: number): Promise<X509Certificate> {
  const { connect: tlsConnect } = await import('node:tls');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.destroy();
      if (raw === undefined) reject(new Error('no peer certificate'));
      else resolve(raw);
    });
    socket.once('error', reject);
  });
}
