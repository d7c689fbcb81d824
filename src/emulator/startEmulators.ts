/**
 * Both local Azure stand-ins in one call: the Service Bus emulator and the Relay emulator, sharing one configuration
 * and one set of access policies, each on its plaintext port and, when asked, both on one TLS port (Azure's 443 in
 * miniature). This is what `storelink emulator`, the demo and the tests start.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startTlsPort, type TlsPort } from './tlsPort.js';
import { ensureDevelopmentCertificates, readCertificateFiles, type KeyAndCertificate } from './tls/index.js';
import { DEVELOPMENT_KEY, DEVELOPMENT_KEY_NAME, startRelayEmulator, type HybridConnectionDefinition, type RelayEmulator } from './relay/index.js';
import {
  startServiceBusEmulator,
  type NamespaceOptions,
  type ServiceBusEmulator,
  type SharedAccessPolicy,
} from './servicebus/index.js';

export interface EmulatorsOptions {
  /** Interface both emulators bind; default 127.0.0.1. */
  host?: string;
  /**
   * The Service Bus emulator's plaintext AMQP port. Default 0: an ephemeral port. `null`: none; with `tlsPort`, Service
   * Bus is then reached only over TLS (`serviceBusConnectionString()` throws; use `tls.serviceBusConnectionString()`).
   */
  serviceBusPort?: number | null;
  /** The relay emulator's plaintext HTTP/ws port. Default 0: an ephemeral port. `null`: none, as for serviceBusPort. */
  relayPort?: number | null;
  namespaces?: NamespaceOptions[];
  hybridConnections?: HybridConnectionDefinition[];
  /** Default: the development key `RootManageSharedAccessKey` / `SAS_KEY_VALUE` with Manage, for both. */
  sharedAccessPolicies?: SharedAccessPolicy[];
  /** Create unknown queues and hybrid connections on first use. */
  autoCreate?: boolean;
  /**
   * Where the Service Bus emulator keeps its messages (in memory without it), and where the development CA of the TLS
   * port lives (`<dataDir>/tls/`; a temporary directory removed on close without it).
   */
  dataDir?: string;
  /**
   * Also serve both emulators on this TLS port (0: an ephemeral one): AMQPS, AMQP over WebSockets at
   * `/$servicebus/websocket`, relay senders over https and listeners over wss. Without it, no TLS.
   */
  tlsPort?: number;
  /** The TLS port's certificate and key files (PEM); without them a development CA issues one. */
  tls?: { certFile: string; keyFile: string };
  /**
   * Called with the remote address and port of each TCP connection the TLS port accepts, before the handshake (tests
   * match them against a proxy's own connections; an operator can log who connects).
   */
  onTlsConnection?: (peer: { address: string; port: number }) => void;
  /** Where listeners reach the relay from outside (a TLS terminator, a port mapping); see RelayEmulatorOptions.publicUrl. */
  relayPublicUrl?: string;
  abortSignal?: AbortSignal;
  /** The clock, in ms since the epoch (tests inject one). Default `Date.now`. Both emulators read this one. */
  now?: () => number;
}

/** The TLS port, when `tlsPort` was given. Its connection strings are the production form (no UseDevelopmentEmulator). */
export interface EmulatorsTls {
  port: number;
  /** The development CA's certificate, for NODE_EXTRA_CA_CERTS; undefined when certificate files were given. */
  caFile: string | undefined;
  /** `Endpoint=sb://localhost:<port>/;SharedAccessKeyName=…;SharedAccessKey=…`: AMQPS, or wss with webSocketOptions. */
  serviceBusConnectionString(keyName?: string): string;
  /**
   * `https://localhost:<port>`: the SDK's `customEndpointAddress` when it is given a bare host name
   * (`new ServiceBusClient('localhost', credential, { customEndpointAddress })`); a connection string or a host with
   * the port needs none, the SDK takes the port from the endpoint for AMQPS and WebSockets alike.
   */
  serviceBusEndpointAddress: string;
  /** `Endpoint=sb://localhost:<port>/;…`: listeners on `wss://localhost:<port>/$hc/…`, senders on `https://localhost:<port>/…`. */
  relayConnectionString(keyName?: string): string;
}

export interface Emulators extends AsyncDisposable {
  readonly serviceBus: ServiceBusEmulator;
  readonly relay: RelayEmulator;
  readonly tls?: EmulatorsTls;
  /**
   * Development-form connection strings on the plaintext ports, for a key name (default: the first Manage policy,
   * else the first policy). They throw when that port was not opened (`serviceBusPort: null`, `relayPort: null`).
   */
  serviceBusConnectionString(keyName?: string): string;
  relayConnectionString(keyName?: string): string;
  /** Closes both; idempotent. */
  close(): Promise<void>;
}

export async function startEmulators(options: EmulatorsOptions = {}): Promise<Emulators> {
  const policies = options.sharedAccessPolicies;
  const host = options.host ?? '127.0.0.1';
  if (options.tlsPort === undefined && (options.serviceBusPort === null || options.relayPort === null)) {
    throw new TypeError('startEmulators: a null serviceBusPort or relayPort (no plaintext port) needs a tlsPort, or nothing could reach that emulator');
  }
  const serviceBus = await startServiceBusEmulator({
    host,
    port: options.serviceBusPort === undefined ? 0 : options.serviceBusPort,
    namespaces: options.namespaces ?? [],
    ...(policies === undefined ? {} : { sharedAccessPolicies: policies }),
    ...(options.autoCreate === undefined ? {} : { autoCreate: options.autoCreate }),
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  let relay: RelayEmulator;
  try {
    relay = await startRelayEmulator({
      host,
      port: options.relayPort === undefined ? 0 : options.relayPort,
      hybridConnections: options.hybridConnections ?? [],
      ...(policies === undefined ? {} : { sharedAccessPolicies: policies }),
      ...(options.autoCreate === undefined ? {} : { autoCreate: options.autoCreate }),
      ...(options.relayPublicUrl === undefined ? {} : { publicUrl: options.relayPublicUrl }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  } catch (error) {
    await serviceBus.close();
    throw error;
  }
  const defaultKeyName = policies?.find((policy) => policy.rights.includes('Manage'))?.keyName ?? policies?.[0]?.keyName;
  let tls: { port: TlsPort; caFile: string | undefined; temporaryDir: string | undefined } | undefined;
  if (options.tlsPort !== undefined) {
    try {
      tls = await startTls(options, host, serviceBus, relay);
    } catch (error) {
      await Promise.all([serviceBus.close(), relay.close()]);
      throw error;
    }
  }
  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    await tls?.port.close();
    await Promise.all([serviceBus.close(), relay.close()]);
    if (tls?.temporaryDir !== undefined) await rm(tls.temporaryDir, { recursive: true, force: true });
  };
  const emulators: Emulators = {
    serviceBus,
    relay,
    ...(tls === undefined ? {} : { tls: describeTls(tls.port.port, tls.caFile, policies, defaultKeyName) }),
    serviceBusConnectionString: (keyName = defaultKeyName) => serviceBus.connectionString(keyName),
    relayConnectionString: (keyName = defaultKeyName) => relay.connectionString(keyName),
    close: () => (closing ??= close()),
    [Symbol.asyncDispose]: () => emulators.close(),
  };
  if (options.abortSignal !== undefined) {
    if (options.abortSignal.aborted) await emulators.close();
    else options.abortSignal.addEventListener('abort', () => void emulators.close(), { once: true });
  }
  return emulators;
}

async function startTls(
  options: EmulatorsOptions,
  host: string,
  serviceBus: ServiceBusEmulator,
  relay: RelayEmulator,
): Promise<{ port: TlsPort; caFile: string | undefined; temporaryDir: string | undefined }> {
  const requested = options.tlsPort!;
  if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
    throw new RangeError(`tlsPort must be an integer from 0 to 65535, got ${requested}`);
  }
  let material: KeyAndCertificate;
  let caFile: string | undefined;
  let temporaryDir: string | undefined;
  if (options.tls !== undefined) {
    material = await readCertificateFiles(options.tls);
  } else {
    let dir: string;
    if (options.dataDir !== undefined) {
      dir = path.join(options.dataDir, 'tls');
    } else {
      temporaryDir = await mkdtemp(path.join(tmpdir(), 'storelink-emulator-tls-'));
      dir = temporaryDir;
    }
    try {
      const certificates = await ensureDevelopmentCertificates({ dir, names: [host] });
      material = certificates.server;
      caFile = certificates.caFile;
    } catch (error) {
      if (temporaryDir !== undefined) await rm(temporaryDir, { recursive: true, force: true });
      throw error;
    }
  }
  try {
    const port = await startTlsPort({
      host,
      port: requested,
      cert: material.cert,
      key: material.key,
      serviceBus,
      relay,
      ...(options.onTlsConnection === undefined ? {} : { onConnection: options.onTlsConnection }),
    });
    return { port, caFile, temporaryDir };
  } catch (error) {
    if (temporaryDir !== undefined) await rm(temporaryDir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The TLS port's connection strings name `localhost` (the name the certificate is sure to carry, and the one a
 * developer's CA is trusted for), in the production form: the SDKs then use TLS and take the port from the endpoint.
 * Both emulators share one list of namespace policies (the development key without one), so one lookup serves both,
 * and works when neither has a plaintext port.
 */
function describeTls(port: number, caFile: string | undefined, policies: readonly SharedAccessPolicy[] | undefined, defaultKeyName: string | undefined): EmulatorsTls {
  const known = policies ?? [{ keyName: DEVELOPMENT_KEY_NAME, primaryKey: DEVELOPMENT_KEY }];
  const production = (keyName = defaultKeyName ?? known[0]!.keyName): string => {
    const policy = known.find((candidate) => candidate.keyName === keyName);
    if (policy === undefined) throw new TypeError(`connectionString: no shared access policy named "${keyName}"`);
    return tlsConnectionString(port, policy);
  };
  return {
    port,
    caFile,
    serviceBusConnectionString: production,
    serviceBusEndpointAddress: `https://localhost:${port}`,
    relayConnectionString: production,
  };
}

/** The production form of a connection string for a TLS port on this machine (both emulators read the same form). */
export function tlsConnectionString(port: number, policy: { keyName: string; primaryKey: string } = { keyName: DEVELOPMENT_KEY_NAME, primaryKey: DEVELOPMENT_KEY }): string {
  return `Endpoint=sb://localhost:${port}/;SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.primaryKey}`;
}
