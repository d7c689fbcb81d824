/**
 * Every operation's final outcome as the cloud learns it, once per operation id: from the publish that returned with
 * it (a relay answer, or a queued reply that came while the publisher waited), or from the store's reply in the inbox
 * when the publish had returned without it (late). A store replies to every operation it executes or dead-letters,
 * so a relay call answered in time is followed by the same outcome through the inbox; a bounded set of recently
 * reported ids keeps that second one from being reported again.
 */
import { isPermanentFailure, isStorelinkErrorCode } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { ReplyBody } from '../core/storeMessage.js';
import type { Delivery } from './deliver.js';

export const OUTCOME_KINDS = ['done', 'rejected', 'failed'] as const;
export type OutcomeKind = (typeof OUTCOME_KINDS)[number];

/** What the store set an operation aside with: dead-lettered unexecuted, or executed with a result too large to send. */
export interface OutcomeFailure {
  code: string;
  message: string;
  executed: boolean;
}

export interface OperationOutcome {
  operationId: string;
  /** The store that reported it. */
  storeId: string;
  type: string;
  /** `done`: executed, with `reply`; `rejected`: the handler refused (`rejection`); `failed`: see `failure`. */
  outcome: OutcomeKind;
  reply?: JsonValue;
  rejection?: { code: string; message: string };
  failure?: OutcomeFailure;
  /** How the cloud learnt it: the relay call's answer, or the store's reply through the queue (the cloud inbox). */
  channel: 'relay' | 'queue';
  /** True when it came after the publish had returned without it (or for an operation nobody waited for). */
  late: boolean;
  /** When the cloud learnt it (ISO 8601, the dispatcher's clock). */
  at: string;
}

/** How many reported operation ids are remembered to drop the second report of the same outcome. */
export const DEFAULT_MAX_RECENT_OUTCOMES = 10_000;

type Learnt = Omit<OperationOutcome, 'late' | 'at'>;

interface InFlight {
  /** The store it was published to. */
  storeId: string;
  /** Publishes of this id under way (a resend may overlap the first). */
  count: number;
  /** An outcome from the inbox while a publish was under way: reported when the publish returns without one. */
  held?: Learnt;
}

export interface OutcomeTrackerOptions {
  emit: (outcome: OperationOutcome) => void;
  now: () => number;
  maxRecent?: number;
}

/** The outcome a delivery carries, if the store gave it one: not `queued`, not a fallback's refusal or cached reply. */
export function outcomeOfDelivery(delivery: Pick<Delivery, 'operationId' | 'storeId' | 'type' | 'channel' | 'outcome' | 'reply' | 'rejection' | 'failure'>): Learnt | undefined {
  const { operationId, storeId, type, channel } = delivery;
  if (channel === null) return undefined;
  const base = { operationId, storeId, type, channel };
  if (delivery.outcome === 'delivered') return { ...base, outcome: 'done', reply: delivery.reply ?? null };
  if (delivery.outcome === 'failed' && delivery.failure !== undefined) return { ...base, outcome: 'failed', failure: delivery.failure };
  if (delivery.outcome !== 'rejected' || delivery.rejection === undefined) return undefined;
  const { code } = delivery.rejection;
  if (channel === 'queue' || code === 'OPERATION_REJECTED') return { ...base, outcome: 'rejected', rejection: delivery.rejection };
  // The store's other answers on the relay: final when the operation can never run (expired, invalid, misrouted…);
  // the rest (a handler crash, a type not exposed) leave it unexecuted and open to a resend.
  if (isStorelinkErrorCode(code) && isPermanentFailure(code)) {
    return { ...base, outcome: 'failed', failure: { ...delivery.rejection, executed: false } };
  }
  return undefined;
}

/** The outcome a store's reply carries. */
export function outcomeOfReply(message: { storeId: string; type: string; correlationId: string }, body: ReplyBody): Learnt {
  const base = { operationId: message.correlationId, storeId: message.storeId, type: message.type, channel: 'queue' as const };
  if (body.outcome === 'done') return { ...base, outcome: 'done', reply: body.result };
  if (body.outcome === 'rejected') return { ...base, outcome: 'rejected', rejection: body.error };
  return { ...base, outcome: 'failed', failure: { ...body.error, executed: body.executed } };
}

export class OutcomeTracker {
  readonly #emit: (outcome: OperationOutcome) => void;
  readonly #now: () => number;
  readonly #maxRecent: number;
  readonly #inFlight = new Map<string, InFlight>();
  /** Reported ids with their store and whether they came late, oldest first (a Map keeps insertion order). */
  readonly #reported = new Map<string, { storeId: string; late: boolean }>();
  /**
   * Ids whose publish returned without their outcome (queued), with the store they went to, oldest first and as
   * bounded as #reported: a late reply is checked against it, so only that store's reply reports the outcome.
   */
  readonly #open = new Map<string, string>();

  constructor(options: OutcomeTrackerOptions) {
    const maxRecent = options.maxRecent ?? DEFAULT_MAX_RECENT_OUTCOMES;
    if (!Number.isSafeInteger(maxRecent) || maxRecent < 1) throw new RangeError(`OutcomeTracker: maxRecent must be a positive whole number, got ${maxRecent}`);
    this.#emit = options.emit;
    this.#now = options.now;
    this.#maxRecent = maxRecent;
  }

  /** A publish of this id to store `storeId` starts: an outcome arriving meanwhile waits for it to return. */
  began(operationId: string, storeId: string): void {
    const entry = this.#inFlight.get(operationId);
    if (entry === undefined) this.#inFlight.set(operationId, { storeId, count: 1 });
    else entry.count += 1;
  }

  /**
   * The store an operation id was published to, as far as this tracker remembers (in flight, awaiting its outcome,
   * or recently reported); undefined for an id it never saw or has forgotten.
   */
  storeOf(operationId: string): string | undefined {
    return this.#inFlight.get(operationId)?.storeId ?? this.#open.get(operationId) ?? this.#reported.get(operationId)?.storeId;
  }

  /** True while an outcome from the inbox waits for its publish to return (reported then, not yet). */
  holds(operationId: string): boolean {
    return this.#inFlight.get(operationId)?.held !== undefined;
  }

  /** A publish returned: with its delivery, or without one (it threw). */
  returned(operationId: string, delivery: Delivery | undefined): void {
    const entry = this.#inFlight.get(operationId);
    if (entry !== undefined) {
      entry.count -= 1;
      if (entry.count <= 0) this.#inFlight.delete(operationId);
    }
    const learnt = delivery === undefined ? undefined : outcomeOfDelivery(delivery);
    if (learnt !== undefined) this.#report(learnt, false);
    else if (entry?.held !== undefined && entry.count <= 0) this.#report(entry.held, true);
    else if (entry !== undefined && entry.count <= 0 && !this.#reported.has(operationId)) {
      this.#open.delete(operationId);
      this.#open.set(operationId, entry.storeId);
      while (this.#open.size > this.#maxRecent) this.#open.delete(this.#open.keys().next().value!);
    }
  }

  /**
   * A store's reply came through the inbox. Returns the outcome it carries, as the cloud application is to be handed
   * it (at least once: also when this tracker had already reported it, since this reply may be the only durable copy);
   * `late` unless a publish of the id is still under way here or reported it on return.
   */
  replied(message: { storeId: string; type: string; correlationId: string }, body: ReplyBody): OperationOutcome {
    const learnt = outcomeOfReply(message, body);
    const at = new Date(this.#now()).toISOString();
    const reported = this.#reported.get(learnt.operationId);
    if (reported !== undefined) return { ...learnt, late: reported.late, at };
    const entry = this.#inFlight.get(learnt.operationId);
    if (entry !== undefined) {
      entry.held = learnt;
      return { ...learnt, late: false, at };
    }
    return this.#report(learnt, true);
  }

  /** Operation ids remembered as reported. */
  get recentCount(): number {
    return this.#reported.size;
  }

  #report(learnt: Learnt, late: boolean): OperationOutcome {
    const outcome: OperationOutcome = { ...learnt, late, at: new Date(this.#now()).toISOString() };
    if (this.#reported.has(learnt.operationId)) return outcome;
    this.#open.delete(learnt.operationId);
    this.#reported.set(learnt.operationId, { storeId: learnt.storeId, late });
    while (this.#reported.size > this.#maxRecent) this.#reported.delete(this.#reported.keys().next().value!);
    this.#emit(outcome);
    return outcome;
  }
}
