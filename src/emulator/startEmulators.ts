/**
 * Both local Azure stand-ins in one call: the Service Bus emulator and the Relay emulator, sharing one configuration
 * and one set of access policies. This is what `storelink emulator`, the demo and the tests start.
 */
import { startRelayEmulator, type HybridConnectionDefinition, type RelayEmulator } from './relay/index.js';
import {
  startServiceBusEmulator,
  type NamespaceOptions,
  type ServiceBusEmulator,
  type SharedAccessPolicy,
} from './servicebus/index.js';

export interface EmulatorsOptions {
  /** Interface both emulators bind; default 127.0.0.1. */
  host?: string;
  /** Default 0: an ephemeral port. */
  serviceBusPort?: number;
  /** Default 0: an ephemeral port. */
  relayPort?: number;
  namespaces?: NamespaceOptions[];
  hybridConnections?: HybridConnectionDefinition[];
  /** Default: the development key `RootManageSharedAccessKey` / `SAS_KEY_VALUE` with Manage, for both. */
  sharedAccessPolicies?: SharedAccessPolicy[];
  /** Create unknown queues and hybrid connections on first use. */
  autoCreate?: boolean;
  /** Where the Service Bus emulator keeps its messages; in memory without it. */
  dataDir?: string;
  abortSignal?: AbortSignal;
  /** The clock, in ms since the epoch (tests inject one). Default `Date.now`. Both emulators read this one. */
  now?: () => number;
}

export interface Emulators extends AsyncDisposable {
  readonly serviceBus: ServiceBusEmulator;
  readonly relay: RelayEmulator;
  /** Connection strings for a key name (default: the first Manage policy, else the first policy). */
  serviceBusConnectionString(keyName?: string): string;
  relayConnectionString(keyName?: string): string;
  /** Closes both; idempotent. */
  close(): Promise<void>;
}

export async function startEmulators(options: EmulatorsOptions = {}): Promise<Emulators> {
  const policies = options.sharedAccessPolicies;
  const host = options.host ?? '127.0.0.1';
  const serviceBus = await startServiceBusEmulator({
    host,
    port: options.serviceBusPort ?? 0,
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
      port: options.relayPort ?? 0,
      hybridConnections: options.hybridConnections ?? [],
      ...(policies === undefined ? {} : { sharedAccessPolicies: policies }),
      ...(options.autoCreate === undefined ? {} : { autoCreate: options.autoCreate }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  } catch (error) {
    await serviceBus.close();
    throw error;
  }
  const defaultKeyName = policies?.find((policy) => policy.rights.includes('Manage'))?.keyName ?? policies?.[0]?.keyName;
  let closing: Promise<void> | undefined;
  const emulators: Emulators = {
    serviceBus,
    relay,
    serviceBusConnectionString: (keyName = defaultKeyName) => serviceBus.connectionString(keyName),
    relayConnectionString: (keyName = defaultKeyName) => relay.connectionString(keyName),
    close: () => (closing ??= Promise.all([serviceBus.close(), relay.close()]).then(() => undefined)),
    [Symbol.asyncDispose]: () => emulators.close(),
  };
  if (options.abortSignal !== undefined) {
    if (options.abortSignal.aborted) await emulators.close();
    else options.abortSignal.addEventListener('abort', () => void emulators.close(), { once: true });
  }
  return emulators;
}
