/**
 * Messages as the broker holds them: the sender's bare message kept byte-exact, plus broker state. The header and
 * message annotations are rebuilt for every delivery, peek and management answer.
 */
import { randomUUID } from 'node:crypto';
import {
  SECTION,
  compoundSpan,
  describedSection,
  encodeHeader,
  encodeInt,
  encodeList,
  encodeLong,
  encodeString,
  encodeSymbol,
  encodeTimestamp,
  mergeMapSection,
  skipValue,
  splitSections,
} from './amqpCodec.js';
import { decodeMessage, encodeJsValue, type DecodedMessage } from './rheaTypes.js';

export type MessageState = 'active' | 'deferred' | 'scheduled';

/** Broker-assigned annotations that the sender may not set and that are rebuilt on every delivery. */
const BROKER_ANNOTATIONS = new Set([
  'x-opt-sequence-number',
  'x-opt-enqueued-time',
  'x-opt-enqueue-sequence-number',
  'x-opt-locked-until',
  'x-opt-lock-token',
  'x-opt-message-state',
  'x-opt-deadletter-source',
]);

/** The parts of a message that survive a restart, as bytes. */
export interface MessageBody {
  durable: boolean;
  priority: number | undefined;
  ttl: number | undefined;
  /** The sender's message-annotations section, whole, or undefined. */
  annotations: Buffer | undefined;
  /** properties + application-properties + body + footer, byte-exact (application properties re-encoded if changed). */
  bare: Buffer;
  /** Offsets of the application-properties section within `bare`, when it has one. */
  appPropsStart: number;
  appPropsEnd: number;
}

export interface StoredMessage {
  seq: number;
  enqueuedAt: number;
  messageId: string;
  sessionId: string | undefined;
  body: MessageBody;
  state: MessageState;
  deliveryCount: number;
  scheduledAt: number | undefined;
  expiresAt: number | undefined;
  deadLetterSource: string | undefined;
  // Runtime only, never persisted:
  lockToken: string | undefined;
  lockedUntil: number;
  lockTimer: NodeJS.Timeout | undefined;
  queued: boolean;
  timer: NodeJS.Timeout | undefined;
}

/** What rules and broker logic need to know about a message, read once on arrival. */
export interface MessageFacts {
  messageId: string | undefined;
  sessionId: string | undefined;
  ttl: number | undefined;
  scheduledEnqueueTime: number | undefined;
  correlationId: string | undefined;
  to: string | undefined;
  subject: string | undefined;
  replyTo: string | undefined;
  replyToSessionId: string | undefined;
  contentType: string | undefined;
  applicationProperties: Record<string, unknown>;
}

export class InvalidMessageError extends Error {
  override readonly name = 'InvalidMessageError';
}

function idText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (typeof value === 'object' && 'value' in value) return idText((value).value);
  return JSON.stringify(value);
}

function toMs(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return value;
  return undefined;
}

export function factsOf(decoded: DecodedMessage): MessageFacts {
  const annotations = decoded.message_annotations ?? {};
  return {
    messageId: idText(decoded.message_id),
    sessionId: decoded.group_id ?? undefined,
    ttl: typeof decoded.ttl === 'number' ? decoded.ttl : undefined,
    scheduledEnqueueTime: toMs(annotations['x-opt-scheduled-enqueue-time']),
    correlationId: idText(decoded.correlation_id),
    to: decoded.to,
    subject: decoded.subject,
    replyTo: decoded.reply_to,
    replyToSessionId: decoded.reply_to_group_id,
    contentType: decoded.content_type,
    applicationProperties: decoded.application_properties ?? {},
  };
}

export interface IncomingMessage {
  body: MessageBody;
  facts: MessageFacts;
}

/** Parses one encoded message from a sender, assigning a message-id when it has none. */
export function parseIncoming(raw: Buffer): IncomingMessage {
  let decoded: DecodedMessage;
  let sections;
  try {
    sections = splitSections(raw);
    decoded = decodeMessage(raw);
  } catch (cause) {
    throw new InvalidMessageError(`the message could not be decoded: ${(cause as Error).message}`, { cause });
  }
  const facts = factsOf(decoded);
  let annotations: Buffer | undefined;
  let properties: Buffer | undefined;
  let appProps: Buffer | undefined;
  let tailStart = raw.length;
  for (const section of sections) {
    switch (section.code) {
      case SECTION.messageAnnotations:
        annotations = raw.subarray(section.start, section.end);
        break;
      case SECTION.properties:
        properties = raw.subarray(section.start, section.end);
        break;
      case SECTION.applicationProperties:
        appProps = raw.subarray(section.start, section.end);
        break;
      case SECTION.header:
      case SECTION.deliveryAnnotations:
        break;
      default:
        if (section.start < tailStart) tailStart = section.start;
    }
  }
  if (facts.messageId === undefined) {
    const id = randomUUID().replace(/-/g, '');
    properties = withMessageId(properties, id);
    facts.messageId = id;
  }
  const parts = [properties ?? Buffer.alloc(0)];
  if (appProps) parts.push(appProps);
  parts.push(raw.subarray(tailStart));
  const bare = Buffer.concat(parts);
  const appPropsStart = appProps ? (properties?.length ?? 0) : -1;
  return {
    body: {
      durable: decoded.durable === true,
      priority: typeof decoded.priority === 'number' ? decoded.priority : undefined,
      ttl: facts.ttl,
      annotations: annotations ? Buffer.from(annotations) : undefined,
      bare,
      appPropsStart,
      appPropsEnd: appProps ? appPropsStart + appProps.length : -1,
    },
    facts,
  };
}

/** Rewrites (or creates) the properties section with a message-id, keeping every other field's bytes. */
function withMessageId(properties: Buffer | undefined, id: string): Buffer {
  const idBytes = encodeString(id);
  if (properties === undefined) return describedSection(SECTION.properties, encodeList([idBytes]));
  const valueStart = properties[1] === 0x53 ? 3 : skipValue(properties, 1);
  const span = compoundSpan(properties, valueStart);
  const items: Buffer[] = [idBytes];
  if (span.count > 0) {
    const afterFirst = skipValue(properties, span.itemsStart);
    let position = afterFirst;
    for (let index = 1; index < span.count; index++) {
      const end = skipValue(properties, position);
      items.push(properties.subarray(position, end));
      position = end;
    }
  }
  return describedSection(SECTION.properties, encodeList(items));
}

/** Returns a body whose application properties carry `changes` (other entries keep their bytes). */
export function withApplicationProperties(body: MessageBody, changes: Record<string, unknown>): MessageBody {
  const entries = Object.entries(changes).filter(([, value]) => value !== undefined);
  if (entries.length === 0) return body;
  const encoded = entries.map(([key, value]) => [key, Buffer.concat([encodeString(key), encodeJsValue(value)])] as const);
  const original = body.appPropsStart >= 0 ? body.bare.subarray(body.appPropsStart, body.appPropsEnd) : undefined;
  const section = mergeMapSection(SECTION.applicationProperties, original, encoded);
  // Without application properties the new section goes right after the properties section.
  const start = body.appPropsStart >= 0 ? body.appPropsStart : propertiesLength(body.bare);
  const end = body.appPropsStart >= 0 ? body.appPropsEnd : start;
  const bare = Buffer.concat([body.bare.subarray(0, start), section, body.bare.subarray(end)]);
  return { ...body, bare, appPropsStart: start, appPropsEnd: start + section.length };
}

function propertiesLength(bare: Buffer): number {
  if (bare.length === 0) return 0;
  const sections = splitSections(bare);
  const first = sections[0];
  return first !== undefined && first.code === SECTION.properties ? first.end : 0;
}

export interface EncodeOptions {
  lockedUntil?: number;
  /** Include the message state annotation (peek and receive-by-sequence-number). */
  withState?: boolean;
}

const STATE_CODES: Record<MessageState, number> = { active: 0, deferred: 1, scheduled: 2 };

/** The message as sent to a receiver: rebuilt header and annotations, then the bare message. */
export function encodeForDelivery(message: StoredMessage, options: EncodeOptions = {}): Buffer {
  const { body } = message;
  const header = encodeHeader({
    durable: body.durable,
    priority: body.priority,
    ttl: body.ttl,
    firstAcquirer: message.deliveryCount === 0,
    deliveryCount: message.deliveryCount,
  });
  const extra: Array<readonly [string, Buffer]> = [
    ['x-opt-enqueued-time', Buffer.concat([encodeSymbol('x-opt-enqueued-time'), encodeTimestamp(message.enqueuedAt)])],
    ['x-opt-sequence-number', Buffer.concat([encodeSymbol('x-opt-sequence-number'), encodeLong(message.seq)])],
    [
      'x-opt-enqueue-sequence-number',
      Buffer.concat([encodeSymbol('x-opt-enqueue-sequence-number'), encodeLong(message.seq)]),
    ],
  ];
  if (options.lockedUntil !== undefined) {
    extra.push(['x-opt-locked-until', Buffer.concat([encodeSymbol('x-opt-locked-until'), encodeTimestamp(options.lockedUntil)])]);
  }
  if (options.withState === true || message.state !== 'active') {
    extra.push(['x-opt-message-state', Buffer.concat([encodeSymbol('x-opt-message-state'), encodeInt(STATE_CODES[message.state])])]);
  }
  if (message.deadLetterSource !== undefined) {
    extra.push([
      'x-opt-deadletter-source',
      Buffer.concat([encodeSymbol('x-opt-deadletter-source'), encodeString(message.deadLetterSource)]),
    ]);
  }
  const annotations = mergeMapSection(SECTION.messageAnnotations, body.annotations, extra, (key) => BROKER_ANNOTATIONS.has(key));
  return Buffer.concat([header, annotations, body.bare]);
}
