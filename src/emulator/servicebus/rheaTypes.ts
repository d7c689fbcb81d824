/**
 * rhea's published typings miss several members the emulator relies on (the codec's Reader/Writer, a link's credit,
 * a delivery's settlement fields). These narrow views describe exactly what is used, in one place.
 */
import rhea from 'rhea';

export interface RheaTyped {
  type: { name: string; typecode: number };
  value: unknown;
  descriptor?: unknown;
}

interface RheaWriter {
  write(value: RheaTyped): void;
  toBuffer(): Buffer;
}

interface RheaReader {
  read(): RheaTyped;
  remaining(): number;
}

export interface RheaTypes {
  Writer: new () => RheaWriter;
  Reader: new (buffer: Buffer) => RheaReader;
  wrap(value: unknown): RheaTyped;
  wrap_string(value: string): RheaTyped;
  wrap_symbol(value: string): RheaTyped;
  wrap_uuid(value: Buffer): RheaTyped;
  wrap_long(value: number | Buffer): RheaTyped;
  wrap_int(value: number): RheaTyped;
  wrap_uint(value: number): RheaTyped;
  wrap_timestamp(value: number): RheaTyped;
  wrap_binary(value: Buffer): RheaTyped;
  wrap_boolean(value: boolean): RheaTyped;
  wrap_map(value: object, keyWrapper?: (key: string) => RheaTyped): RheaTyped;
  wrap_list(value: unknown[]): RheaTyped;
  wrap_array(value: unknown[], code: number, descriptor?: unknown): RheaTyped;
  wrap_described(value: unknown, descriptor: number | string): RheaTyped;
  described(descriptor: RheaTyped, value: RheaTyped): RheaTyped;
  wrap_ulong(value: number): RheaTyped;
  Null(): RheaTyped;
  unwrap(value: unknown, leaveDescribed?: boolean): unknown;
}

export const rheaTypes = rhea.types as unknown as RheaTypes;

/** Encodes one JavaScript value the way rhea would (strings, numbers, booleans, Dates, Buffers, typed values). */
export function encodeJsValue(value: unknown): Buffer {
  const writer = new rheaTypes.Writer();
  writer.write(isTyped(value) ? value : rheaTypes.wrap(value));
  return writer.toBuffer();
}

export function isTyped(value: unknown): value is RheaTyped {
  return typeof value === 'object' && value !== null && 'type' in value && 'value' in value && typeof (value as RheaTyped).type === 'object';
}

export interface DecodedMessage {
  durable?: boolean;
  priority?: number;
  ttl?: number;
  message_annotations?: Record<string, unknown>;
  message_id?: unknown;
  to?: string;
  subject?: string;
  reply_to?: string;
  correlation_id?: unknown;
  content_type?: string;
  absolute_expiry_time?: Date;
  creation_time?: Date;
  group_id?: string;
  reply_to_group_id?: string;
  application_properties?: Record<string, unknown>;
  body?: unknown;
}

export function decodeMessage(bytes: Buffer): DecodedMessage {
  return rhea.message.decode(bytes) as unknown as DecodedMessage;
}

/** rhea link internals used by the emulator: credit accounting, settlement, drain answer, attach fields. */
export interface RheaLinkView {
  name: string;
  credit: number;
  delivery_count: number;
  issue_flow: boolean;
  _draining: boolean;
  _get_drain: () => boolean;
  local: { attach: Record<string, unknown>; handle: number };
  remote: { attach?: Record<string, unknown> };
  state: { local_open: boolean; open_requests: number };
  session: RheaSessionView;
  connection: { _register(): void };
}

export interface RheaSessionView {
  outgoing: { available(): number; next_delivery_id: number; next_pending_delivery: number };
  on_transfer: (frame: { performative: { message_format?: number; handle?: number; more?: boolean }; payload?: Buffer }) => void;
  remote: { handles: Record<number, unknown> };
}

export interface RheaDeliveryView {
  id: number;
  tag: Buffer;
  format?: number;
  settled: boolean;
  remote_settled: boolean;
  remote_state?: { constructor: { composite_type?: string }; error?: unknown; delivery_failed?: boolean; undeliverable_here?: boolean; message_annotations?: Record<string, unknown> } & Record<string, unknown>;
  update(settled: boolean, state?: unknown): void;
}
