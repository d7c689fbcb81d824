/**
 * `$management` operations (request/response over AMQP). Answers use camelCase `statusCode`/`statusDescription`:
 * the SDK tests `statusCode === 204` for an empty peek.
 */
import { bytesToUuid } from './amqpCodec.js';
import { BrokerError, compileRule, type Broker, type Consumer, type MessageStore, type SendEntity, type SettleOutcome, type SubscriptionEntity } from './broker.js';
import { encodeForDelivery, parseIncoming, type StoredMessage } from './message.js';
import type { AccessRight, RuleOptions } from './options.js';
import type { CorrelationFilter, Rule } from './filters.js';
import { rheaTypes, type DecodedMessage, type RheaTyped } from './rheaTypes.js';

export interface ManagementContext {
  broker: Broker;
  /** The entity the management link belongs to, canonical lower-case (`q1`, `t1/subscriptions/s1`, `q1/$deadletterqueue`). */
  entityPath: string;
  host: string;
  authorized(right: AccessRight): boolean;
  consumerFor(store: MessageStore, sessionId: string): Consumer | undefined;
}

export interface ManagementResult {
  status: number;
  description: string;
  body?: unknown;
}

const OK: ManagementResult = { status: 200, description: 'OK' };

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (Buffer.isBuffer(value) && value.length === 8) return Number(value.readBigInt64BE(0));
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'object' && value !== null && 'value' in value) return toNumber((value).value);
  throw new BrokerError('amqp:decode-error', `Expected a sequence number, got ${String(value)}`);
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function list(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (value === undefined || value === null) return [];
  return [value];
}

function lockToken(value: unknown): string {
  if (Buffer.isBuffer(value) && value.length === 16) return bytesToUuid(value);
  if (typeof value === 'string') return value.toLowerCase();
  throw new BrokerError('amqp:decode-error', 'A lock token must be a uuid.');
}

function need(context: ManagementContext, right: AccessRight): void {
  if (!context.authorized(right)) {
    throw new BrokerError('amqp:unauthorized-access', `Unauthorized access. '${right}' claim(s) are required to perform this operation.`);
  }
}

function receiveStore(context: ManagementContext): MessageStore {
  const store = context.broker.receiveStore(context.entityPath);
  if (store === undefined) {
    throw new BrokerError('amqp:not-found', `The messaging entity 'sb://${context.host}/${context.entityPath}' could not be found.`);
  }
  return store;
}

function sendEntity(context: ManagementContext): SendEntity {
  const entity = context.broker.sendTarget(context.entityPath);
  if (entity === undefined) {
    throw new BrokerError('amqp:not-found', `The messaging entity 'sb://${context.host}/${context.entityPath}' could not be found.`);
  }
  return entity;
}

function lockLost(): BrokerError {
  return new BrokerError(
    'com.microsoft:message-lock-lost',
    'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.',
  );
}

function messageList(messages: readonly StoredMessage[], withLocks: boolean): unknown {
  return messages.map((message) => {
    const entry: Record<string, unknown> = { message: encodeForDelivery(message, { withState: true, ...(withLocks && message.lockToken !== undefined ? { lockedUntil: message.lockedUntil } : {}) }) };
    if (withLocks && message.lockToken !== undefined) entry['lock-token'] = rheaTypes.wrap_uuid(Buffer.from(message.lockToken.replace(/-/g, ''), 'hex'));
    return entry;
  });
}

export function handleManagementRequest(context: ManagementContext, request: DecodedMessage): ManagementResult {
  const operation = str(request.application_properties?.operation);
  const body = (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>;
  switch (operation) {
    case 'com.microsoft:renew-lock': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const expirations = list(body['lock-tokens']).map((value) => {
        const until = store.renewLock(lockToken(value));
        if (until === undefined) throw lockLost();
        return until;
      });
      return { ...OK, body: { expirations: rheaTypes.wrap_array(expirations, 0x83) } };
    }
    case 'com.microsoft:update-disposition': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const status = str(body['disposition-status']);
      const properties = (body['properties-to-modify'] ?? undefined) as Record<string, unknown> | undefined;
      let outcome: SettleOutcome;
      switch (status) {
        case 'completed':
          outcome = { kind: 'complete' };
          break;
        case 'abandoned':
          outcome = { kind: 'abandon', properties };
          break;
        case 'defered':
        case 'deferred':
          outcome = { kind: 'defer', properties };
          break;
        case 'suspended':
          outcome = {
            kind: 'deadLetter',
            reason: typeof body['deadletter-reason'] === 'string' ? body['deadletter-reason'] : undefined,
            description: typeof body['deadletter-description'] === 'string' ? body['deadletter-description'] : undefined,
            properties,
          };
          break;
        default:
          throw new BrokerError('amqp:not-allowed', `Unknown disposition-status '${status}'.`);
      }
      for (const value of list(body['lock-tokens'])) {
        if (store.settle(lockToken(value), outcome) !== 'ok') throw lockLost();
      }
      return OK;
    }
    case 'com.microsoft:peek-message': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const from = body['from-sequence-number'] === undefined ? 1 : toNumber(body['from-sequence-number']);
      const count = body['message-count'] === undefined ? 1 : toNumber(body['message-count']);
      const sessionId = typeof body['session-id'] === 'string' ? body['session-id'] : undefined;
      const found = store.peek(from, count, sessionId);
      if (found.length === 0) return { status: 204, description: 'No messages to peek.' };
      return { ...OK, body: { messages: messageList(found, false) } };
    }
    case 'com.microsoft:schedule-message': {
      need(context, 'Send');
      const entity = sendEntity(context);
      const parsed = list(body.messages).map((entry) => {
        const bytes = (entry as Record<string, unknown>).message;
        if (!Buffer.isBuffer(bytes)) throw new BrokerError('amqp:decode-error', 'schedule-message: each entry needs a binary "message".');
        const incoming = parseIncoming(Buffer.from(bytes));
        if (incoming.body.bare.length > entity.props.maxMessageSizeInBytes) {
          throw new BrokerError('amqp:link:message-size-exceeded', `A scheduled message exceeds the limit of ${entity.props.maxMessageSizeInBytes} bytes.`);
        }
        return incoming;
      });
      if (entity.kind === 'queue' && entity.props.requiresSession && parsed.some((m) => m.facts.sessionId === undefined)) {
        throw new BrokerError('amqp:not-allowed', `The SessionId was not set on a message, and it cannot be sent to the entity '${entity.name}'.`);
      }
      const seqs = context.broker.schedule(entity, parsed);
      return { ...OK, body: { 'sequence-numbers': rheaTypes.wrap_array(seqs, 0x81) } };
    }
    case 'com.microsoft:cancel-scheduled-message': {
      need(context, 'Send');
      context.broker.cancelScheduled(sendEntity(context), list(body['sequence-numbers']).map(toNumber));
      return OK;
    }
    case 'com.microsoft:receive-by-sequence-number': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const seqs = list(body['sequence-numbers']).map(toNumber);
      const mode = body['receiver-settle-mode'] === undefined ? 1 : toNumber(body['receiver-settle-mode']);
      const sessionId = typeof body['session-id'] === 'string' ? body['session-id'] : undefined;
      const found = store.receiveDeferred(seqs, mode === 0, sessionId);
      return { ...OK, body: { messages: messageList(found, mode !== 0) } };
    }
    case 'com.microsoft:renew-session-lock': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const sessionId = str(body['session-id']);
      const until = store.renewSession(sessionId, context.consumerFor(store, sessionId));
      if (until === undefined) throw new BrokerError('com.microsoft:session-lock-lost', `The session lock has expired on the session '${sessionId}'.`);
      return { ...OK, body: { expiration: rheaTypes.wrap_timestamp(until) } };
    }
    case 'com.microsoft:set-session-state': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const sessionId = str(body['session-id']);
      if (!store.isSessionLocked(sessionId)) throw new BrokerError('com.microsoft:session-lock-lost', `The session lock has expired on the session '${sessionId}'.`);
      const state = body['session-state'];
      store.setSessionState(sessionId, Buffer.isBuffer(state) ? Buffer.from(state) : undefined);
      return OK;
    }
    case 'com.microsoft:get-session-state': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const sessionId = str(body['session-id']);
      if (!store.isSessionLocked(sessionId)) throw new BrokerError('com.microsoft:session-lock-lost', `The session lock has expired on the session '${sessionId}'.`);
      const state = store.sessionStates.get(sessionId);
      return { ...OK, body: { 'session-state': state === undefined ? null : state } };
    }
    case 'com.microsoft:get-message-sessions': {
      need(context, 'Listen');
      const store = receiveStore(context);
      const ids = new Set<string>();
      for (const message of store.messages.values()) if (message.sessionId !== undefined) ids.add(message.sessionId);
      const skip = body.skip === undefined ? 0 : toNumber(body.skip);
      const top = body.top === undefined ? ids.size : toNumber(body.top);
      const page = [...ids].slice(skip, skip + top);
      if (page.length === 0) return { status: 204, description: 'No sessions.' };
      return { ...OK, body: { skip: skip + page.length, 'sessions-ids': rheaTypes.wrap_array(page, 0xa1) } };
    }
    case 'com.microsoft:add-rule':
    case 'com.microsoft:remove-rule':
    case 'com.microsoft:enumerate-rules':
      return rules(context, operation, body);
    default:
      throw new BrokerError('amqp:not-implemented', `The management operation '${operation}' is not supported by the emulator.`);
  }
}

function subscriptionOf(context: ManagementContext): SubscriptionEntity {
  const subscription = context.broker.subscription(context.entityPath);
  if (subscription === undefined) {
    throw new BrokerError('amqp:not-found', `The messaging entity 'sb://${context.host}/${context.entityPath}' could not be found.`);
  }
  return subscription;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function rules(context: ManagementContext, operation: string, body: Record<string, unknown>): ManagementResult {
  need(context, 'Manage');
  const subscription = subscriptionOf(context);
  const current = subscription.rules;
  const name = str(body['rule-name']);
  if (operation === 'com.microsoft:add-rule') {
    if (current.some((rule) => rule.name.toLowerCase() === name.toLowerCase())) {
      throw new BrokerError('com.microsoft:entity-already-exists', `The rule '${name}' already exists.`);
    }
    const description = (body['rule-description'] ?? {}) as Record<string, Record<string, unknown> | undefined>;
    const options: RuleOptions = { name };
    const sql = description['sql-filter'];
    const correlation = description['correlation-filter'];
    if (sql !== undefined && sql !== null) {
      options.sqlFilter = str(sql.expression);
    } else if (correlation !== undefined && correlation !== null) {
      const filter: CorrelationFilter = {};
      const set = <K extends keyof CorrelationFilter>(key: K, value: unknown): void => {
        const v = text(value);
        if (v !== undefined) (filter as Record<string, unknown>)[key] = v;
      };
      set('correlationId', correlation['correlation-id']);
      set('messageId', correlation['message-id']);
      set('to', correlation.to);
      set('replyTo', correlation['reply-to']);
      set('subject', correlation.label);
      set('sessionId', correlation['session-id']);
      set('replyToSessionId', correlation['reply-to-session-id']);
      set('contentType', correlation['content-type']);
      if (typeof correlation.properties === 'object' && correlation.properties !== null) {
        filter.applicationProperties = correlation.properties as Record<string, string | number | boolean>;
      }
      options.correlationFilter = filter;
    }
    try {
      context.broker.replaceRules(subscription, [...current, compileRule(options)]);
    } catch (error) {
      throw new BrokerError('amqp:invalid-field', `The rule '${name}' has an invalid filter: ${(error as Error).message}`);
    }
    return OK;
  }
  if (operation === 'com.microsoft:remove-rule') {
    const index = current.findIndex((rule) => rule.name.toLowerCase() === name.toLowerCase());
    if (index < 0) throw new BrokerError('amqp:not-found', `The messaging entity 'sb://${context.host}/${context.entityPath}/Rules/${name}' could not be found.`);
    context.broker.replaceRules(subscription, current.filter((_, i) => i !== index));
    return OK;
  }
  const skip = body.skip === undefined ? 0 : toNumber(body.skip);
  const top = body.top === undefined ? current.length : toNumber(body.top);
  const page = current.slice(skip, skip + top);
  if (page.length === 0) return { status: 204, description: 'No rules.' };
  return { ...OK, body: { rules: page.map((rule) => ({ 'rule-description': describeRule(rule) })) } };
}

const RULE_DESCRIPTION = 0x0000013700000004;
const EMPTY_ACTION = 0x0000013700000005;
const SQL_FILTER = 0x0000001370000006;
const TRUE_FILTER = 0x0000001370000007;
const FALSE_FILTER = 0x0000001370000008;
const CORRELATION_FILTER = 0x0000001370000009;

function described(code: number, items: unknown[]): RheaTyped {
  return rheaTypes.described(rheaTypes.wrap_ulong(code), rheaTypes.wrap_list(items));
}

function describeRule(rule: Rule): RheaTyped {
  let filter: RheaTyped;
  switch (rule.filter.kind) {
    case 'true':
      filter = described(TRUE_FILTER, []);
      break;
    case 'false':
      filter = described(FALSE_FILTER, []);
      break;
    case 'sql':
      filter = described(SQL_FILTER, [rule.filter.expression, 20]);
      break;
    case 'correlation': {
      const f = rule.filter.filter;
      filter = described(CORRELATION_FILTER, [
        f.correlationId ?? null,
        f.messageId ?? null,
        f.to ?? null,
        f.replyTo ?? null,
        f.subject ?? null,
        f.sessionId ?? null,
        f.replyToSessionId ?? null,
        f.contentType ?? null,
        f.applicationProperties ?? {},
      ]);
      break;
    }
  }
  return described(RULE_DESCRIPTION, [filter, described(EMPTY_ACTION, []), rule.name]);
}
