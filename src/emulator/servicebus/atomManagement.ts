/**
 * The management API of Azure Service Bus as `ServiceBusAdministrationClient` (@azure/service-bus) speaks it: ATOM XML
 * over HTTPS, a SAS token with Manage in the `Authorization` header (signed for the request URL, or a prefix of it).
 *
 *   GET    $Resources/Queues | $Resources/Topics            list (`$skip`, `$top`)
 *   GET    <topic>/Subscriptions | <topic>/Subscriptions/<s>/Rules
 *   GET / PUT / DELETE  <queue or topic> | <topic>/Subscriptions/<s> | <topic>/Subscriptions/<s>/Rules/<r>
 *
 * PUT creates (409 when it exists) or, with `If-Match: *`, updates (404 when it does not). A queue's or topic's
 * `AuthorizationRules` become its rules at once (keys valid for that entity only; a rule without a key gets one).
 * The body is bounded in size and element depth before it is parsed. With `dataDir`, a queue created here is
 * journaled as created (as auto-created queues are); updates, deletes, topics and subscriptions are not.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { parseSasToken, sasFailurePrefixOf, verifySasToken } from '../../core/sas.js';
import { checkAuthorizationRules, entityPathOf, signingKeyFor, type RuleHolder } from './authorization.js';
import { compileRule, ruleOptionsOf, type Broker, type QueueEntity, type SubscriptionEntity, type TopicEntity } from './broker.js';
import { parseIsoDuration } from './emulatorConfig.js';
import type { CorrelationFilter } from './filters.js';
import type { AccessRight, AuthorizationRule, EntityProperties, ResolvedEntityProperties, RuleOptions, SharedAccessPolicy } from './options.js';
import { resolveProperties } from './options.js';

/** Largest request body accepted (an entity description with 12 rules is a few KiB). */
export const MAX_MANAGEMENT_BODY_BYTES = 64 * 1024;
/** Deepest element nesting accepted (a rule's filter properties are about 8 deep). */
export const MAX_MANAGEMENT_XML_DEPTH = 16;
const SB_NS = 'http://schemas.microsoft.com/netservices/2010/10/servicebus/connect';
const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
const ATOM_NS = 'http://www.w3.org/2005/Atom';
/** Azure's "no limit" for durations (TimeSpan.MaxValue). */
const UNLIMITED = 'P10675199DT2H48M5.4775807S';
const UNLIMITED_MS = 10_675_199 * 86_400_000;

/** Whether a request on the shared TLS port is for this API: the SDK always names an `api-version`, relay senders never do. */
export function isManagementRequest(req: IncomingMessage): boolean {
  const query = (req.url ?? '').split('?')[1] ?? '';
  return new URLSearchParams(query).has('api-version');
}

export interface AtomManagementOptions {
  broker: Broker;
  policies: readonly SharedAccessPolicy[];
  now: () => number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: true,
  isArray: (name) => ['AuthorizationRule', 'AccessRights', 'KeyValueOfstringanyType'].includes(name),
});
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false, format: false });

export function createAtomManagementHandler(options: AtomManagementOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    void handle(options, req, res).catch((error: unknown) => {
      // HttpError: its status; TypeError and RangeError: a description the broker refused (400); anything else is ours.
      if (error instanceof HttpError) reply(res, error.status, errorBody(error.status, error.message));
      else if (error instanceof TypeError || error instanceof RangeError) reply(res, 400, errorBody(400, error.message));
      else reply(res, 500, errorBody(500, 'Internal error.'));
    });
  };
}

function reply(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/atom+xml;type=entry;charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function errorBody(code: number, detail: string): string {
  return `<?xml version="1.0" encoding="utf-8"?>${builder.build({ Error: { Code: code, Detail: detail } })}`;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_MANAGEMENT_BODY_BYTES) throw new HttpError(413, `The request body exceeds ${MAX_MANAGEMENT_BODY_BYTES} bytes.`);
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_MANAGEMENT_BODY_BYTES) throw new HttpError(413, `The request body exceeds ${MAX_MANAGEMENT_BODY_BYTES} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length).toString('utf8');
}

/** Element depth of an XML text, counted on its tags before any parsing; throws past the bound, and on a DTD (no entities to expand). */
function checkDepth(xml: string): void {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new HttpError(400, 'The request body must not declare a DTD or entities.');
  let depth = 0;
  for (const match of xml.matchAll(/<(\/?)[A-Za-z_][^>]*?(\/?)>/g)) {
    if (match[1] === '/') depth--;
    else if (match[2] !== '/') depth++;
    if (depth > MAX_MANAGEMENT_XML_DEPTH) throw new HttpError(400, `The request body nests elements deeper than ${MAX_MANAGEMENT_XML_DEPTH}.`);
  }
}

type Target =
  | { kind: 'list'; of: 'queues' | 'topics' }
  | { kind: 'subscriptions'; topic: string }
  | { kind: 'rules'; topic: string; subscription: string }
  | { kind: 'entity'; name: string }
  | { kind: 'subscription'; topic: string; subscription: string }
  | { kind: 'rule'; topic: string; subscription: string; rule: string };

function targetOf(path: string): Target {
  const lower = path.toLowerCase();
  if (lower === '$resources/queues') return { kind: 'list', of: 'queues' };
  if (lower === '$resources/topics') return { kind: 'list', of: 'topics' };
  let match = /^(.+?)\/subscriptions\/([^/]+)\/rules\/([^/]+)$/i.exec(path);
  if (match !== null) return { kind: 'rule', topic: match[1]!, subscription: match[2]!, rule: match[3]! };
  match = /^(.+?)\/subscriptions\/([^/]+)\/rules$/i.exec(path);
  if (match !== null) return { kind: 'rules', topic: match[1]!, subscription: match[2]! };
  match = /^(.+?)\/subscriptions\/([^/]+)$/i.exec(path);
  if (match !== null) return { kind: 'subscription', topic: match[1]!, subscription: match[2]! };
  match = /^(.+?)\/subscriptions$/i.exec(path);
  if (match !== null) return { kind: 'subscriptions', topic: match[1]! };
  if (path.length === 0 || path.startsWith('$')) throw new HttpError(400, `'${path}' is not an entity this API manages.`);
  return { kind: 'entity', name: path };
}

/** The entity path the request acts on, for the token's scope: the topic for its subscriptions and rules. */
function scopePathOf(target: Target): string {
  switch (target.kind) {
    case 'list':
      return '';
    case 'entity':
      return target.name.toLowerCase();
    default:
      return target.topic.toLowerCase();
  }
}

function authorize(options: AtomManagementOptions, req: IncomingMessage, path: string, target: Target): void {
  const header = req.headers.authorization;
  if (typeof header !== 'string' || header.length === 0) throw new HttpError(401, 'MissingToken: the request has no Authorization header with a SAS token.');
  if (header.length > 4096) throw new HttpError(401, 'MalformedToken: the Authorization header is too long.');
  const find = (path: string): RuleHolder | undefined => options.broker.entities.get(path);
  try {
    const claimed = parseSasToken(header);
    const resourcePath = entityPathOf(decodeURIComponent(claimed.resource).split('?')[0]!);
    const key = signingKeyFor(claimed.keyName, resourcePath, options.policies, find);
    verifySasToken(header, {
      keysFor: () => (key === undefined ? undefined : [key.policy.primaryKey, ...(key.policy.secondaryKey === undefined ? [] : [key.policy.secondaryKey])]),
      nowInMs: options.now(),
    });
    // The token is signed for the request URL (the SDK's way) or a prefix of it; an entity's rule manages that entity only.
    const requested = path.toLowerCase();
    const scope = scopePathOf(target);
    const within = resourcePath.length === 0 || requested === resourcePath || requested.startsWith(`${resourcePath}/`);
    if (!within || (key!.entity !== undefined && key!.entity.path !== scope)) {
      throw new HttpError(401, `InvalidAudience: the token for '${claimed.resource}' does not grant access to '${path || 'the namespace'}'.`);
    }
    if (!key!.policy.rights.includes('Manage')) throw new HttpError(401, "Unauthorized: the 'Manage' claim is required for this operation.");
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(401, `${sasFailurePrefixOf(error)}: ${(error as Error).message}`);
  }
}

async function handle(options: AtomManagementOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://emulator');
  const path = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '');
  const target = targetOf(path);
  authorize(options, req, path, target);
  const method = req.method ?? 'GET';
  const base = `https://${req.headers.host ?? 'localhost'}`;
  const ctx: Ctx = { broker: options.broker, base, now: options.now() };
  if (method === 'GET') {
    reply(res, 200, get(ctx, target, url.searchParams));
    return;
  }
  if (method === 'DELETE') {
    remove(ctx, target);
    reply(res, 200, '');
    return;
  }
  if (method === 'PUT') {
    const text = await readBody(req);
    checkDepth(text);
    const parsed = parser.parse(text) as { entry?: { content?: Record<string, unknown> } };
    const content = parsed.entry?.content;
    if (content === undefined || typeof content !== 'object') throw new HttpError(400, 'The request body must be an ATOM entry with a content element.');
    const update = req.headers['if-match'] === '*';
    const status = put(ctx, target, content, update);
    reply(res, status, get(ctx, target, new URLSearchParams()));
    return;
  }
  throw new HttpError(405, `The method ${method} is not supported.`);
}

interface Ctx {
  broker: Broker;
  base: string;
  now: number;
}

// ---- lookups ----

function queueOrTopic(ctx: Ctx, name: string): QueueEntity | TopicEntity {
  const found = ctx.broker.entity(name);
  if (found === undefined) throw new HttpError(404, `The messaging entity '${name}' could not be found.`);
  return found;
}

function topicNamed(ctx: Ctx, name: string): TopicEntity {
  const found = ctx.broker.entity(name);
  if (found?.kind !== 'topic') throw new HttpError(404, `The messaging entity '${name}' could not be found.`);
  return found;
}

function subscriptionNamed(ctx: Ctx, topicName: string, name: string): SubscriptionEntity {
  const found = topicNamed(ctx, topicName).subscriptions.get(name.toLowerCase());
  if (found === undefined) throw new HttpError(404, `The messaging entity '${topicName}/Subscriptions/${name}' could not be found.`);
  return found;
}

// ---- GET ----

function get(ctx: Ctx, target: Target, query: URLSearchParams): string {
  switch (target.kind) {
    case 'list': {
      const all = [...ctx.broker.entities.values()].filter((e) => e.kind === (target.of === 'queues' ? 'queue' : 'topic'));
      return feed(ctx, `$Resources/${target.of === 'queues' ? 'Queues' : 'Topics'}`, all.map((e) => (e.kind === 'queue' ? queueEntry(ctx, e) : topicEntry(ctx, e))), query);
    }
    case 'subscriptions': {
      const topic = topicNamed(ctx, target.topic);
      return feed(ctx, `${topic.name}/Subscriptions`, [...topic.subscriptions.values()].map((s) => subscriptionEntry(ctx, s)), query);
    }
    case 'rules': {
      const subscription = subscriptionNamed(ctx, target.topic, target.subscription);
      return feed(ctx, `${subscription.topic.name}/Subscriptions/${subscription.name}/Rules`, subscription.rules.map((r) => ruleEntry(ctx, subscription, ruleOptionsOf(r))), query);
    }
    case 'entity': {
      const entity = queueOrTopic(ctx, target.name);
      return document(entity.kind === 'queue' ? queueEntry(ctx, entity) : topicEntry(ctx, entity));
    }
    case 'subscription':
      return document(subscriptionEntry(ctx, subscriptionNamed(ctx, target.topic, target.subscription)));
    case 'rule': {
      const subscription = subscriptionNamed(ctx, target.topic, target.subscription);
      const rule = subscription.rules.find((r) => r.name.toLowerCase() === target.rule.toLowerCase());
      if (rule === undefined) throw new HttpError(404, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}/Rules/${target.rule}' could not be found.`);
      return document(ruleEntry(ctx, subscription, ruleOptionsOf(rule)));
    }
  }
}

function document(entry: Record<string, unknown>): string {
  return `<?xml version="1.0" encoding="utf-8"?>${builder.build({ entry: { '@_xmlns': ATOM_NS, ...entry } })}`;
}

function feed(ctx: Ctx, path: string, entries: Record<string, unknown>[], query: URLSearchParams): string {
  const skip = boundedInt(query.get('$skip'), 0);
  const top = boundedInt(query.get('$top'), 100);
  const page = entries.slice(skip, skip + top);
  const links: Record<string, unknown>[] = [{ '@_rel': 'self', '@_href': `${ctx.base}/${path}?api-version=2021-05` }];
  if (skip + top < entries.length) links.push({ '@_rel': 'next', '@_href': `${ctx.base}/${path}?api-version=2021-05&$skip=${skip + top}&$top=${top}` });
  const body = { feed: { '@_xmlns': ATOM_NS, title: { '@_type': 'text', '#text': path }, id: `${ctx.base}/${path}`, updated: iso(ctx.now), link: links, entry: page } };
  return `<?xml version="1.0" encoding="utf-8"?>${builder.build(body)}`;
}

function boundedInt(text: string | null, fallback: number): number {
  if (text === null) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 100_000) throw new HttpError(400, `'${text}' is not a valid $skip or $top.`);
  return value;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function entryOf(ctx: Ctx, path: string, title: string, rootName: string, description: Record<string, unknown>): Record<string, unknown> {
  return {
    id: `${ctx.base}/${path}?api-version=2021-05`,
    title: { '@_type': 'text', '#text': title },
    published: iso(ctx.now),
    updated: iso(ctx.now),
    link: { '@_rel': 'self', '@_href': `${ctx.base}/${path}?api-version=2021-05` },
    content: { '@_type': 'application/xml', [rootName]: { '@_xmlns': SB_NS, '@_xmlns:i': XSI_NS, ...description } },
  };
}

/** ms → ISO-8601 duration (`PT1M`, `P14D`), Azure's maximum for "none". */
export function isoDuration(ms: number | undefined): string {
  if (ms === undefined || ms >= UNLIMITED_MS) return UNLIMITED;
  const days = Math.floor(ms / 86_400_000);
  let rest = ms - days * 86_400_000;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = rest / 1000;
  const time = `${hours > 0 ? `${hours}H` : ''}${minutes > 0 ? `${minutes}M` : ''}${seconds > 0 ? `${seconds}S` : ''}`;
  return `P${days > 0 ? `${days}D` : ''}${time.length > 0 ? `T${time}` : days > 0 ? '' : 'T0S'}`;
}

function rulesXml(rules: readonly AuthorizationRule[]): Record<string, unknown> {
  return {
    AuthorizationRule: rules.map((rule) => ({
      '@_i:type': 'SharedAccessAuthorizationRule',
      ClaimType: 'SharedAccessKey',
      ClaimValue: 'None',
      Rights: { AccessRights: rule.rights },
      CreatedTime: iso(0),
      ModifiedTime: iso(0),
      KeyName: rule.keyName,
      PrimaryKey: rule.primaryKey,
      SecondaryKey: rule.secondaryKey ?? rule.primaryKey,
    })),
  };
}

function commonTimes(ctx: Ctx): Record<string, unknown> {
  return { CreatedAt: iso(ctx.now), UpdatedAt: iso(ctx.now), AccessedAt: iso(ctx.now) };
}

function counts(active: number, deadLetter: number): Record<string, unknown> {
  return {
    CountDetails: {
      '@_xmlns:d2p1': 'http://schemas.microsoft.com/netservices/2011/06/servicebus',
      'd2p1:ActiveMessageCount': active,
      'd2p1:DeadLetterMessageCount': deadLetter,
      'd2p1:ScheduledMessageCount': 0,
      'd2p1:TransferMessageCount': 0,
      'd2p1:TransferDeadLetterMessageCount': 0,
    },
  };
}

function queueEntry(ctx: Ctx, queue: QueueEntity): Record<string, unknown> {
  const p = queue.props;
  const deadLetter = queue.store.deadLetterStore?.messages.size ?? 0;
  return entryOf(ctx, queue.name, queue.name, 'QueueDescription', {
    LockDuration: isoDuration(p.lockDurationInMs),
    MaxSizeInMegabytes: 1024,
    RequiresDuplicateDetection: p.requiresDuplicateDetection,
    RequiresSession: p.requiresSession,
    DefaultMessageTimeToLive: isoDuration(p.defaultMessageTimeToLiveInMs),
    DeadLetteringOnMessageExpiration: p.deadLetteringOnMessageExpiration,
    DuplicateDetectionHistoryTimeWindow: isoDuration(p.duplicateDetectionHistoryTimeWindowInMs),
    MaxDeliveryCount: p.maxDeliveryCount,
    EnableBatchedOperations: true,
    SizeInBytes: 0,
    MessageCount: queue.store.messages.size + deadLetter,
    IsAnonymousAccessible: false,
    AuthorizationRules: rulesXml(queue.authorizationRules),
    Status: 'Active',
    ...(p.forwardTo === undefined ? {} : { ForwardTo: p.forwardTo }),
    ...commonTimes(ctx),
    SupportOrdering: true,
    ...counts(queue.store.messages.size, deadLetter),
    AutoDeleteOnIdle: UNLIMITED,
    EnablePartitioning: false,
    EntityAvailabilityStatus: 'Available',
    ...(p.forwardDeadLetteredMessagesTo === undefined ? {} : { ForwardDeadLetteredMessagesTo: p.forwardDeadLetteredMessagesTo }),
    EnableExpress: false,
    MaxMessageSizeInKilobytes: Math.ceil(p.maxMessageSizeInBytes / 1024),
  });
}

function topicEntry(ctx: Ctx, topic: TopicEntity): Record<string, unknown> {
  const p = topic.props;
  return entryOf(ctx, topic.name, topic.name, 'TopicDescription', {
    DefaultMessageTimeToLive: isoDuration(p.defaultMessageTimeToLiveInMs),
    MaxSizeInMegabytes: 1024,
    RequiresDuplicateDetection: p.requiresDuplicateDetection,
    DuplicateDetectionHistoryTimeWindow: isoDuration(p.duplicateDetectionHistoryTimeWindowInMs),
    EnableBatchedOperations: true,
    SizeInBytes: 0,
    FilteringMessagesBeforePublishing: false,
    IsAnonymousAccessible: false,
    AuthorizationRules: rulesXml(topic.authorizationRules),
    Status: 'Active',
    ...commonTimes(ctx),
    SupportOrdering: true,
    ...counts(0, 0),
    SubscriptionCount: topic.subscriptions.size,
    AutoDeleteOnIdle: UNLIMITED,
    EnablePartitioning: false,
    IsExpress: false,
    EntityAvailabilityStatus: 'Available',
    EnableSubscriptionPartitioning: false,
    EnableExpress: false,
    MaxMessageSizeInKilobytes: Math.ceil(p.maxMessageSizeInBytes / 1024),
  });
}

function subscriptionEntry(ctx: Ctx, subscription: SubscriptionEntity): Record<string, unknown> {
  const p = subscription.props;
  const deadLetter = subscription.store.deadLetterStore?.messages.size ?? 0;
  return entryOf(ctx, `${subscription.topic.name}/Subscriptions/${subscription.name}`, subscription.name, 'SubscriptionDescription', {
    LockDuration: isoDuration(p.lockDurationInMs),
    RequiresSession: p.requiresSession,
    DefaultMessageTimeToLive: isoDuration(p.defaultMessageTimeToLiveInMs),
    DeadLetteringOnMessageExpiration: p.deadLetteringOnMessageExpiration,
    DeadLetteringOnFilterEvaluationExceptions: true,
    MessageCount: subscription.store.messages.size + deadLetter,
    MaxDeliveryCount: p.maxDeliveryCount,
    EnableBatchedOperations: true,
    Status: 'Active',
    ...(p.forwardTo === undefined ? {} : { ForwardTo: p.forwardTo }),
    ...commonTimes(ctx),
    ...counts(subscription.store.messages.size, deadLetter),
    ...(p.forwardDeadLetteredMessagesTo === undefined ? {} : { ForwardDeadLetteredMessagesTo: p.forwardDeadLetteredMessagesTo }),
    AutoDeleteOnIdle: UNLIMITED,
    EntityAvailabilityStatus: 'Available',
  });
}

function ruleEntry(ctx: Ctx, subscription: SubscriptionEntity, rule: RuleOptions): Record<string, unknown> {
  return entryOf(ctx, `${subscription.topic.name}/Subscriptions/${subscription.name}/Rules/${rule.name}`, rule.name, 'RuleDescription', {
    Filter: filterXml(rule),
    Action: { '@_i:type': 'EmptyRuleAction' },
    CreatedAt: iso(ctx.now),
    Name: rule.name,
  });
}

const CORRELATION_FIELDS: [keyof CorrelationFilter, string][] = [
  ['correlationId', 'CorrelationId'],
  ['messageId', 'MessageId'],
  ['to', 'To'],
  ['replyTo', 'ReplyTo'],
  ['subject', 'Label'],
  ['sessionId', 'SessionId'],
  ['replyToSessionId', 'ReplyToSessionId'],
  ['contentType', 'ContentType'],
];

function filterXml(rule: RuleOptions): Record<string, unknown> {
  if (rule.sqlFilter !== undefined) return { '@_i:type': 'SqlFilter', SqlExpression: rule.sqlFilter, CompatibilityLevel: 20 };
  if (rule.correlationFilter !== undefined) {
    const filter = rule.correlationFilter;
    const fields: Record<string, unknown> = { '@_i:type': 'CorrelationFilter' };
    for (const [key, element] of CORRELATION_FIELDS) if (filter[key] !== undefined) fields[element] = filter[key];
    return fields;
  }
  return rule.matchAll === false ? { '@_i:type': 'FalseFilter', SqlExpression: '1=0', CompatibilityLevel: 20 } : { '@_i:type': 'TrueFilter', SqlExpression: '1=1', CompatibilityLevel: 20 };
}

// ---- PUT ----

function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'object' && '#text' in value) return String((value as Record<string, unknown>)['#text']).trim();
  if (typeof value === 'object') return '';
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
}

function bool(description: Record<string, unknown>, name: string): boolean | undefined {
  const value = text(description[name]);
  if (value === undefined || value === '') return undefined;
  if (value !== 'true' && value !== 'false') throw new HttpError(400, `${name} must be true or false, got '${value}'.`);
  return value === 'true';
}

function int(description: Record<string, unknown>, name: string): number | undefined {
  const value = text(description[name]);
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new HttpError(400, `${name} must be a positive integer, got '${value}'.`);
  return parsed;
}

function duration(description: Record<string, unknown>, name: string): number | undefined {
  const value = text(description[name]);
  if (value === undefined || value === '') return undefined;
  const ms = parseIsoDuration(value);
  return ms >= UNLIMITED_MS ? undefined : ms;
}

/** `sb://host/name` or a bare name → the name. */
function entityName(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  return /^[a-z]+:\/\//i.test(value) ? entityPathOf(value) : value;
}

function propertiesOf(description: Record<string, unknown>): EntityProperties {
  const props: EntityProperties = {};
  const set = <K extends keyof EntityProperties>(key: K, value: EntityProperties[K] | undefined): void => {
    if (value !== undefined) props[key] = value;
  };
  set('lockDurationInMs', duration(description, 'LockDuration'));
  set('maxDeliveryCount', int(description, 'MaxDeliveryCount'));
  set('defaultMessageTimeToLiveInMs', duration(description, 'DefaultMessageTimeToLive'));
  set('deadLetteringOnMessageExpiration', bool(description, 'DeadLetteringOnMessageExpiration'));
  set('requiresDuplicateDetection', bool(description, 'RequiresDuplicateDetection'));
  set('duplicateDetectionHistoryTimeWindowInMs', duration(description, 'DuplicateDetectionHistoryTimeWindow'));
  set('requiresSession', bool(description, 'RequiresSession'));
  set('forwardTo', entityName(text(description.ForwardTo)));
  set('forwardDeadLetteredMessagesTo', entityName(text(description.ForwardDeadLetteredMessagesTo)));
  const kilobytes = int(description, 'MaxMessageSizeInKilobytes');
  if (kilobytes !== undefined) props.maxMessageSizeInBytes = kilobytes * 1024;
  return props;
}

function authorizationRulesOf(description: Record<string, unknown>): AuthorizationRule[] | undefined {
  const holder = description.AuthorizationRules;
  if (holder === undefined) return undefined;
  if (typeof holder !== 'object' || holder === null) return [];
  const raw = (holder as { AuthorizationRule?: unknown[] }).AuthorizationRule ?? [];
  const rules = raw.map((value, index): AuthorizationRule => {
    const rule = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
    const rights = ((rule.Rights as { AccessRights?: unknown[] } | undefined)?.AccessRights ?? []).map((right) => text(right) as AccessRight);
    const keyName = text(rule.KeyName) ?? '';
    const primaryKey = text(rule.PrimaryKey) || randomBytes(32).toString('base64');
    const secondaryKey = text(rule.SecondaryKey) || randomBytes(32).toString('base64');
    if (keyName === '') throw new HttpError(400, `AuthorizationRules[${index}].KeyName is required.`);
    return { keyName, primaryKey, secondaryKey, rights };
  });
  checkAuthorizationRules('AuthorizationRules', rules);
  return rules;
}

function descriptionIn(content: Record<string, unknown>, rootName: string): Record<string, unknown> {
  const description = content[rootName];
  if (description === undefined) throw new HttpError(400, `The entry's content must hold a ${rootName}.`);
  return typeof description === 'object' && description !== null ? (description as Record<string, unknown>) : {};
}

function put(ctx: Ctx, target: Target, content: Record<string, unknown>, update: boolean): number {
  switch (target.kind) {
    case 'entity': {
      const isTopic = content.TopicDescription !== undefined;
      const description = descriptionIn(content, isTopic ? 'TopicDescription' : 'QueueDescription');
      const props = propertiesOf(description);
      const authorizationRules = authorizationRulesOf(description);
      const existing = ctx.broker.entity(target.name);
      if (!update) {
        if (existing !== undefined) throw new HttpError(409, `The messaging entity '${target.name}' already exists.`);
        const withRules = authorizationRules === undefined ? props : { ...props, authorizationRules };
        if (isTopic) ctx.broker.addTopic(target.name, withRules, 'TopicDescription');
        else {
          ctx.broker.addQueue(target.name, withRules, 'QueueDescription');
          ctx.broker.journal?.createQueue(target.name, withRules);
        }
        return 201;
      }
      if (existing === undefined) throw new HttpError(404, `The messaging entity '${target.name}' could not be found.`);
      if ((existing.kind === 'topic') !== isTopic) throw new HttpError(400, `'${target.name}' is a ${existing.kind}.`);
      replaceProps(existing, resolveProperties(existing.kind, { ...propsFrom(existing.props), ...props }));
      if (authorizationRules !== undefined) existing.authorizationRules.splice(0, existing.authorizationRules.length, ...authorizationRules);
      return 200;
    }
    case 'subscription': {
      const topic = topicNamed(ctx, target.topic);
      const description = descriptionIn(content, 'SubscriptionDescription');
      const props = propertiesOf(description);
      const existing = topic.subscriptions.get(target.subscription.toLowerCase());
      if (!update) {
        if (existing !== undefined) throw new HttpError(409, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}' already exists.`);
        const defaultRule = description.DefaultRuleDescription;
        const rules = defaultRule === undefined ? undefined : [ruleOptionsFrom(target.subscription, defaultRule as Record<string, unknown>, '$Default')];
        ctx.broker.addSubscription(topic, target.subscription, props, rules, 'SubscriptionDescription');
        return 201;
      }
      if (existing === undefined) throw new HttpError(404, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}' could not be found.`);
      replaceProps(existing, resolveProperties('subscription', { ...propsFrom(existing.props), ...props, maxMessageSizeInBytes: topic.props.maxMessageSizeInBytes }));
      return 200;
    }
    case 'rule': {
      const subscription = subscriptionNamed(ctx, target.topic, target.subscription);
      const description = descriptionIn(content, 'RuleDescription');
      const rule = compileRule(ruleOptionsFrom(target.rule, description, target.rule));
      const index = subscription.rules.findIndex((r) => r.name.toLowerCase() === target.rule.toLowerCase());
      if (!update && index >= 0) throw new HttpError(409, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}/Rules/${target.rule}' already exists.`);
      if (update && index < 0) throw new HttpError(404, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}/Rules/${target.rule}' could not be found.`);
      const rules = [...subscription.rules];
      if (index >= 0) rules[index] = rule;
      else rules.push(rule);
      ctx.broker.replaceRules(subscription, rules);
      return update ? 200 : 201;
    }
    default:
      throw new HttpError(405, 'PUT is not supported on a list.');
  }
}

function ruleOptionsFrom(fallbackName: string, description: Record<string, unknown>, name: string): RuleOptions {
  const filter = (description.Filter ?? {}) as Record<string, unknown>;
  const type = text(filter['@_type']) ?? 'TrueFilter';
  const ruleName = text(description.Name) || name || fallbackName;
  switch (type) {
    case 'SqlFilter': {
      const expression = text(filter.SqlExpression);
      if (expression === undefined || expression === '') throw new HttpError(400, 'A SqlFilter needs a SqlExpression.');
      return { name: ruleName, sqlFilter: expression };
    }
    case 'CorrelationFilter': {
      const correlation: CorrelationFilter = {};
      for (const [key, element] of CORRELATION_FIELDS) {
        const value = text(filter[element]);
        if (value !== undefined && value !== '') (correlation as Record<string, string>)[key] = value;
      }
      return { name: ruleName, correlationFilter: correlation };
    }
    case 'FalseFilter':
      return { name: ruleName, matchAll: false };
    case 'TrueFilter':
      return { name: ruleName, matchAll: true };
    default:
      throw new HttpError(400, `Filter type '${type}' is not supported.`);
  }
}

function propsFrom(p: ResolvedEntityProperties): EntityProperties {
  return {
    lockDurationInMs: p.lockDurationInMs,
    maxDeliveryCount: p.maxDeliveryCount,
    ...(p.defaultMessageTimeToLiveInMs === undefined ? {} : { defaultMessageTimeToLiveInMs: p.defaultMessageTimeToLiveInMs }),
    deadLetteringOnMessageExpiration: p.deadLetteringOnMessageExpiration,
    requiresDuplicateDetection: p.requiresDuplicateDetection,
    duplicateDetectionHistoryTimeWindowInMs: p.duplicateDetectionHistoryTimeWindowInMs,
    requiresSession: p.requiresSession,
    ...(p.forwardTo === undefined ? {} : { forwardTo: p.forwardTo }),
    ...(p.forwardDeadLetteredMessagesTo === undefined ? {} : { forwardDeadLetteredMessagesTo: p.forwardDeadLetteredMessagesTo }),
    maxMessageSizeInBytes: p.maxMessageSizeInBytes,
  };
}

/** Updates in place: the entity and its stores share one properties object. */
function replaceProps(entity: { props: ResolvedEntityProperties }, next: ResolvedEntityProperties): void {
  Object.assign(entity.props, next);
}

// ---- DELETE ----

function remove(ctx: Ctx, target: Target): void {
  switch (target.kind) {
    case 'entity':
      queueOrTopic(ctx, target.name);
      ctx.broker.removeEntity(target.name);
      return;
    case 'subscription': {
      const subscription = subscriptionNamed(ctx, target.topic, target.subscription);
      ctx.broker.removeSubscription(subscription);
      return;
    }
    case 'rule': {
      const subscription = subscriptionNamed(ctx, target.topic, target.subscription);
      const rules = subscription.rules.filter((r) => r.name.toLowerCase() !== target.rule.toLowerCase());
      if (rules.length === subscription.rules.length) throw new HttpError(404, `The messaging entity '${target.topic}/Subscriptions/${target.subscription}/Rules/${target.rule}' could not be found.`);
      ctx.broker.replaceRules(subscription, rules);
      return;
    }
    default:
      throw new HttpError(405, 'DELETE is not supported on a list.');
  }
}
