/** The emulator's one public entry point. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AmqpServer } from './amqpServer.js';
import { createAtomManagementHandler } from './atomManagement.js';
import { checkAccessPolicies } from './authorization.js';
import { Broker } from './broker.js';
import { openFileJournal, type FileJournal } from './fileJournal.js';
import { DEFAULT_KEY, DEFAULT_KEY_NAME, resolveConnectionLimits, type ServiceBusEmulatorOptions } from './options.js';

export interface ServiceBusEmulator extends AsyncDisposable {
  readonly host: string;
  /** The plaintext AMQP port; 0 when the emulator was started without one (`port: null`). */
  readonly port: number;
  /**
   * `Endpoint=sb://HOST:PORT;SharedAccessKeyName=…;SharedAccessKey=…;UseDevelopmentEmulator=true`, on the plaintext
   * port, for a namespace policy, or with `entity` for one of that queue's or topic's authorization rules (its key is
   * valid there only); throws without a plaintext port (`port: null`).
   */
  connectionString(keyName?: string, options?: { entity?: string }): string;
  /** Messages held per entity path (`q1`, `q1/$DeadLetterQueue`, `t1/Subscriptions/s1`), in every state. */
  messageCounts(): Record<string, number>;
  /** Open AMQP connections. */
  readonly activeConnections: number;
  /**
   * Serves AMQP on a stream connected elsewhere (the TLS port of `startEmulators`, once its first bytes said `AMQP`).
   * The stream is read from its start, through the same frame guard as the emulator's own port.
   */
  acceptConnection(socket: Duplex): void;
  /** Takes an HTTP upgrade to AMQP over WebSockets (`/$servicebus/websocket`, subprotocol `AMQPWSB10`). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * Serves one HTTP request of the management API (`ServiceBusAdministrationClient`: ATOM XML, a SAS token with
   * Manage); the TLS port of `startEmulators` hands over the requests whose query names an `api-version`.
   */
  handleManagementRequest(req: IncomingMessage, res: ServerResponse): void;
  /** Closes client connections with `amqp:connection:forced`, the listener and the journal. Idempotent. */
  close(): Promise<void>;
}

export async function startServiceBusEmulator(options: ServiceBusEmulatorOptions = {}): Promise<ServiceBusEmulator> {
  const host = options.host ?? '127.0.0.1';
  const requestedPort = options.port === null ? null : (options.port ?? 0);
  if (requestedPort !== null && (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535)) {
    throw new RangeError(`port must be an integer from 0 to 65535, got ${requestedPort}`);
  }
  const policies = options.sharedAccessPolicies ?? [{ keyName: DEFAULT_KEY_NAME, primaryKey: DEFAULT_KEY, rights: ['Manage', 'Listen', 'Send'] }];
  checkAccessPolicies('sharedAccessPolicies', policies, { allowEmpty: false });
  const limits = resolveConnectionLimits(options);
  options.abortSignal?.throwIfAborted();

  const broker = Broker.fromOptions(options);
  let journal: FileJournal | undefined;
  if (options.dataDir !== undefined) {
    const compactAfterBytes = options.compactJournalAfterBytes;
    if (compactAfterBytes !== undefined && (!Number.isInteger(compactAfterBytes) || compactAfterBytes <= 0)) {
      throw new RangeError(`compactJournalAfterBytes must be a positive integer, got ${compactAfterBytes}`);
    }
    journal = await openFileJournal(options.dataDir, broker, {
      syncWrites: options.syncWrites ?? false,
      ...(compactAfterBytes === undefined ? {} : { compactAfterBytes }),
    });
  }
  const server = new AmqpServer(broker, { host, port: requestedPort ?? 0, policies, limits, now: broker.now });
  let port = 0;
  try {
    if (requestedPort !== null) port = await server.listen();
  } catch (error) {
    broker.dispose();
    await journal?.close();
    throw error;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      options.abortSignal?.removeEventListener('abort', onAbort);
      await server.close();
      broker.dispose();
      await journal?.close();
    })();
    return closing;
  };
  const onAbort = (): void => {
    void close();
  };
  options.abortSignal?.addEventListener('abort', onAbort, { once: true });

  const endpointHost = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port,
    connectionString(keyName = policies[0]!.keyName, connectionOptions = {}) {
      const entityName = connectionOptions.entity;
      const entity = entityName === undefined ? undefined : broker.entity(entityName);
      if (entityName !== undefined && entity === undefined) throw new TypeError(`connectionString: no queue or topic named "${entityName}"`);
      const policy = (entity?.authorizationRules ?? policies).find((p) => p.keyName === keyName);
      if (policy === undefined) {
        throw new TypeError(`connectionString: no ${entity === undefined ? 'shared access policy' : `authorization rule of "${entityName}"`} named "${keyName}"`);
      }
      if (requestedPort === null) {
        throw new TypeError("connectionString: the Service Bus emulator has no plaintext port (started with port: null); use the TLS port's connection strings");
      }
      return `Endpoint=sb://${endpointHost}:${port};SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.primaryKey};UseDevelopmentEmulator=true`;
    },
    messageCounts: () => broker.counts(),
    get activeConnections() {
      return server.connectionCount;
    },
    acceptConnection: (socket) => server.accept(socket),
    handleUpgrade: (req, socket, head) => server.acceptWebSocket(req, socket, head),
    handleManagementRequest: createAtomManagementHandler({ broker, policies, now: broker.now }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
