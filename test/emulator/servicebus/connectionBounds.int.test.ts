/**
 * The emulator bounds what an unauthenticated peer can make it hold: a frame may not be larger than advertised (and
 * before a CBS token, than a small limit), and a connection that does not authenticate in time is closed — raw TCP
 * with no protocol header, or an AMQP connection that never puts a token. The real SDK keeps working meanwhile,
 * splitting its large messages into frames of the advertised size.
 */
import { connect, type Socket } from 'node:net';
import rhea, { type EventContext } from 'rhea';
import { describe, expect, it } from 'vitest';
import { createSasToken } from '../../../src/core/sas.js';
import { client, emulator, onCleanup, queues } from './harness.js';

const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]);
const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x03, 0x01, 0x00, 0x00]);

/** A frame header (size, data offset 2, type, channel 0) declaring a frame of `size` bytes. */
function frameHeader(size: number, type = 0): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(size, 0);
  header.writeUInt8(2, 4);
  header.writeUInt8(type, 5);
  return header;
}

/** Connects, writes `bytes`, and resolves with what the emulator sent back once it has closed the socket. */
function closedAfter(port: number, bytes: Buffer): { socket: Socket; closed: Promise<Buffer> } {
  const socket = connect(port, '127.0.0.1');
  onCleanup(() => Promise.resolve(socket.destroy()));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<Buffer>((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
  if (bytes.length > 0) socket.write(bytes);
  return { socket, closed };
}

describe('service bus emulator: connection bounds', () => {
  it.each([
    ['an AMQP frame declaring 4 GiB', Buffer.concat([AMQP_HEADER, frameHeader(0xffff_ffff)])],
    ['a SASL frame declaring 4 GiB', Buffer.concat([SASL_HEADER, frameHeader(0xffff_ffff, 1)])],
    ['a frame over the unauthenticated limit', Buffer.concat([AMQP_HEADER, frameHeader(64 * 1024 + 1)])],
    ['a frame shorter than its own header', Buffer.concat([AMQP_HEADER, frameHeader(4)])],
  ])('closes a connection that sends %s before authenticating, without waiting for its bytes', async (_name, bytes) => {
    const sb = await emulator({ authenticationTimeoutInMs: 60_000 });
    const { closed } = closedAfter(sb.port, bytes);
    await closed;
    expect(sb.activeConnections).toBe(0);
  });

  it('closes a raw TCP connection that sends nothing once authenticationTimeoutInMs has passed', async () => {
    const sb = await emulator({ authenticationTimeoutInMs: 300 });
    const { closed } = closedAfter(sb.port, Buffer.alloc(0));
    expect((await closed).length).toBe(0);
  });

  it('closes an AMQP connection that never puts a CBS token, with amqp:unauthorized-access', async () => {
    const sb = await emulator({ authenticationTimeoutInMs: 300 });
    const container = rhea.create_container();
    const connection = container.connect({ host: '127.0.0.1', port: sb.port, reconnect: false });
    onCleanup(() => Promise.resolve(connection.close()));
    const opened = new Promise<void>((resolve) => connection.once('connection_open', () => resolve()));
    const closedWith = new Promise<unknown>((resolve) => {
      connection.once('connection_close', (context: EventContext) => resolve(context.connection.get_error()));
      connection.once('disconnected', (context: EventContext) => resolve(context.error ?? context.connection.get_error()));
    });
    await opened;
    expect(await closedWith).toMatchObject({ condition: 'amqp:unauthorized-access', description: expect.stringContaining('300 ms') });
  });

  it('keeps serving an SDK client past the deadline, and reassembles its large messages split into advertised frames', async () => {
    const sb = await emulator({ namespaces: queues('q1'), authenticationTimeoutInMs: 300, maxFrameSizeInBytes: 16 * 1024 });
    const sdk = client(sb.connectionString());
    const body = 'x'.repeat(200 * 1024);
    await sdk.createSender('q1').sendMessages({ body });
    // A bystander that never authenticates is cut at the deadline; the SDK's connection, authenticated, is not.
    await closedAfter(sb.port, Buffer.alloc(0)).closed;
    const [message] = await sdk.createReceiver('q1', { receiveMode: 'receiveAndDelete' }).receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    expect(message?.body).toBe(body);
    expect(sb.activeConnections).toBe(1);
  });

  it('closes an authenticated connection whose transfer, split into frames, grows past twice the link\'s max message size', async () => {
    const sb = await emulator({ namespaces: queues('q1') });
    const container = rhea.create_container();
    const connection = container.connect({ host: '127.0.0.1', port: sb.port, reconnect: false, username: 'RootManageSharedAccessKey' });
    onCleanup(() => Promise.resolve(connection.close()));
    const closedWith = new Promise<unknown>((resolve) => {
      connection.once('connection_close', (context: EventContext) => resolve(context.connection.get_error()));
      connection.once('disconnected', (context: EventContext) => resolve(context.error ?? context.connection.get_error()));
    });
    // Authenticate as the SDK does: a put-token on $cbs, answered on a reply link.
    const replies = connection.open_receiver({ source: { address: '$cbs' }, target: { address: 'cbs-replies' } });
    const cbs = connection.open_sender({ target: { address: '$cbs' } });
    await new Promise<void>((resolve) => cbs.once('sendable', () => resolve()));
    const accepted = new Promise<unknown>((resolve) => replies.once('message', (context: EventContext) => resolve(context.message?.application_properties?.['status-code'])));
    const audience = `sb://127.0.0.1:${sb.port}/q1`;
    cbs.send({
      message_id: 'token-1',
      reply_to: 'cbs-replies',
      application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience },
      body: createSasToken({ resource: audience, keyName: 'RootManageSharedAccessKey', key: 'SAS_KEY_VALUE', timeToLiveInMs: 60_000 }),
    });
    expect(await accepted).toBe(202);
    const sender = connection.open_sender({ target: { address: 'q1' } });
    await new Promise<void>((resolve) => sender.once('sendable', () => resolve()));
    // rhea splits it into frames of the advertised 64 KiB; the SDK would have refused it for the link's 256 KiB.
    sender.send({ body: 'x'.repeat(1024 * 1024) });
    expect(await closedWith).toMatchObject({ condition: 'amqp:link:message-size-exceeded' });
    expect(sb.messageCounts()['q1'] ?? 0).toBe(0);
  });

  it.each([
    [{ maxFrameSizeInBytes: 100 }, /maxFrameSizeInBytes must be an integer from 512/],
    [{ unauthenticatedMaxFrameSizeInBytes: 1_000_000, maxFrameSizeInBytes: 65_536 }, /unauthenticatedMaxFrameSizeInBytes .* at most maxFrameSizeInBytes/],
    [{ authenticationTimeoutInMs: 0 }, /authenticationTimeoutInMs must be a positive/],
  ])('refuses %j', async (options, message) => {
    await expect(emulator(options)).rejects.toThrow(message);
  });
});
