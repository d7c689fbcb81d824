/**
 * What the whole-path benchmark's processes tell each other over their IPC channels, and what every side shares:
 * the entity names, the operation the handlers answer, and the way each process starts (Node with the tsx loader).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** `tls-websockets`: the demo's way (one TLS port, Service Bus over WebSockets, the relay over https/wss). `amqp`: plaintext AMQP and relay ports. */
export type Transport = 'tls-websockets' | 'amqp';

export interface Endpoints {
  transport: Transport;
  /** The namespace's Manage connection string for Service Bus, and for the relay, in the transport's form. */
  serviceBus: string;
  relay: string;
  /** The development CA for the TLS port; undefined for `amqp`. */
  caFile: string | undefined;
  /** Relay host and port as a hand-written client addresses them. */
  relayOrigin: string;
  relayListenBase: string;
}

export interface KeyPem {
  keyId: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

export interface StoreSetup {
  storeIds: string[];
  endpoints: Endpoints;
  cloudKey: KeyPem;
  storeKeys: Record<string, KeyPem>;
  dataDir: string;
  /** false: the store agents only, without the raw parts beside them (bench/instances.bench.ts). */
  raw?: boolean;
}

export interface CloudSetup {
  storeIds: string[];
  endpoints: Endpoints;
  cloudKey: KeyPem;
  storeKeys: Record<string, KeyPem>;
  dataDir: string;
}

/**
 * One measurement the cloud process makes: a path, storelink's or the raw parts', sequential or with N in flight.
 * `signed` is the raw parts plus the signatures the design puts on that path, and nothing else: the cloud signs each
 * operation, the store verifies it and signs its answer, the cloud verifies that; on the queue the answer is also sent
 * back for one-way operations (every outcome is known at the cloud). It is the floor any implementation of the design
 * pays, so storelink / signed is what storelink itself adds.
 */
export interface MeasureRequest {
  path: 'realtime' | 'oneway' | 'requestreply';
  side: 'storelink' | 'raw' | 'signed';
  /** 1: sequential (p50/p99 reported); more: throughput with that many in flight. */
  inFlight: number;
  count: number;
  warmUp: number;
  /** The first this many stores take the calls, in turn. */
  storeCount: number;
}

export interface Measurement {
  p50Ms: number;
  p99Ms: number;
  perSecond: number;
  /** Calls that succeeded (and were timed). */
  count: number;
  /** Calls that failed (a real-time call that fell back, a reply that never came): not timed, reported. */
  failures: number;
  lastFailure?: string;
}

export type ParentToChild =
  | { type: 'setup-stores'; setup: StoreSetup }
  | { type: 'setup-cloud'; setup: CloudSetup }
  | { type: 'measure'; id: number; request: MeasureRequest }
  | { type: 'executed'; operationId: string; atMs: number }
  | { type: 'profile-stop' }
  | { type: 'stop' };

export type ChildToParent =
  | { type: 'endpoints'; endpoints: Endpoints; queueCount: number }
  | { type: 'ready' }
  | { type: 'executed'; operationId: string; atMs: number }
  | { type: 'measured'; id: number; measurement: Measurement }
  | { type: 'failed'; message: string };

/** The operation type every store answers on both channels, and the one-way type whose handler stamps its run. */
export const ECHO_TYPE = 'bench.echo';
export const ONE_WAY_TYPE = 'bench.oneway';
export const RAW_INBOX = 'raw-inbox';
export const storeQueue = (storeId: string): string => `store-${storeId}`;
export const rawEntity = (storeId: string): string => `raw-${storeId}`;
/** The header (relay) or application property (queue) asking the raw store to verify the operation and sign its answer (the `signed` side). */
export const SIGNED_HEADER = 'bench-signed';

/** A small order-like payload, the same for storelink and the raw parts. */
export const benchPayload = (n: number): { n: number; skus: string[]; note: string } => ({ n, skus: ['SKU-COFFEE-1KG', 'SKU-TEA-GREEN', 'SKU-MUG-BLUE'], note: 'whole-path bench' });

/** What both stores answer: the same small result whatever the path. */
export const echoResult = (payload: { n: number; skus: string[] }): { ok: true; n: number; lines: number } => ({ ok: true, n: payload.n, lines: payload.skus.length });

/** The wall-clock instant both sides stamp with: the same machine's clock in every process. */
export const wallClockMs = (): number => performance.timeOrigin + performance.now();

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

/** Forks one of this folder's processes with the tsx loader and an IPC channel; extra Node flags for a CPU profile. */
export function forkChild(file: string, options: { env?: NodeJS.ProcessEnv; execArgv?: string[] } = {}): ChildProcess {
  return fork(here(file), [], {
    execArgv: ['--import', 'tsx', ...(options.execArgv ?? [])],
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next message of a kind from a child, or its exit as an error. */
export async function nextMessage<T extends ChildToParent['type']>(child: ChildProcess, type: T): Promise<Extract<ChildToParent, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildToParent) => {
      if (message.type === 'failed') {
        cleanup();
        reject(new Error(message.message));
      } else if (message.type === type) {
        cleanup();
        resolve(message as Extract<ChildToParent, { type: T }>);
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`a benchmark process exited (${code ?? signal}) while waiting for ${type}`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.send({ type: 'stop' } satisfies ParentToChild);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** In a child: sends to the parent. */
export function tell(message: ChildToParent): void {
  process.send?.(message);
}

/** In a child: runs `main` on the setup message, reports failures to the parent. */
export function failOnError(error: unknown): void {
  tell({ type: 'failed', message: error instanceof Error ? `${error.message}\n${error.stack ?? ''}` : String(error) });
}
