/**
 * What `storelink doctor` asks of Service Bus: whether a key can do one thing on one entity, found out by trying it
 * and changing nothing. Listen: a receiver peeks one message (peek locks and settles nothing). Send: a sender creates
 * an empty batch, which attaches the link (and so passes the CBS claim) and sends nothing. Manage: a rule manager
 * deletes a rule of a subscription that does not exist; the claim is checked before the entity, so "not found" means
 * the Manage claim was granted and "unauthorized" that it was not.
 *
 * The client is the channel's own (createSdkClient), with no retries: a doctor wants the first answer.
 */
import { isServiceBusError, type ServiceBusClient } from '@azure/service-bus';
import { createSdkClient, type ServiceBusNetworkOptions } from './serviceBusConnection.js';

export type AccessRightProbe = 'Listen' | 'Send' | 'Manage';

export type AccessProbeResult =
  /** The service let the key do it. */
  | { outcome: 'allowed'; detail: string }
  /** The service refused the claim (UnauthorizedAccess): a wrong key, or a key without that right. */
  | { outcome: 'denied'; detail: string }
  /** The entity does not exist. */
  | { outcome: 'not-found'; detail: string }
  /** No answer that says either way: the network, a timeout, anything else. */
  | { outcome: 'failed'; detail: string };

export interface ServiceBusAccessProbeOptions extends ServiceBusNetworkOptions {
  connectionString: string;
  /** How long one probe may take. */
  timeoutInMs: number;
  /** Where the proxy defaults are read from; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface ServiceBusAccessProbe {
  probe(right: AccessRightProbe, entity: string, abortSignal?: AbortSignal): Promise<AccessProbeResult>;
  close(): Promise<void>;
}

/** The subscription and rule names the Manage probe asks for; neither exists. */
const PROBE_SUBSCRIPTION = 'storelink-doctor-probe';
const PROBE_RULE = 'storelink-doctor-probe';

function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return messageOf(error.errors.at(-1));
  return error instanceof Error ? error.message : String(error);
}

function lastOf(error: unknown): unknown {
  return error instanceof AggregateError && error.errors.length > 0 ? lastOf(error.errors.at(-1)) : error;
}

function classify(error: unknown, right: AccessRightProbe): AccessProbeResult {
  const last = lastOf(error);
  const detail = messageOf(last).split('\n')[0]!.slice(0, 300);
  if (isServiceBusError(last)) {
    if (last.code === 'UnauthorizedAccess') return { outcome: 'denied', detail };
    if (last.code === 'MessagingEntityNotFound' || last.code === 'MessagingEntityDisabled') {
      // For Manage the subscription never exists: reaching "not found" means the claim was granted.
      return right === 'Manage' ? { outcome: 'allowed', detail: 'the Manage claim was granted (the probe subscription does not exist)' } : { outcome: 'not-found', detail };
    }
  }
  if (last instanceof Error && /unauthori[sz]ed/i.test(last.message)) return { outcome: 'denied', detail };
  return { outcome: 'failed', detail };
}

export function createServiceBusAccessProbe(options: ServiceBusAccessProbeOptions): ServiceBusAccessProbe {
  let client: ServiceBusClient | undefined;
  const clientOf = (): ServiceBusClient =>
    (client ??= createSdkClient(options.connectionString, {
      retry: { maxRetries: 0, timeoutInMs: options.timeoutInMs, retryDelayInMs: 0, maxRetryDelayInMs: 0 },
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      ...(options.endpointAddress === undefined ? {} : { endpointAddress: options.endpointAddress }),
      ...(options.proxy === undefined ? {} : { proxy: options.proxy }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.env === undefined ? {} : { env: options.env }),
    }));

  return {
    async probe(right, entity, abortSignal) {
      const signal = abortSignal === undefined ? AbortSignal.timeout(options.timeoutInMs) : AbortSignal.any([abortSignal, AbortSignal.timeout(options.timeoutInMs)]);
      const sdk = clientOf();
      try {
        if (right === 'Listen') {
          const receiver = sdk.createReceiver(entity, { receiveMode: 'peekLock' });
          try {
            const peeked = await receiver.peekMessages(1, { abortSignal: signal });
            return { outcome: 'allowed', detail: `peeked ${peeked.length} message${peeked.length === 1 ? '' : 's'}, settled nothing` };
          } finally {
            await receiver.close().catch(() => undefined);
          }
        }
        if (right === 'Send') {
          const sender = sdk.createSender(entity);
          try {
            const batch = await sender.createMessageBatch({ abortSignal: signal });
            return { outcome: 'allowed', detail: `a sender link attached (largest batch ${batch.maxSizeInBytes} bytes), nothing sent` };
          } finally {
            await sender.close().catch(() => undefined);
          }
        }
        // A rule manager has no close(): its management link closes with the client.
        await sdk.createRuleManager(entity, PROBE_SUBSCRIPTION).deleteRule(PROBE_RULE, { abortSignal: signal });
        return { outcome: 'allowed', detail: 'the Manage claim was granted' };
      } catch (error) {
        if (signal.aborted) return { outcome: 'failed', detail: `no answer within ${options.timeoutInMs} ms` };
        return classify(error, right);
      }
    },
    async close() {
      await client?.close().catch(() => undefined);
    },
  };
}
