/**
 * Just enough of the AMQP 1.0 type system to handle messages as bytes: the emulator keeps the bare message (properties,
 * application properties, body, footer) exactly as the sender encoded it and only rebuilds the header and the message
 * annotations on the way out. Decoding of values for rules and management requests goes through rhea.
 */

export const SECTION = {
  header: 0x70,
  deliveryAnnotations: 0x71,
  messageAnnotations: 0x72,
  properties: 0x73,
  applicationProperties: 0x74,
  data: 0x75,
  sequence: 0x76,
  value: 0x77,
  footer: 0x78,
} as const;

const SYMBOLIC_SECTIONS: Record<string, number> = {
  'amqp:header:list': SECTION.header,
  'amqp:delivery-annotations:map': SECTION.deliveryAnnotations,
  'amqp:message-annotations:map': SECTION.messageAnnotations,
  'amqp:properties:list': SECTION.properties,
  'amqp:application-properties:map': SECTION.applicationProperties,
  'amqp:data:binary': SECTION.data,
  'amqp:amqp-sequence:list': SECTION.sequence,
  'amqp:value:*': SECTION.value,
  'amqp:footer:map': SECTION.footer,
};

export class AmqpDecodeError extends Error {
  override readonly name = 'AmqpDecodeError';
}

function need(buffer: Buffer, end: number): void {
  if (end > buffer.length) throw new AmqpDecodeError(`truncated AMQP value: need ${end} bytes, have ${buffer.length}`);
}

/** The offset just after the value that starts at `offset`. */
export function skipValue(buffer: Buffer, offset: number): number {
  need(buffer, offset + 1);
  const code = buffer[offset]!;
  if (code === 0x00) {
    return skipValue(buffer, skipValue(buffer, offset + 1));
  }
  let end: number;
  switch (code >> 4) {
    case 0x4:
      end = offset + 1;
      break;
    case 0x5:
      end = offset + 2;
      break;
    case 0x6:
      end = offset + 3;
      break;
    case 0x7:
      end = offset + 5;
      break;
    case 0x8:
      end = offset + 9;
      break;
    case 0x9:
      end = offset + 17;
      break;
    case 0xa:
    case 0xc:
    case 0xe:
      need(buffer, offset + 2);
      end = offset + 2 + buffer[offset + 1]!;
      break;
    case 0xb:
    case 0xd:
    case 0xf:
      need(buffer, offset + 5);
      end = offset + 5 + buffer.readUInt32BE(offset + 1);
      break;
    default:
      throw new AmqpDecodeError(`unknown AMQP type code 0x${code.toString(16)} at ${offset}`);
  }
  need(buffer, end);
  return end;
}

/** Reads a ulong or symbol descriptor; returns the section code (or -1 when unknown) and where the value starts. */
function readDescriptor(buffer: Buffer, offset: number): { code: number; valueStart: number } {
  need(buffer, offset + 2);
  const type = buffer[offset + 1]!;
  if (type === 0x53) {
    need(buffer, offset + 3);
    return { code: buffer[offset + 2]!, valueStart: offset + 3 };
  }
  if (type === 0x80) {
    need(buffer, offset + 10);
    const high = buffer.readUInt32BE(offset + 2);
    const low = buffer.readUInt32BE(offset + 6);
    return { code: high === 0 ? low : -1, valueStart: offset + 10 };
  }
  if (type === 0x44) return { code: 0, valueStart: offset + 2 };
  if (type === 0xa3 || type === 0xb3) {
    const end = skipValue(buffer, offset + 1);
    const text = readString(buffer, offset + 1);
    return { code: SYMBOLIC_SECTIONS[text] ?? -1, valueStart: end };
  }
  throw new AmqpDecodeError(`unsupported section descriptor type 0x${type.toString(16)}`);
}

export interface SectionSpan {
  code: number;
  /** Start of the section (its 0x00 descriptor byte). */
  start: number;
  /** Start of the section's value. */
  valueStart: number;
  end: number;
}

export function splitSections(buffer: Buffer): SectionSpan[] {
  const sections: SectionSpan[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    if (buffer[offset] !== 0x00) throw new AmqpDecodeError(`expected a described message section at ${offset}`);
    const { code, valueStart } = readDescriptor(buffer, offset);
    if (code < 0) throw new AmqpDecodeError(`unknown message section descriptor at ${offset}`);
    const end = skipValue(buffer, valueStart);
    sections.push({ code, start: offset, valueStart, end });
    offset = end;
  }
  return sections;
}

/** Reads a string, symbol or binary value as text. */
export function readString(buffer: Buffer, offset: number): string {
  const code = buffer[offset]!;
  if (code === 0xa1 || code === 0xa3 || code === 0xa0) {
    return buffer.toString('utf8', offset + 2, offset + 2 + buffer[offset + 1]!);
  }
  if (code === 0xb1 || code === 0xb3 || code === 0xb0) {
    return buffer.toString('utf8', offset + 5, offset + 5 + buffer.readUInt32BE(offset + 1));
  }
  throw new AmqpDecodeError(`expected a string at ${offset}, got type 0x${code.toString(16)}`);
}

/** The payload of a binary value (Data section bodies). */
export function readBinary(buffer: Buffer, offset: number): Buffer {
  const code = buffer[offset]!;
  if (code === 0xa0) return buffer.subarray(offset + 2, offset + 2 + buffer[offset + 1]!);
  if (code === 0xb0) return buffer.subarray(offset + 5, offset + 5 + buffer.readUInt32BE(offset + 1));
  throw new AmqpDecodeError(`expected binary at ${offset}, got type 0x${code.toString(16)}`);
}

export interface CompoundSpan {
  count: number;
  /** Where the first element starts. */
  itemsStart: number;
  end: number;
}

/** Locates the elements of a list or map value. */
export function compoundSpan(buffer: Buffer, offset: number): CompoundSpan {
  const code = buffer[offset]!;
  const end = skipValue(buffer, offset);
  if (code === 0x45) return { count: 0, itemsStart: offset + 1, end };
  if (code === 0xc0 || code === 0xc1) return { count: buffer[offset + 2]!, itemsStart: offset + 3, end };
  if (code === 0xd0 || code === 0xd1) return { count: buffer.readUInt32BE(offset + 5), itemsStart: offset + 9, end };
  throw new AmqpDecodeError(`expected a list or map at ${offset}, got type 0x${code.toString(16)}`);
}

/** Key/value pairs of an encoded map, as raw byte ranges, with the key read as text when it is a string or symbol. */
export interface MapEntrySpan {
  key: string | undefined;
  start: number;
  end: number;
}

export function mapEntries(buffer: Buffer, offset: number): MapEntrySpan[] {
  const span = compoundSpan(buffer, offset);
  const entries: MapEntrySpan[] = [];
  let position = span.itemsStart;
  for (let index = 0; index + 1 < span.count; index += 2) {
    const code = buffer[position]!;
    const key = code === 0xa1 || code === 0xa3 || code === 0xb1 || code === 0xb3 ? readString(buffer, position) : undefined;
    const valueStart = skipValue(buffer, position);
    const end = skipValue(buffer, valueStart);
    entries.push({ key, start: position, end });
    position = end;
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding

export function encodeNull(): Buffer {
  return Buffer.from([0x40]);
}

export function encodeBoolean(value: boolean): Buffer {
  return Buffer.from([value ? 0x41 : 0x42]);
}

export function encodeUint(value: number): Buffer {
  if (value === 0) return Buffer.from([0x43]);
  if (value < 256) return Buffer.from([0x52, value]);
  const out = Buffer.alloc(5);
  out[0] = 0x70;
  out.writeUInt32BE(value >>> 0, 1);
  return out;
}

export function encodeInt(value: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = 0x71;
  out.writeInt32BE(value, 1);
  return out;
}

function encode64(code: number, value: number | bigint): Buffer {
  const out = Buffer.alloc(9);
  out[0] = code;
  out.writeBigInt64BE(BigInt(value), 1);
  return out;
}

export function encodeLong(value: number | bigint): Buffer {
  return encode64(0x81, value);
}

export function encodeTimestamp(ms: number): Buffer {
  return encode64(0x83, Math.trunc(ms));
}

function encodeVariable(shortCode: number, longCode: number, bytes: Buffer): Buffer {
  if (bytes.length < 256) {
    const head = Buffer.from([shortCode, bytes.length]);
    return Buffer.concat([head, bytes]);
  }
  const head = Buffer.alloc(5);
  head[0] = longCode;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

export function encodeString(value: string): Buffer {
  return encodeVariable(0xa1, 0xb1, Buffer.from(value, 'utf8'));
}

export function encodeSymbol(value: string): Buffer {
  return encodeVariable(0xa3, 0xb3, Buffer.from(value, 'ascii'));
}

/** A list (list32) of already-encoded elements. */
export function encodeList(items: readonly Buffer[]): Buffer {
  if (items.length === 0) return Buffer.from([0x45]);
  const body = Buffer.concat(items);
  const head = Buffer.alloc(9);
  head[0] = 0xd0;
  head.writeUInt32BE(body.length + 4, 1);
  head.writeUInt32BE(items.length, 5);
  return Buffer.concat([head, body]);
}

/** A map (map32) from already-encoded key/value byte runs; `count` is the number of keys plus values. */
export function encodeMapRaw(entries: readonly Buffer[], count: number): Buffer {
  const body = Buffer.concat(entries);
  const head = Buffer.alloc(9);
  head[0] = 0xd1;
  head.writeUInt32BE(body.length + 4, 1);
  head.writeUInt32BE(count, 5);
  return Buffer.concat([head, body]);
}

export function describedSection(code: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x00, 0x53, code]), value]);
}

export interface HeaderFields {
  durable: boolean;
  priority: number | undefined;
  ttl: number | undefined;
  firstAcquirer: boolean;
  deliveryCount: number;
}

export function encodeHeader(fields: HeaderFields): Buffer {
  const items = [
    encodeBoolean(fields.durable),
    fields.priority === undefined ? encodeNull() : Buffer.from([0x50, fields.priority & 0xff]),
    fields.ttl === undefined ? encodeNull() : encodeUint(fields.ttl),
    encodeBoolean(fields.firstAcquirer),
    encodeUint(fields.deliveryCount),
  ];
  return describedSection(SECTION.header, encodeList(items));
}

/**
 * Builds a map section from extra entries (key text, encoded key+value bytes) and the raw entries of an original
 * section, dropping original entries whose key is overridden or listed in `drop`.
 */
export function mergeMapSection(
  code: number,
  original: Buffer | undefined,
  extra: ReadonlyArray<readonly [string, Buffer]>,
  drop?: (key: string) => boolean,
): Buffer {
  const parts: Buffer[] = [];
  let count = 0;
  const overridden = new Set(extra.map(([key]) => key));
  for (const [, bytes] of extra) {
    parts.push(bytes);
    count += 2;
  }
  if (original !== undefined) {
    const valueStart = original[1] === 0x53 ? 3 : readDescriptor(original, 0).valueStart;
    for (const entry of mapEntries(original, valueStart)) {
      if (entry.key !== undefined && (overridden.has(entry.key) || drop?.(entry.key) === true)) continue;
      parts.push(original.subarray(entry.start, entry.end));
      count += 2;
    }
  }
  return describedSection(code, encodeMapRaw(parts, count));
}

/** .NET GUID byte order: the first three groups are byte-swapped. The swap is its own inverse. */
export function swapGuidBytes(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  out[0] = bytes[3]!;
  out[1] = bytes[2]!;
  out[2] = bytes[1]!;
  out[3] = bytes[0]!;
  out[4] = bytes[5]!;
  out[5] = bytes[4]!;
  out[6] = bytes[7]!;
  out[7] = bytes[6]!;
  return out;
}

export function uuidToBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

export function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** .NET ticks (100 ns since 0001-01-01) for a Unix time in ms. */
export function toDotNetTicks(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * 10000n + 621355968000000000n;
}
