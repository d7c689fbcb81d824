/**
 * `storelink doctor`: why a store (or the cloud) does not connect, found out from the store's side the way its
 * channels would connect, one row per check. Rights are found by trying them through the channels (Service Bus
 * through src/channels/servicebus/diagnostics.ts, the relay through the store's own listener and the cloud's own
 * sender), and changing nothing: a peek, an empty batch, a listener that serves only its health check.
 */
import { firstValueFrom, filter } from 'rxjs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { proxySettingsFrom, type ProxyOptions } from '../channels/network/proxy.js';
import { trustedCertificates, type TlsTrustOptions } from '../channels/network/tlsTrust.js';
import { createRelayListener, type RelayListener } from '../channels/relay/relayListener.js';
import { createRelaySender } from '../channels/relay/relaySender.js';
import { createServiceBusAccessProbe, type AccessProbeResult, type ServiceBusAccessProbe } from '../channels/servicebus/diagnostics.js';
import { defaultStoreTransport, type ServiceBusTransport } from '../channels/servicebus/serviceBusConnection.js';
import { parseConnectionString } from '../core/connectionString.js';
import { isStorelinkError, StorelinkError } from '../core/errors.js';
import { DEFAULT_CLOUD_INBOX, defaultStoreEntityName } from '../core/names.js';
import { Checkup, fail, pass, type DoctorReport, type Verdict } from './checkup.js';
import { clockCheck, endpointChecks, relayEndpoint, serviceBusEndpoint, type NetworkContext } from './endpointChecks.js';
import { portFree, type Endpoint } from './network.js';

export const DEFAULT_CHECK_TIMEOUT_IN_MS = 5_000;
/** Store queues (and hybrid connections) the cloud's doctor tries, when it has more. */
export const DEFAULT_SAMPLE_SIZE = 3;

/** The published development key of the emulators (and the name Azure gives a namespace's root key). */
const ROOT_MANAGE_KEY_NAME = 'RootManageSharedAccessKey';

/** The `proxy` and `tls` settings of a store or cloud configuration, handed to the channels as they are. */
export interface ConnectivitySettings {
  proxy?: ProxyOptions;
  tls?: TlsTrustOptions;
}

interface CommonOptions {
  /** proxy and tls.caFile, as in the store's and the cloud's configuration. */
  connectivity?: ConnectivitySettings;
  /** Per check; default 5 s. */
  timeoutInMs?: number;
  /** The local clock compared with the service's; default Date.now (tests inject a skewed one). */
  now?: () => number;
  env?: NodeJS.ProcessEnv;
}

interface ServiceBusSettings {
  connectionString: string;
  transport?: ServiceBusTransport;
  endpointAddress?: string;
}

export interface StoreDoctorOptions extends CommonOptions {
  storeId: string;
  /** `cloudInboxConnectionString`: the store's own credential for Send on the inbox; default `connectionString`. */
  serviceBus: ServiceBusSettings & { queue?: string; cloudInbox?: string; cloudInboxConnectionString?: string };
  relay?: { connectionString: string; hybridConnection?: string };
}

export interface CloudDoctorOptions extends CommonOptions {
  serviceBus: ServiceBusSettings & { cloudInbox?: string };
  relay?: { connectionString: string };
  stores: readonly { storeId: string; bidirectional: boolean; queue?: string; hybridConnection?: string }[];
  http?: { host: string; port: number; tls?: { certFile: string; keyFile: string } };
  /** How many store queues and hybrid connections to try at most; default 3. */
  sampleSize?: number;
}

/**
 * How this side's channels connect: the configuration's proxy and CA options, which every probe hands to the channel
 * it builds (each resolves them as in production), and the environment the proxy defaults are read from.
 */
interface Routing {
  proxy?: ProxyOptions;
  tls?: TlsTrustOptions;
  env: NodeJS.ProcessEnv;
}

function routingOf(options: CommonOptions): Routing {
  const { proxy, tls } = options.connectivity ?? {};
  return { ...(proxy === undefined ? {} : { proxy }), ...(tls === undefined ? {} : { tls }), env: options.env ?? process.env };
}

/**
 * The doctor's own connections (TCP, the certificate, the clock) decide as the channels do, with the channels' code:
 * the proxy rules of src/channels/network (HTTPS_PROXY/NO_PROXY or the option), the CA list of trustedCertificates.
 */
function networkContext(routing: Routing, options: CommonOptions): { context: NetworkContext; proxies: ReturnType<typeof proxySettingsFrom> } {
  const ca = trustedCertificates(routing.tls, routing.env);
  return { context: { ca, now: options.now ?? Date.now }, proxies: proxySettingsFrom(routing.proxy, routing.env) };
}

/** The endpoint the clock is read from: the relay's, else Service Bus over WebSockets (both answer HTTP). */
function clockEndpoint(serviceBus: Endpoint, relay: Endpoint | undefined, transport: ServiceBusTransport): Endpoint | undefined {
  if (relay !== undefined) return relay;
  return serviceBus.tls && transport === 'websockets' ? serviceBus : undefined;
}

function keyNameOf(connectionString: string): string {
  return parseConnectionString(connectionString).keyName;
}

/** A needed right, tried: ✔ allowed, ✗ otherwise with what to change. */
function neededRight(result: AccessProbeResult, right: 'Listen' | 'Send', entity: string, keyName: string): Verdict {
  if (result.outcome === 'allowed') return pass(`key "${keyName}" has ${right} on ${entity}: ${result.detail}`);
  if (result.outcome === 'denied') {
    return fail(
      `key "${keyName}" was refused ${right} on ${entity}: ${result.detail}`,
      `a wrong key, or a policy without ${right}: use a key whose policy grants ${right} on ${entity} (check SharedAccessKeyName and SharedAccessKey)`,
    );
  }
  if (result.outcome === 'not-found') return fail(`${entity} does not exist: ${result.detail}`, `create ${entity} in the namespace, or name the right entity in the configuration`);
  return fail(`${right} on ${entity} could not be tried: ${result.detail}`, 'see the network checks above; raise --timeout-in-ms if the line is only slow');
}

function manageAdvice(keyName: string): string {
  return keyName === ROOT_MANAGE_KEY_NAME
    ? `"${ROOT_MANAGE_KEY_NAME}" is the namespace's root key (the emulators' published development key): it can create and delete every entity. Give this side a policy of its own without Manage (Config.json SharedAccessPolicies locally)`
    : `the policy "${keyName}" grants Manage (create and delete entities): give this side a policy without Manage`;
}

function describeExtras(extras: readonly string[]): string {
  return extras.length === 0 ? 'it can do nothing else that was tried' : `it can also ${extras.join(' and ')}`;
}

async function withProbe<T>(
  serviceBus: ServiceBusSettings & { transport: ServiceBusTransport },
  routing: Routing,
  timeoutInMs: number,
  use: (probe: ServiceBusAccessProbe) => Promise<T>,
): Promise<T> {
  const probe = createServiceBusAccessProbe({
    connectionString: serviceBus.connectionString,
    timeoutInMs,
    transport: serviceBus.transport,
    ...(serviceBus.endpointAddress === undefined ? {} : { endpointAddress: serviceBus.endpointAddress }),
    ...routing,
  });
  try {
    return await use(probe);
  } finally {
    await probe.close();
  }
}

async function openListener(relay: { connectionString: string; hybridConnection: string }, routing: Routing, signal: AbortSignal): Promise<{ listener: RelayListener; verdict: Verdict }> {
  const keyName = keyNameOf(relay.connectionString);
  const listener = createRelayListener({
    ...routing,
    connectionString: relay.connectionString,
    hybridConnection: relay.hybridConnection,
    expose: [],
    execute: () => Promise.reject(new StorelinkError('OPERATION_NOT_EXPOSED', 'the doctor serves only its health check')),
    // One attempt: the doctor reports the first answer instead of backing off.
    initialBackoffInMs: 60_000,
    maxBackoffInMs: 60_000,
    authRetryInMs: 60_000,
  });
  const settled = firstValueFrom(listener.state$.pipe(filter((state) => ['listening', 'backingOff', 'authFailed'].includes(state.status))));
  listener.start();
  const aborted = new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
  const state = await Promise.race([settled, aborted]).catch(async (error: unknown) => {
    await listener.close();
    throw error;
  });
  if (state.status === 'listening') {
    return { listener, verdict: pass(`key "${keyName}" registered a listener on ${relay.hybridConnection}`) };
  }
  const failure = state.lastFailure;
  const detail = `the relay refused the listener: ${failure?.message ?? state.status}`;
  if (failure?.kind === 'unauthorized') {
    return { listener, verdict: fail(detail, `a wrong key, or a policy without Listen: use a key whose policy grants Listen on the hybrid connection ${relay.hybridConnection}`) };
  }
  if (failure?.kind === 'not-found') {
    return { listener, verdict: fail(detail, `the relay has no hybrid connection ${relay.hybridConnection}: create it, or set relay.hybridConnection`) };
  }
  return { listener, verdict: fail(detail, 'see the relay network checks above') };
}

/** What the relay answers a health call of this store made with the store's own key. */
async function selfCall(relay: { connectionString: string; hybridConnection: string }, routing: Routing, timeoutInMs: number, signal: AbortSignal): Promise<Verdict> {
  const keyName = keyNameOf(relay.connectionString);
  const sender = createRelaySender({ ...routing, connectionString: relay.connectionString, hybridConnection: relay.hybridConnection });
  try {
    await sender.checkHealth({ timeoutInMs, abortSignal: signal });
    return fail(
      `the store's key "${keyName}" called its own listener through the relay (a round trip), so it holds Send on ${relay.hybridConnection}: whoever has the store's key can call the store`,
      keyName === ROOT_MANAGE_KEY_NAME
        ? `"${ROOT_MANAGE_KEY_NAME}" is the namespace's root (Manage) key, the emulators' published development key: give the store a policy with Listen only on its hybrid connection`
        : `give the store a policy with Listen only on ${relay.hybridConnection}; Send belongs to the cloud`,
    );
  } catch (error) {
    if (!isStorelinkError(error)) throw error;
    // Azure and the emulator say which claim was missing; a genuine key without Send gets exactly that answer.
    const refusedSend = /'?Send'? claim/i.test(error.message);
    if (error.code === 'RELAY_UNAUTHORIZED' && refusedSend) {
      return pass(
        `the relay refused the store's key as a sender (${/\((\d{3})\)/.exec(error.message)?.[1] ?? '401/403'}, no Send claim), as it should: the relay's HTTPS side is reachable and knows the key; a call through to the listener needs a Send key, which \`storelink doctor --cloud\` makes`,
      );
    }
    if (error.code === 'RELAY_UNAUTHORIZED') return fail(`the relay refused the store's key as a sender: ${error.message}`, 'the key is not valid for this hybrid connection: check SharedAccessKeyName and SharedAccessKey');
    if (error.code === 'RELAY_NO_LISTENER') return fail(`the relay does not see the listener just registered: ${error.message}`, 'another relay front end may hold it; run the doctor again, and report it if it persists');
    return fail(`calling through the relay failed: ${error.message}`, 'see the relay network checks above');
  } finally {
    await sender.close();
  }
}

/** The store's checks: its endpoints, the clock, and the rights of its keys, each tried. */
export async function runStoreDoctor(options: StoreDoctorOptions): Promise<DoctorReport> {
  const timeoutInMs = options.timeoutInMs ?? DEFAULT_CHECK_TIMEOUT_IN_MS;
  const routing = routingOf(options);
  const { context, proxies } = networkContext(routing, options);
  const checkup = new Checkup(timeoutInMs);
  // The store agent's own default: WebSockets, except for a development emulator's plaintext AMQP port.
  const transport = options.serviceBus.transport ?? defaultStoreTransport(options.serviceBus.connectionString);
  const sbConnection = parseConnectionString(options.serviceBus.connectionString);
  const sbEndpoint = serviceBusEndpoint(sbConnection, transport, options.serviceBus.endpointAddress, proxies);
  const relay = options.relay === undefined ? undefined : { connectionString: options.relay.connectionString, hybridConnection: options.relay.hybridConnection ?? defaultStoreEntityName(options.storeId) };
  const rlEndpoint = relay === undefined ? undefined : relayEndpoint(relay.connectionString, proxies);
  const queue = options.serviceBus.queue ?? defaultStoreEntityName(options.storeId);
  const inbox = options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX;
  const sbKey = sbConnection.keyName;

  for (const spec of endpointChecks(sbEndpoint, context)) await checkup.check(spec);
  // Both may share one host and port (Azure's 443, the emulators' TLS port): each channel's rows still run, as each channel connects.
  if (rlEndpoint !== undefined) for (const spec of endpointChecks(rlEndpoint, context)) await checkup.check(spec);
  await checkup.check(clockCheck(clockEndpoint(sbEndpoint, rlEndpoint, transport), context));

  const inboxCredential = options.serviceBus.cloudInboxConnectionString;
  const separateInbox = inboxCredential !== undefined && inboxCredential !== options.serviceBus.connectionString;
  await withProbe({ ...options.serviceBus, transport }, routing, timeoutInMs, async (probe) => {
    await checkup.check({
      id: 'servicebus.listen',
      title: `Service Bus: Listen on ${queue}`,
      needs: ['servicebus.tcp'],
      run: async (signal) => neededRight(await probe.probe('Listen', queue, signal), 'Listen', queue, sbKey),
    });
    const inboxProbe = (use: (inbox: ServiceBusAccessProbe, key: string) => Promise<void>): Promise<void> =>
      separateInbox
        ? withProbe({ ...options.serviceBus, connectionString: inboxCredential, transport }, routing, timeoutInMs, (inbox) => use(inbox, keyNameOf(inboxCredential)))
        : use(probe, sbKey);
    await inboxProbe(async (inboxAccess, inboxKey) => {
      await checkup.check({
        id: 'servicebus.send',
        title: `Service Bus: Send on ${inbox}${separateInbox ? ' (serviceBus.cloudInboxConnectionString)' : ''}`,
        needs: ['servicebus.tcp'],
        run: async (signal) => neededRight(await inboxAccess.probe('Send', inbox, signal), 'Send', inbox, inboxKey),
      });
      await checkup.check({
        id: 'servicebus.rights',
        title: 'Service Bus: no more rights than needed',
        needs: ['servicebus.listen', 'servicebus.send'],
        run: async (signal) => {
          const manage = await probe.probe('Manage', queue, signal);
          const sendOwn = await probe.probe('Send', queue, signal);
          const listenInbox = await probe.probe('Listen', inbox, signal);
          const extras = [
            ...(sendOwn.outcome === 'allowed' ? [`send to its own queue ${queue}`] : []),
            ...(listenInbox.outcome === 'allowed' ? [`read ${inbox}`] : []),
          ];
          if (manage.outcome === 'allowed') return fail(`key "${sbKey}" holds Manage; ${describeExtras(extras)}`, manageAdvice(sbKey));
          if (manage.outcome === 'failed') return fail(`Manage could not be tried: ${manage.detail}`, 'see the network checks above');
          if (!separateInbox) {
            // One connection string serves both the queue (Listen) and the inbox (Send), so the narrowest key it can
            // hold is Listen + Send; what else it can do is reported, not failed (README "storelink doctor").
            return pass(
              `key "${sbKey}" has no Manage; ${describeExtras(extras)}${extras.length === 0 ? '' : ' (one Listen + Send key for queue and inbox cannot be narrower: give the inbox its own serviceBus.cloudInboxConnectionString)'}`,
            );
          }
          // Two credentials: each can hold exactly its one right, so anything more is a finding.
          const inboxManage = await inboxAccess.probe('Manage', inbox, signal);
          const inboxListen = await inboxAccess.probe('Listen', inbox, signal);
          const inboxToQueue = await inboxAccess.probe('Send', queue, signal);
          const inboxExtras = [
            ...(inboxManage.outcome === 'allowed' ? ['manage it'] : []),
            ...(inboxListen.outcome === 'allowed' ? [`read ${inbox}`] : []),
            ...(inboxToQueue.outcome === 'allowed' ? [`send to the store's queue ${queue}`] : []),
          ];
          if (extras.length === 0 && inboxExtras.length === 0) {
            return pass(`key "${sbKey}" has Listen on ${queue} and no more; the inbox credential "${inboxKey}" has Send on ${inbox} and no more`);
          }
          const found = [
            ...(extras.length === 0 ? [] : [`key "${sbKey}" can also ${extras.join(' and ')}`]),
            ...(inboxExtras.length === 0 ? [] : [`the inbox credential "${inboxKey}" can also ${inboxExtras.join(' and ')}`]),
          ];
          return fail(
            found.join('; '),
            `give the queue credential a rule with Listen only on ${queue}, and the inbox credential a token (or rule) with Send only on ${inbox}`,
          );
        },
      });
    });
  });

  if (relay !== undefined) {
    let listener: RelayListener | undefined;
    try {
      await checkup.check({
        id: 'relay.listen',
        title: `Relay: Listen on ${relay.hybridConnection}`,
        needs: ['relay.tcp'],
        run: async (signal) => {
          const opened = await openListener(relay, routing, signal);
          listener = opened.listener;
          return opened.verdict;
        },
      });
      await checkup.check({
        id: 'relay.self-call',
        title: 'Relay: the store calls itself',
        needs: ['relay.listen'],
        run: (signal) => selfCall(relay, routing, timeoutInMs, signal),
      });
    } finally {
      await (listener)?.close();
    }
  }
  return checkup.report('store');
}

function sample<T>(items: readonly T[], size: number): T[] {
  return items.slice(0, Math.max(1, size));
}

function sampledNote(taken: number, total: number, what: string): string {
  return taken < total ? ` (${taken} of ${total} ${what} tried: the first ${taken} of the configuration)` : '';
}

/** The cloud's checks: its endpoints, the clock, Listen on the inbox, Send on store queues and hybrid connections, its HTTP API. */
export async function runCloudDoctor(options: CloudDoctorOptions): Promise<DoctorReport> {
  const timeoutInMs = options.timeoutInMs ?? DEFAULT_CHECK_TIMEOUT_IN_MS;
  const sampleSize = options.sampleSize ?? DEFAULT_SAMPLE_SIZE;
  const routing = routingOf(options);
  const { context, proxies } = networkContext(routing, options);
  const checkup = new Checkup(timeoutInMs);
  // The dispatcher's own default.
  const transport = options.serviceBus.transport ?? 'amqp';
  const sbConnection = parseConnectionString(options.serviceBus.connectionString);
  const sbEndpoint = serviceBusEndpoint(sbConnection, transport, options.serviceBus.endpointAddress, proxies);
  const rlEndpoint = options.relay === undefined ? undefined : relayEndpoint(options.relay.connectionString, proxies);
  const inbox = options.serviceBus.cloudInbox ?? DEFAULT_CLOUD_INBOX;
  const sbKey = sbConnection.keyName;

  for (const spec of endpointChecks(sbEndpoint, context)) await checkup.check(spec);
  // Both may share one host and port (Azure's 443, the emulators' TLS port): each channel's rows still run, as each channel connects.
  if (rlEndpoint !== undefined) for (const spec of endpointChecks(rlEndpoint, context)) await checkup.check(spec);
  await checkup.check(clockCheck(clockEndpoint(sbEndpoint, rlEndpoint, transport), context));

  const queues = options.stores.map((store) => store.queue ?? defaultStoreEntityName(store.storeId));
  const tried = sample(queues, sampleSize);
  await withProbe({ ...options.serviceBus, transport }, routing, timeoutInMs, async (probe) => {
    await checkup.check({
      id: 'servicebus.listen',
      title: `Service Bus: Listen on ${inbox}`,
      needs: ['servicebus.tcp'],
      run: async (signal) => neededRight(await probe.probe('Listen', inbox, signal), 'Listen', inbox, sbKey),
    });
    for (const [index, queue] of tried.entries()) {
      await checkup.check({
        id: `servicebus.send.${queue}`,
        title: `Service Bus: Send on ${queue}${index === 0 ? sampledNote(tried.length, queues.length, 'store queues') : ''}`,
        needs: ['servicebus.tcp'],
        run: async (signal) => neededRight(await probe.probe('Send', queue, signal), 'Send', queue, sbKey),
      });
    }
    await checkup.check({
      id: 'servicebus.rights',
      title: 'Service Bus: no Manage right',
      needs: ['servicebus.listen'],
      run: async (signal) => {
        const manage = await probe.probe('Manage', inbox, signal);
        if (manage.outcome === 'allowed') return fail(`key "${sbKey}" holds Manage`, manageAdvice(sbKey));
        if (manage.outcome === 'failed') return fail(`Manage could not be tried: ${manage.detail}`, 'see the network checks above');
        return pass(`key "${sbKey}" has no Manage`);
      },
    });
  });

  if (options.relay !== undefined) {
    const relayConnectionString = options.relay.connectionString;
    const hybridConnections = options.stores.filter((store) => store.bidirectional).map((store) => ({ storeId: store.storeId, name: store.hybridConnection ?? defaultStoreEntityName(store.storeId) }));
    const calls = sample(hybridConnections, sampleSize);
    for (const [index, target] of calls.entries()) {
      await checkup.check({
        id: `relay.send.${target.name}`,
        title: `Relay: call ${target.storeId} through ${target.name}${index === 0 ? sampledNote(calls.length, hybridConnections.length, 'hybrid connections') : ''}`,
        needs: ['relay.tcp'],
        run: (signal) => cloudCall(relayConnectionString, target, routing, timeoutInMs, signal),
      });
    }
  }

  if (options.http !== undefined) {
    const { host, port } = options.http;
    await checkup.check({
      id: 'http.port',
      title: `HTTP API: ${host}:${port} free`,
      run: async () => {
        if (port === 0) return pass('port 0: a free port is picked at start');
        const problem = await portFree(host, port);
        if (problem === undefined) return pass(`${host}:${port} can be bound`);
        return fail(
          `${host}:${port} cannot be bound (${problem})`,
          problem === 'EADDRINUSE' ? `another process holds ${port} (a cloud already running?): stop it or set http.port` : `check http.host (an address of this machine) and http.port`,
        );
      },
    });
    const tlsFiles = options.http.tls;
    if (tlsFiles !== undefined) {
      await checkup.check({
        id: 'http.tls',
        title: 'HTTP API: certificate and key',
        run: async () => {
          let cert: Buffer;
          let key: Buffer;
          try {
            [cert, key] = await Promise.all([readFile(tlsFiles.certFile), readFile(tlsFiles.keyFile)]);
          } catch (error) {
            return fail(`cannot read them: ${(error as Error).message}`, 'check http.tls.certFile and http.tls.keyFile and their permissions');
          }
          try {
            createSecureContext({ cert, key });
          } catch (error) {
            return fail(`not a usable certificate and key: ${(error as Error).message}`, 'give a PEM certificate and the PEM private key that goes with it');
          }
          return pass(`${tlsFiles.certFile} and ${tlsFiles.keyFile} are readable and go together`);
        },
      });
    }
  }
  return checkup.report('cloud');
}

async function cloudCall(connectionString: string, target: { storeId: string; name: string }, routing: Routing, timeoutInMs: number, signal: AbortSignal): Promise<Verdict> {
  const sender = createRelaySender({ ...routing, connectionString, hybridConnection: target.name });
  try {
    await sender.checkHealth({ timeoutInMs, abortSignal: signal });
    return pass(`store ${target.storeId} answered its health check through the relay (a round trip with key "${keyNameOf(connectionString)}")`);
  } catch (error) {
    if (!isStorelinkError(error)) throw error;
    if (error.code === 'RELAY_NO_LISTENER') {
      return fail(`no listener on ${target.name}: ${error.message}`, `store ${target.storeId} is not connected to the relay: start its agent, and run \`storelink doctor\` on the store`);
    }
    if (error.code === 'RELAY_UNAUTHORIZED') return fail(error.message, `a wrong key, or a policy without Send: use a key whose policy grants Send on ${target.name}`);
    if (error.code === 'RELAY_ENDPOINT_NOT_FOUND') return fail(error.message, `create the hybrid connection ${target.name}, or set the store's hybridConnection`);
    return fail(error.message, 'see the relay network checks above');
  } finally {
    await sender.close();
  }
}
