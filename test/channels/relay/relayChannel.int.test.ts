import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { firstValueFrom, filter } from 'rxjs';
import { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createRelayListener, type ExecuteOperation, type RelayListener, type RelayListenerState } from '../../../src/channels/relay/relayListener.js';
import { createRelaySender, type RelaySender } from '../../../src/channels/relay/relaySender.js';
import { StorelinkError, type StorelinkErrorCode } from '../../../src/core/errors.js';
import { relayFailureReasonOf } from '../../../src/core/linkContract.js';
import { createOperation, type Operation } from '../../../src/core/operation.js';
import { createSasToken } from '../../../src/core/sas.js';
import { startRelayEmulator, type RelayEmulator, type RelayEmulatorOptions } from '../../../src/emulator/relay/index.js';
import { startTcpProxy } from '../../support/tcpProxy.js';
import { failureOf } from '../../support/failureOf.js';

const HC = 'store-paris-1';
const closeables: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  while (closeables.length > 0) await closeables.pop()!();
});

const POLICIES = [
  { keyName: 'RootManageSharedAccessKey', primaryKey: 'SAS_KEY_VALUE', rights: ['Manage' as const] },
  { keyName: 'store-listen', primaryKey: 'listen-key', rights: ['Listen' as const] },
  { keyName: 'cloud-send', primaryKey: 'send-key', rights: ['Send' as const] },
];

async function startRelay(options: RelayEmulatorOptions = {}): Promise<RelayEmulator> {
  const emulator = await startRelayEmulator({ sharedAccessPolicies: POLICIES, hybridConnections: [{ name: HC }], ...options });
  closeables.push(() => emulator.close());
  return emulator;
}

interface Executed {
  operation: Operation;
  channel: string;
}

function recordingExecutor(executed: Executed[], answer: (operation: Operation) => unknown = (operation) => ({ echo: operation.payload })): ExecuteOperation {
  return async (operation, context) => {
    executed.push({ operation, channel: context.channel });
    return (await answer(operation)) as never;
  };
}

function listen(emulator: RelayEmulator, execute: ExecuteOperation, keyName = 'store-listen', extra: Partial<Parameters<typeof createRelayListener>[0]> = {}): RelayListener {
  const listener = createRelayListener({
    connectionString: emulator.connectionString(keyName),
    hybridConnection: HC,
    expose: ['clickAndCollect.order', 'stock.query'],
    execute,
    initialBackoffInMs: 20,
    maxBackoffInMs: 100,
    authRetryInMs: 60_000,
    ...extra,
  });
  closeables.push(() => listener.close());
  listener.start();
  return listener;
}

function reaches(listener: RelayListener, status: RelayListenerState['status']): Promise<RelayListenerState> {
  return firstValueFrom(listener.state$.pipe(filter((state) => state.status === status)));
}

function tracked(relaySender: RelaySender): RelaySender {
  closeables.push(() => relaySender.close());
  return relaySender;
}

function sender(emulator: RelayEmulator, keyName = 'cloud-send'): RelaySender {
  return tracked(createRelaySender({ connectionString: emulator.connectionString(keyName), hybridConnection: HC }));
}

/** Every TCP client socket this process creates from now on (hyco-https' control channels among them). */
function clientSockets(): Socket[] {
  const sockets: Socket[] = [];
  const onSocket = (message: unknown) => sockets.push((message as { socket: Socket }).socket);
  subscribe('net.client.socket', onSocket);
  closeables.push(() => void unsubscribe('net.client.socket', onSocket));
  return sockets;
}

/** The sockets undici connects to this port from now on, as undici announces them. */
function undiciSocketsTo(port: number): Socket[] {
  const sockets: Socket[] = [];
  const onConnected = (message: unknown) => {
    const { socket } = message as { socket: Socket };
    if (socket.remotePort === port) sockets.push(socket);
  };
  subscribe('undici:client:connected', onConnected);
  closeables.push(() => void unsubscribe('undici:client:connected', onConnected));
  return sockets;
}

function order(type = 'clickAndCollect.order', payload: Operation['payload'] = { orderId: 'A-1' }): Operation {
  return createOperation({ storeId: 'paris-1', type, payload, latency: 'realtime', timeToLiveInMs: 60_000 });
}


describe('relay channel: hyco-https listener and HTTPS sender through the relay emulator', () => {
  it('delivers a real-time operation and returns the store result', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    const listener = listen(emulator, recordingExecutor(executed));
    await reaches(listener, 'listening');
    const operation = order();
    const reply = await sender(emulator).send(operation, { timeoutInMs: 5_000 });
    expect(reply.result).toEqual({ echo: { orderId: 'A-1' } });
    expect(reply.latencyInMs).toBeGreaterThan(0);
    expect(executed).toEqual([{ operation, channel: 'relay' }]);
  });

  it('answers the health check through the relay without touching the executor', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed)), 'listening');
    await expect(sender(emulator).checkHealth({ timeoutInMs: 5_000 })).resolves.toBeUndefined();
    expect(executed).toEqual([]);
  });

  it('answers 404 for a type the store does not expose, without calling the executor', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed)), 'listening');
    const error = await failureOf(sender(emulator).send(order('price.update'), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('OPERATION_NOT_EXPOSED');
    expect(relayFailureReasonOf(error.code)).toBeUndefined();
    expect(executed).toEqual([]);
  });

  it.each([
    ['OPERATION_REJECTED', new StorelinkError('OPERATION_REJECTED', 'not enough stock')],
    ['OPERATION_EXPIRED', new StorelinkError('OPERATION_EXPIRED', 'too late')],
    ['HANDLER_FAILED', new Error('database locked')],
  ] as [StorelinkErrorCode, Error][])('passes the store answer %s back as the same code, not as a channel failure', async (code, thrown) => {
    const emulator = await startRelay();
    await reaches(
      listen(emulator, () => Promise.reject(thrown)),
      'listening',
    );
    const error = await failureOf(sender(emulator).send(order(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe(code);
    expect(relayFailureReasonOf(error.code)).toBeUndefined();
  });

  it.each([
    ['not JSON', 'this is not json', 'OPERATION_INVALID', 400, undefined],
    ['an invalid envelope', JSON.stringify({ id: 'nope' }), 'OPERATION_INVALID', 400, 'id'],
    ['a type that differs from the path', JSON.stringify(order('stock.query')), 'OPERATION_INVALID', 400, 'type'],
  ])('refuses %s with 400 and the failing field', async (_label, body, code, status, field) => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed)), 'listening');
    const token = createSasToken({ resource: `http://127.0.0.1:${emulator.port}/${HC}`, keyName: 'cloud-send', key: 'send-key' });
    const response = await fetch(`http://127.0.0.1:${emulator.port}/${HC}/operations/clickAndCollect.order`, {
      method: 'POST',
      headers: { ServiceBusAuthorization: token, 'content-type': 'application/json' },
      body,
    });
    expect(response.status).toBe(status);
    const answer = (await response.json()) as { error: { code: string; field?: string } };
    expect(answer.error.code).toBe(code);
    expect(answer.error.field).toBe(field);
    expect(executed).toEqual([]);
  });

  it('answers 404 for any other path or method', async () => {
    const emulator = await startRelay();
    await reaches(listen(emulator, recordingExecutor([])), 'listening');
    const token = createSasToken({ resource: `http://127.0.0.1:${emulator.port}/${HC}`, keyName: 'cloud-send', key: 'send-key' });
    for (const [method, path] of [['GET', 'operations/stock.query'], ['POST', 'admin'], ['DELETE', 'health'], ['GET', '']]) {
      const response = await fetch(`http://127.0.0.1:${emulator.port}/${HC}/${path}`, { method, headers: { ServiceBusAuthorization: token } });
      expect(response.status, `${method} /${path}`).toBe(404);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('ROUTE_NOT_FOUND');
    }
  });

  it('reports a sender whose key has only Listen as unauthorized (403), a channel failure', async () => {
    const emulator = await startRelay();
    await reaches(listen(emulator, recordingExecutor([])), 'listening');
    const error = await failureOf(sender(emulator, 'store-listen').send(order(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('RELAY_UNAUTHORIZED');
    expect(error.message).toContain('403');
    expect(relayFailureReasonOf(error.code)).toBe('unauthorized');
  });

  it('dates its SAS tokens by the clock it is given: a clock two hours behind mints tokens the relay finds expired', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed)), 'listening');
    const behind = tracked(createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: HC, now: () => Date.now() - 2 * 3_600_000 }));
    const error = await failureOf(behind.send(order(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('RELAY_UNAUTHORIZED');
    expect(executed).toEqual([]);
    const onTime = tracked(createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: HC, now: () => Date.now() }));
    await expect(onTime.send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
  });

  it('reports no listener as a channel failure', async () => {
    const emulator = await startRelay();
    const error = await failureOf(sender(emulator).send(order(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('RELAY_NO_LISTENER');
    expect(relayFailureReasonOf(error.code)).toBe('no-listener');
  });

  it('reports an unknown hybrid connection and an unreachable relay as channel failures', async () => {
    const emulator = await startRelay();
    const unknown = tracked(createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: 'store-nowhere' }));
    expect((await failureOf(unknown.send(order(), { timeoutInMs: 5_000 }))).code).toBe('RELAY_ENDPOINT_NOT_FOUND');

    const unused = createServer();
    unused.listen(0, '127.0.0.1');
    await once(unused, 'listening');
    const { port } = unused.address() as { port: number };
    unused.close();
    await once(unused, 'close');
    const nowhere = tracked(
      createRelaySender({
        connectionString: `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=cloud-send;SharedAccessKey=send-key;UseDevelopmentEmulator=true`,
        hybridConnection: HC,
      }),
    );
    const error = await failureOf(nowhere.send(order(), { timeoutInMs: 5_000 }));
    expect(error.code).toBe('RELAY_UNREACHABLE');
    expect(relayFailureReasonOf(error.code)).toBe('unreachable');
  });

  it('times out on the sender side, and maps the relay 504 to a timeout too', async () => {
    const emulator = await startRelay({ responseTimeoutInMs: 300 });
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    closeables.push(() => release());
    await reaches(listen(emulator, async () => held.then(() => 'late')), 'listening');
    const quick = await failureOf(sender(emulator).send(order(), { timeoutInMs: 100 }));
    expect(quick.code).toBe('RELAY_TIMEOUT');
    const relayTimeout = await failureOf(sender(emulator).send(order(), { timeoutInMs: 5_000 }));
    expect(relayTimeout.code).toBe('RELAY_TIMEOUT');
    expect(relayTimeout.message).toContain('504');
    expect(relayFailureReasonOf(relayTimeout.code)).toBe('timeout');
  });

  it('stops a call when the caller aborts it', async () => {
    const emulator = await startRelay();
    await reaches(listen(emulator, async () => new Promise(() => undefined)), 'listening');
    const controller = new AbortController();
    const call = sender(emulator).send(order(), { timeoutInMs: 5_000, abortSignal: controller.signal });
    controller.abort();
    expect((await failureOf(call)).code).toBe('ABORTED');
  });

  it('reuses keep-alive connections for sequential calls, shares them between the senders of one relay, and closes them with the last', async () => {
    const emulator = await startRelay();
    await reaches(listen(emulator, recordingExecutor([])), 'listening');
    const sockets = undiciSocketsTo(emulator.port);
    const first = sender(emulator);
    const second = sender(emulator);
    for (let n = 0; n < 5; n += 1) {
      await first.send(order(), { timeoutInMs: 5_000 });
      await second.checkHealth({ timeoutInMs: 5_000 });
    }
    // undici marks a connection free a tick after its response, so back-to-back calls may alternate between two.
    const opened = sockets.length;
    expect(opened).toBeGreaterThanOrEqual(1);
    expect(opened).toBeLessThanOrEqual(2);
    await first.close();
    await expect(second.send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
    expect(sockets).toHaveLength(opened);
    expect(sockets.filter((socket) => socket.destroyed)).toEqual([]);
    await second.close();
    expect(sockets.filter((socket) => !socket.destroyed)).toEqual([]);
    await expect(second.close()).resolves.toBeUndefined();
    const refused = await failureOf(first.send(order(), { timeoutInMs: 5_000 }));
    expect(refused).toMatchObject({ code: 'RELAY_UNREACHABLE', retryable: false });
    // The pool went with its last sender; a new sender of the same relay gets a fresh one.
    await expect(sender(emulator).checkHealth({ timeoutInMs: 5_000 })).resolves.toBeUndefined();
    expect(sockets).toHaveLength(opened + 1);
  });

  it('calls through the undici dispatcher it is given, and leaves it open on close()', async () => {
    const emulator = await startRelay();
    await reaches(listen(emulator, recordingExecutor([])), 'listening');
    const agent = new Agent();
    closeables.push(() => agent.close());
    const sockets = undiciSocketsTo(emulator.port);
    const relay = createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: HC, dispatcher: agent });
    await expect(relay.send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
    await relay.close();
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.destroyed).toBe(false);
    expect(agent.closed).toBe(false);
    await expect(relay.send(order(), { timeoutInMs: 5_000 })).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(() =>
      createRelaySender({ connectionString: emulator.connectionString('cloud-send'), hybridConnection: HC, dispatcher: agent, fetch: (input, init) => fetch(input, init) }),
    ).toThrow(TypeError);
  });

  it('parks a listener whose key lacks Listen in authFailed, and says why', async () => {
    const emulator = await startRelay();
    const listener = listen(emulator, recordingExecutor([]), 'cloud-send');
    const state = await reaches(listener, 'authFailed');
    expect(state.lastFailure).toMatchObject({ kind: 'unauthorized' });
    expect(state.lastFailure?.message).toContain('403');
    expect(emulator.listenerCount(HC)).toBe(0);
  });

  it('recovers by itself after its listeners are dropped', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    const listener = listen(emulator, recordingExecutor(executed));
    await reaches(listener, 'listening');
    const dropped = reaches(listener, 'reconnecting');
    expect(emulator.dropListeners(HC)).toBe(1);
    await dropped;
    await reaches(listener, 'listening');
    await expect(sender(emulator).send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
    expect(emulator.listenerCount(HC)).toBe(1);
  });

  it('backs off while the relay refuses it, then listens again', async () => {
    const emulator = await startRelay();
    const listener = listen(emulator, recordingExecutor([]));
    await reaches(listener, 'listening');
    emulator.refuseListeners(HC);
    const backingOff = reaches(listener, 'backingOff');
    emulator.dropListeners(HC);
    const state = await backingOff;
    expect(state.failures).toBeGreaterThanOrEqual(1);
    emulator.acceptListeners(HC);
    await reaches(listener, 'listening');
    expect(listener.state.failures).toBe(0);
    expect(emulator.listenerCount(HC)).toBe(1);
  });

  it('recovers after the emulator restarts on the same port', async () => {
    const first = await startRelayEmulator({ sharedAccessPolicies: POLICIES, hybridConnections: [{ name: HC }] });
    closeables.push(() => first.close());
    const listener = listen(first, recordingExecutor([]));
    await reaches(listener, 'listening');
    const lost = firstValueFrom(listener.state$.pipe(filter((state) => state.status !== 'listening')));
    await first.close();
    await lost;
    const second = await startRelay({ port: first.port });
    await reaches(listener, 'listening');
    await expect(sender(second).send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
  });

  it('answers 200 concurrent requests through one listener, each with its own result', async () => {
    const emulator = await startRelay();
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed, (operation) => ({ n: (operation.payload as { n: number }).n * 2 }))), 'listening');
    const relay = sender(emulator);
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, n) => relay.send(order('stock.query', { n }), { timeoutInMs: 15_000 })),
    );
    expect(replies.map((reply) => reply.result)).toEqual(Array.from({ length: 200 }, (_, n) => ({ n: n * 2 })));
    expect(executed).toHaveLength(200);
  });

  it('detects a half-open control channel by its unanswered pings, and reconnects', async () => {
    let oldChannelGone: () => void = () => undefined;
    const disconnected = new Promise<void>((resolve) => (oldChannelGone = resolve));
    const emulator = await startRelay({
      pingIntervalInMs: 100,
      logger: (entry) => {
        if (entry.event === 'listener.disconnected') oldChannelGone();
      },
    });
    const proxy = await startTcpProxy(emulator.port);
    closeables.push(() => proxy.close());
    const executed: Executed[] = [];
    const listener = createRelayListener({
      connectionString: emulator.connectionString('store-listen').replace(`:${emulator.port}`, `:${proxy.port}`),
      hybridConnection: HC,
      expose: ['clickAndCollect.order'],
      execute: recordingExecutor(executed),
      pingIntervalInMs: 50,
      pongTimeoutInMs: 100,
      initialBackoffInMs: 20,
    });
    closeables.push(() => listener.close());
    listener.start();
    await reaches(listener, 'listening');
    const lost = reaches(listener, 'reconnecting');
    proxy.freezeOpenConnections();
    await lost;
    await reaches(listener, 'listening');
    // The relay drops the frozen channel on its side too before the next request, or round robin could pick it.
    await disconnected;
    await expect(sender(emulator).send(order(), { timeoutInMs: 5_000 })).resolves.toMatchObject({ result: { echo: { orderId: 'A-1' } } });
    expect(executed).toHaveLength(1);
    expect(emulator.listenerCount(HC)).toBe(1);
  });

  it('closes for good: the listener leaves the relay and its state stream completes', async () => {
    const emulator = await startRelay();
    const listener = listen(emulator, recordingExecutor([]));
    await reaches(listener, 'listening');
    const statuses: string[] = [];
    const completed = new Promise<void>((resolve) => listener.state$.subscribe({ next: (state) => statuses.push(state.status), complete: resolve }));
    await listener.close();
    await completed;
    expect(statuses.at(-1)).toBe('stopped');
    expect(emulator.listenerCount(HC)).toBe(0);
    await expect(listener.close()).resolves.toBeUndefined();
    expect(() => listener.start()).toThrow(expect.objectContaining({ code: 'STORE_UNAVAILABLE' }));
  });

  it.each(['connecting', 'listening', 'reconnecting', 'backingOff'] as const)(
    'holds no socket to the relay once close() resolves, closed while %s',
    async (status) => {
      const relayEvents: string[] = [];
      let relayIdle: () => void = () => undefined;
      const idle = new Promise<void>((resolve) => (relayIdle = resolve));
      const balanced = () => emulator.counters().listenerConnections === emulator.counters().listenerDisconnections;
      // Only a disconnection, which comes after startRelay resolved, reads `emulator`.
      const emulator = await startRelay({
        logger: (entry) => {
          relayEvents.push(entry.event);
          if (entry.event === 'listener.disconnected' && balanced()) relayIdle();
        },
      });
      const sockets = clientSockets();
      const listener = listen(emulator, recordingExecutor([]));
      if (status !== 'connecting') await reaches(listener, 'listening');
      if (status === 'reconnecting') {
        const reconnecting = reaches(listener, 'reconnecting');
        emulator.dropListeners(HC);
        await reconnecting;
      }
      if (status === 'backingOff') {
        emulator.refuseListeners(HC);
        const backingOff = reaches(listener, 'backingOff');
        emulator.dropListeners(HC);
        await backingOff;
      }
      expect(listener.state.status).toBe(status);
      await listener.close();
      expect(sockets.filter((socket) => !socket.destroyed)).toEqual([]);
      // The relay's side of the last channel may close a moment after ours: wait for it to say so.
      if (!balanced()) await idle;
      expect(emulator.listenerCount(HC)).toBe(0);
      if (status !== 'connecting') expect(relayEvents).toContain('listener.connected');
    },
  );

  it('closes for good even while hyco-https is reconnecting after a drop', async () => {
    const emulator = await startRelay();
    const listener = listen(emulator, recordingExecutor([]));
    await reaches(listener, 'listening');
    const reconnecting = reaches(listener, 'reconnecting');
    emulator.dropListeners(HC);
    await reconnecting;
    await listener.close();
    expect(emulator.listenerCount(HC)).toBe(0);
    // A fresh listener proves the relay is idle for this hybrid connection, not still talking to a zombie.
    const executed: Executed[] = [];
    await reaches(listen(emulator, recordingExecutor(executed)), 'listening');
    await sender(emulator).send(order(), { timeoutInMs: 5_000 });
    expect(executed).toHaveLength(1);
    expect(emulator.listenerCount(HC)).toBe(1);
  });

  it('lets a request in flight finish on close, and refuses new ones with 503', async () => {
    const emulator = await startRelay();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (started = resolve));
    const listener = listen(emulator, async () => {
      started();
      await held;
      return 'done';
    });
    await reaches(listener, 'listening');
    const call = sender(emulator).send(order(), { timeoutInMs: 5_000 });
    await running;
    const closing = listener.close();
    const refused = await failureOf(sender(emulator).send(order(), { timeoutInMs: 5_000 }));
    expect(refused.code).toBe('STORE_UNAVAILABLE');
    expect(relayFailureReasonOf(refused.code)).toBe('no-listener');
    release();
    await expect(call).resolves.toMatchObject({ result: 'done' });
    await closing;
  });
});
