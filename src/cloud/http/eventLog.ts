/**
 * The event stream's window: the last events the API saw, each framed once as a server-sent event with an `id:`, so
 * a client that reconnects with `Last-Event-ID` gets what it missed. Bounded in events and in bytes (oldest first
 * out). Ids are `<epoch>-<sequence>`, the epoch drawn when the log is made: an id from another run of the API, one
 * older than the window, or one never given is answered with a `reset` event instead, which says events were missed
 * and carries the id to resume from.
 */
import { randomBytes } from 'node:crypto';
import { Subject, type Observable } from 'rxjs';

export const DEFAULT_EVENT_REPLAY_WINDOW = 1_000;
export const DEFAULT_EVENT_REPLAY_MAX_BYTES = 4 * 1024 * 1024;

/** One event as written on every stream: `id:`, `event:` and `data:` lines. */
export interface LoggedEvent {
  sequence: number;
  frame: string;
}

export interface EventLogOptions {
  /** Events kept for replay; default 1,000. */
  maxEvents?: number;
  /** Bytes of framed events kept for replay; default 4 MiB. */
  maxBytes?: number;
  /** Tells this log's ids from another's (a restarted API); default random. */
  epoch?: string;
}

/** What a (re)connecting client is sent before the live events. */
export interface Resumption {
  /** Frames the client missed, oldest first. */
  frames: string[];
  /** Set when the client's Last-Event-ID cannot be resumed from: send it as a `reset` event, frames is empty. */
  reset?: { reason: 'unknown-id' | 'too-old'; lastEventId: string; resumeFrom: string };
}

export class EventLog {
  readonly epoch: string;
  readonly #maxEvents: number;
  readonly #maxBytes: number;
  readonly #events: LoggedEvent[] = [];
  /** Index of the oldest kept event in #events (dropping from the front without shifting every time). */
  #head = 0;
  #bytes = 0;
  #sequence = 0;
  readonly #live = new Subject<LoggedEvent>();

  constructor(options: EventLogOptions = {}) {
    const maxEvents = options.maxEvents ?? DEFAULT_EVENT_REPLAY_WINDOW;
    const maxBytes = options.maxBytes ?? DEFAULT_EVENT_REPLAY_MAX_BYTES;
    if (!Number.isSafeInteger(maxEvents) || maxEvents < 0) throw new RangeError(`event replay window must be a whole number of events, 0 or more, got ${maxEvents}`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`event replay bytes must be a whole number, 0 or more, got ${maxBytes}`);
    this.epoch = options.epoch ?? randomBytes(6).toString('hex');
    if (!/^[0-9a-z]+$/i.test(this.epoch)) throw new TypeError(`event log epoch must be letters and digits, got "${this.epoch}"`);
    this.#maxEvents = maxEvents;
    this.#maxBytes = maxBytes;
  }

  /** Every event appended from now on. Completes on close. */
  get live$(): Observable<LoggedEvent> {
    return this.#live.asObservable();
  }

  /** Events kept for replay. */
  get size(): number {
    return this.#events.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The id of the newest event, or `<epoch>-0` before any. */
  get lastId(): string {
    return this.#idOf(this.#sequence);
  }

  append(event: string, data: unknown): LoggedEvent {
    this.#sequence += 1;
    const logged = { sequence: this.#sequence, frame: `id: ${this.#idOf(this.#sequence)}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n` };
    this.#events.push(logged);
    this.#bytes += Buffer.byteLength(logged.frame, 'utf8');
    while (this.size > 0 && (this.size > this.#maxEvents || this.#bytes > this.#maxBytes)) {
      this.#bytes -= Buffer.byteLength(this.#events[this.#head]!.frame, 'utf8');
      this.#head += 1;
    }
    if (this.#head > 1_024 && this.#head * 2 > this.#events.length) {
      this.#events.splice(0, this.#head);
      this.#head = 0;
    }
    this.#live.next(logged);
    return logged;
  }

  /** What a client that last saw `lastEventId` missed; nothing for a client that names no id (it starts live). */
  since(lastEventId: string | undefined): Resumption {
    if (lastEventId === undefined) return { frames: [] };
    const sequence = this.#sequenceOf(lastEventId);
    if (sequence === undefined || sequence > this.#sequence) return this.#reset('unknown-id', lastEventId);
    const oldest = this.size === 0 ? this.#sequence + 1 : this.#events[this.#head]!.sequence;
    if (sequence < oldest - 1) return this.#reset('too-old', lastEventId);
    const frames: string[] = [];
    for (let index = this.#head + (sequence - (oldest - 1)); index < this.#events.length; index += 1) frames.push(this.#events[index]!.frame);
    return { frames };
  }

  close(): void {
    this.#live.complete();
  }

  #reset(reason: 'unknown-id' | 'too-old', lastEventId: string): Resumption {
    return { frames: [], reset: { reason, lastEventId: lastEventId.slice(0, 100), resumeFrom: this.lastId } };
  }

  #idOf(sequence: number): string {
    return `${this.epoch}-${sequence}`;
  }

  #sequenceOf(id: string): number | undefined {
    const match = /^([0-9a-z]+)-(\d{1,15})$/i.exec(id.trim());
    if (match === null || match[1] !== this.epoch) return undefined;
    return Number(match[2]);
  }
}

/** The `reset` event a stream sends for an id it cannot resume from; its `id:` is where the client resumes next time. */
export function resetFrame(reset: NonNullable<Resumption['reset']>): string {
  return `id: ${reset.resumeFrom}\nevent: reset\ndata: ${JSON.stringify(reset)}\n\n`;
}
