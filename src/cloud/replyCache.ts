/**
 * The last good reply per store, operation type and payload, for types whose fallback is `cached`: what a real-time
 * query answers while the store's relay is down. Bounded per type by the policy, in entries (least recently used go
 * first) and in age (an expired reply is never served and is dropped when met).
 */
import type { JsonValue } from '../core/json.js';
import type { Operation } from '../core/operation.js';
import { operationPolicyFor, type Policy } from '../core/policy.js';

type Cacheable = Pick<Operation, 'storeId' | 'type' | 'payload'>;

interface CachedReply {
  reply: JsonValue;
  atInMs: number;
}

export interface ServedReply {
  reply: JsonValue;
  ageInMs: number;
}

/** JSON with sorted keys: equal payloads give equal cache keys. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export class ReplyCache {
  readonly #policy: Policy;
  readonly #now: () => number;
  /** Per operation type; a Map keeps insertion order, so the first key is the least recently used. */
  readonly #byType = new Map<string, Map<string, CachedReply>>();

  constructor(policy: Policy, now: () => number) {
    this.#policy = policy;
    this.#now = now;
  }

  #key(operation: Cacheable): string {
    return `${operation.storeId}\u0000${stableJson(operation.payload)}`;
  }

  /** Keeps the reply if the type's fallback serves cached replies. */
  remember(operation: Cacheable, reply: JsonValue): void {
    const policy = operationPolicyFor(this.#policy, operation.type);
    if (policy.fallback !== 'cached') return;
    let entries = this.#byType.get(operation.type);
    if (entries === undefined) {
      entries = new Map();
      this.#byType.set(operation.type, entries);
    }
    const key = this.#key(operation);
    entries.delete(key);
    entries.set(key, { reply, atInMs: this.#now() });
    while (entries.size > policy.maxCachedReplies) entries.delete(entries.keys().next().value!);
  }

  /** The cached reply if it is young enough; an expired one is dropped. */
  get(operation: Cacheable): ServedReply | undefined {
    const entries = this.#byType.get(operation.type);
    const key = this.#key(operation);
    const cached = entries?.get(key);
    if (entries === undefined || cached === undefined) return undefined;
    const ageInMs = this.#now() - cached.atInMs;
    if (ageInMs > operationPolicyFor(this.#policy, operation.type).cachedReplyMaxAgeInMs) {
      entries.delete(key);
      return undefined;
    }
    entries.delete(key);
    entries.set(key, cached);
    return { reply: cached.reply, ageInMs };
  }

  get size(): number {
    let size = 0;
    for (const entries of this.#byType.values()) size += entries.size;
    return size;
  }
}
