import type { IncomingMessage, ServerResponse } from 'node:http';
import hycoHttps from 'hyco-https';
import { request } from 'undici';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConnectionString, relayHttpUrl, relayListenUrl } from '../../../src/core/connectionString.js';
import { createSasToken } from '../../../src/core/sas.js';
import { DEVELOPMENT_KEY, DEVELOPMENT_KEY_NAME } from '../../../src/emulator/relay/index.js';
import { startEmulators, type Emulators, type EmulatorsOptions } from '../../../src/emulator/startEmulators.js';
import { testTlsFiles } from '../../support/testTls.js';
import { Closeables, echoHandler, patternBytes } from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

const KIB = 1024;

async function startTlsEmulators(options: EmulatorsOptions = {}): Promise<Emulators> {
  const { certFile, keyFile } = testTlsFiles();
  const emulators = await startEmulators({ hybridConnections: [{ name: 'hc1' }], tlsPort: 0, tls: { certFile, keyFile }, ...options });
  closeables.add(() => emulators.close());
  return emulators;
}

function token(resource: string): string {
  return createSasToken({ resource, keyName: DEVELOPMENT_KEY_NAME, key: DEVELOPMENT_KEY });
}

/** A real hyco-https listener on the TLS port, at the address the production-form connection string gives. */
async function listenOverWss(emulators: Emulators, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<void> {
  const uri = relayListenUrl(parseConnectionString(emulators.tls!.relayConnectionString()), 'hc1');
  const server = hycoHttps.createRelayedServer({ server: uri, token: () => hycoHttps.createRelayToken(uri, DEVELOPMENT_KEY_NAME, DEVELOPMENT_KEY) }, handler);
  server.on('error', () => undefined);
  const listening = new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.listen();
  closeables.add(
    () =>
      new Promise<void>((resolve) => {
        server.once('close', () => resolve());
        server.close();
      }),
  );
  await listening;
}

async function sendOverHttps(emulators: Emulators, body: Buffer): Promise<{ status: number; body: Buffer }> {
  const url = relayHttpUrl(parseConnectionString(emulators.tls!.relayConnectionString()), 'hc1');
  const response = await request(url, { method: 'POST', body, headers: { ServiceBusAuthorization: token(url), 'content-type': 'application/octet-stream' } });
  return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()) };
}

describe('the TLS port of the emulators: Relay', () => {
  it('gives a production-form connection string whose listener and sender addresses are wss and https on the TLS port', async () => {
    const emulators = await startTlsEmulators();
    const port = emulators.tls!.port;
    const connection = parseConnectionString(emulators.tls!.relayConnectionString());
    expect(emulators.tls!.relayConnectionString()).toBe(`Endpoint=sb://localhost:${port}/;SharedAccessKeyName=${DEVELOPMENT_KEY_NAME};SharedAccessKey=${DEVELOPMENT_KEY}`);
    expect(relayListenUrl(connection, 'hc1')).toBe(`wss://localhost:${port}/$hc/hc1?sb-hc-action=listen`);
    expect(relayHttpUrl(connection, 'hc1')).toBe(`https://localhost:${port}/hc1`);
  });

  it.each([
    ['0 B', 0],
    ['64 KiB', 64 * KIB],
    ['64 KiB + 1', 64 * KIB + 1],
    ['3 MiB', 3 * KIB * KIB],
  ])('relays a %s body from an https sender to a wss listener and echoes it back', async (_label, size) => {
    const emulators = await startTlsEmulators();
    await listenOverWss(emulators, echoHandler);
    const body = patternBytes(size);
    const answer = await sendOverHttps(emulators, body);
    expect(answer.status).toBe(200);
    expect(answer.body.length).toBe(size);
    expect(answer.body.equals(body)).toBe(true);
  });

  it('relays a 66 KiB response written one character per res.write (one WebSocket fragment each)', async () => {
    const emulators = await startTlsEmulators();
    const text = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil((66 * KIB) / 36)).slice(0, 66 * KIB);
    await listenOverWss(emulators, (req, res) => {
      req.resume();
      req.once('end', () => {
        res.setHeader('content-type', 'text/plain');
        for (const character of text) res.write(character);
        res.end();
      });
    });
    const answer = await sendOverHttps(emulators, Buffer.from('go'));
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe(text);
  });

  it('gives a listener on the TLS port rendezvous addresses on wss, its host and the TLS port', async () => {
    const emulators = await startTlsEmulators();
    const address = await rendezvousAddressFor(emulators);
    expect(address).toMatch(new RegExp(`^wss://localhost:${emulators.tls!.port}/\\$hc/hc1\\?sb-hc-action=request&sb-hc-id=`));
  });

  it('gives rendezvous addresses on the configured public URL when there is one', async () => {
    const emulators = await startTlsEmulators({ relayPublicUrl: 'https://relay.example.test:8443' });
    const address = await rendezvousAddressFor(emulators);
    expect(address).toMatch(/^wss:\/\/relay\.example\.test:8443\/\$hc\/hc1\?sb-hc-action=request&sb-hc-id=/);
  });

  it('keeps ws rendezvous addresses for a listener on the plaintext port', async () => {
    const emulators = await startTlsEmulators();
    const address = await rendezvousAddressFor(emulators, `ws://127.0.0.1:${emulators.relay.port}/$hc/hc1?sb-hc-action=listen`);
    expect(address).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${emulators.relay.port}/\\$hc/hc1\\?`));
  });
});

/** Opens a bare control channel, sends one request through the relay and returns the address the listener is told. */
async function rendezvousAddressFor(emulators: Emulators, listenUri?: string): Promise<string> {
  const uri = listenUri ?? relayListenUrl(parseConnectionString(emulators.tls!.relayConnectionString()), 'hc1');
  const socket = new WebSocket(uri, { headers: { ServiceBusAuthorization: token(uri.replace(/^ws/, 'http').split('?')[0]!) }, perMessageDeflate: false });
  closeables.add(() => socket.terminate());
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  const message = new Promise<string>((resolve) => socket.once('message', (data: Buffer) => resolve(data.toString())));
  const url = relayHttpUrl(parseConnectionString(emulators.tls!.relayConnectionString()), 'hc1');
  const sent = request(url, { method: 'GET', headers: { ServiceBusAuthorization: token(url) } }).then(
    (response) => response.body.dump(),
    () => undefined,
  );
  const parsed = JSON.parse(await message) as { request: { address: string } };
  socket.terminate();
  await sent;
  return parsed.request.address;
}
