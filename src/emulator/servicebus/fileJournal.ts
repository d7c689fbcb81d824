/**
 * Durability for the emulator: an append-only journal of idempotent records (JSON lines), group-committed, plus a
 * periodic snapshot that starts a new journal generation. Records carry absolute values (the whole message, or its new
 * delivery count and state), so replaying a record that the snapshot already contains is harmless.
 *
 * Files in `dataDir`: `snapshot-<gen>.json` (absent for generation 0) and `journal-<gen>.log`. Recovery loads the newest
 * complete snapshot and replays its generation's journal, ignoring a torn last line.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Broker, Journal, MessageStore } from './broker.js';
import type { MessageState, StoredMessage } from './message.js';
import { compileRule, ruleOptionsOf } from './broker.js';
import type { EntityProperties, RuleOptions } from './options.js';

interface SerializedMessage {
  q: number;
  e: number;
  i: string;
  g?: string;
  st: MessageState;
  c: number;
  sa?: number;
  x?: number;
  dl?: string;
  d: boolean;
  pr?: number;
  t?: number;
  a?: string;
  r: string;
  as: number;
  ae: number;
}

type JournalRecord =
  | { t: 'q'; n: string; p: EntityProperties }
  | { t: 'p'; s: string; m: SerializedMessage }
  | { t: 'u'; s: string; q: number; c: number; st: MessageState; sa?: number }
  | { t: 'd'; s: string; q: number }
  | { t: 'ss'; s: string; i: string; v: string | null }
  | { t: 'id'; e: string; i: string; at: number }
  | { t: 'r'; s: string; rules: RuleOptions[] };

interface Snapshot {
  gen: number;
  queues: Array<{ n: string; p: EntityProperties }>;
  /** Rules of subscriptions changed through `$management`, by subscription path. */
  rules?: Record<string, RuleOptions[]>;
  /** Duplicate-detection history per queue or topic: message id -> accepted at. */
  seen?: Record<string, Record<string, number>>;
  stores: Record<string, { next: number; messages: SerializedMessage[]; sessions: Record<string, string> }>;
}

function serialize(message: StoredMessage): SerializedMessage {
  const { body } = message;
  const out: SerializedMessage = {
    q: message.seq,
    e: message.enqueuedAt,
    i: message.messageId,
    st: message.state,
    c: message.deliveryCount,
    d: body.durable,
    r: body.bare.toString('base64'),
    as: body.appPropsStart,
    ae: body.appPropsEnd,
  };
  if (message.sessionId !== undefined) out.g = message.sessionId;
  if (message.scheduledAt !== undefined) out.sa = message.scheduledAt;
  if (message.expiresAt !== undefined) out.x = message.expiresAt;
  if (message.deadLetterSource !== undefined) out.dl = message.deadLetterSource;
  if (body.priority !== undefined) out.pr = body.priority;
  if (body.ttl !== undefined) out.t = body.ttl;
  if (body.annotations !== undefined) out.a = body.annotations.toString('base64');
  return out;
}

function deserialize(m: SerializedMessage): StoredMessage {
  return {
    seq: m.q,
    enqueuedAt: m.e,
    messageId: m.i,
    sessionId: m.g,
    body: {
      durable: m.d,
      priority: m.pr,
      ttl: m.t,
      annotations: m.a === undefined ? undefined : Buffer.from(m.a, 'base64'),
      bare: Buffer.from(m.r, 'base64'),
      appPropsStart: m.as,
      appPropsEnd: m.ae,
    },
    state: m.st,
    deliveryCount: m.c,
    scheduledAt: m.sa,
    expiresAt: m.x,
    deadLetterSource: m.dl,
    lockToken: undefined,
    lockedUntil: 0,
    lockTimer: undefined,
    queued: false,
    timer: undefined,
  };
}

export interface FileJournalOptions {
  syncWrites: boolean;
  /** Start a new generation once the journal has this many bytes and at least twice the live data; default 64 MiB. */
  compactAfterBytes?: number;
}

export interface FileJournal extends Journal {
  close(): Promise<void>;
  /** The current generation (for tests). */
  readonly generation: number;
}

interface Batch {
  lines: string[];
  waiters: Array<{ resolve: () => void; reject: (error: Error) => void }>;
}

class FileJournalImpl implements FileJournal {
  private batch: Batch = { lines: [], waiters: [] };
  private handle: fs.FileHandle | undefined;
  private writing = false;
  private scheduled = false;
  private bytesInGeneration = 0;
  /** Size of the newest snapshot, which sets when the next compaction is worth it. */
  lastSnapshotBytes = 0;
  private failed: Error | undefined;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | undefined;
  private readonly autoQueues: Array<{ n: string; p: EntityProperties }> = [];
  private readonly changedRules = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly broker: Broker,
    private readonly options: FileJournalOptions,
    public generation: number,
  ) {}

  async start(): Promise<void> {
    this.handle = await fs.open(this.journalPath(this.generation), 'a');
    this.bytesInGeneration = (await this.handle.stat()).size;
  }

  private journalPath(gen: number): string {
    return path.join(this.dir, `journal-${gen}.log`);
  }

  private snapshotPath(gen: number): string {
    return path.join(this.dir, `snapshot-${gen}.json`);
  }

  private record(record: JournalRecord): void {
    if (this.closed) return;
    this.batch.lines.push(JSON.stringify(record));
  }

  putMessage(storePath: string, message: StoredMessage): void {
    this.record({ t: 'p', s: storePath, m: serialize(message) });
  }

  updateMessage(storePath: string, message: StoredMessage): void {
    const rec: JournalRecord = { t: 'u', s: storePath, q: message.seq, c: message.deliveryCount, st: message.state };
    if (message.scheduledAt !== undefined) rec.sa = message.scheduledAt;
    this.record(rec);
  }

  deleteMessage(storePath: string, seq: number): void {
    this.record({ t: 'd', s: storePath, q: seq });
  }

  setSessionState(storePath: string, sessionId: string, state: Buffer | undefined): void {
    this.record({ t: 'ss', s: storePath, i: sessionId, v: state === undefined ? null : state.toString('base64') });
  }

  setRules(subscriptionPath: string, rules: RuleOptions[]): void {
    this.changedRules.add(subscriptionPath);
    this.record({ t: 'r', s: subscriptionPath, rules });
  }

  rememberMessageId(entity: string, messageId: string, at: number): void {
    this.record({ t: 'id', e: entity, i: messageId, at });
  }

  createQueue(name: string, props: EntityProperties): void {
    this.autoQueues.push({ n: name, p: props });
    this.record({ t: 'q', n: name, p: props });
  }

  commit(): Promise<void> | undefined {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    if (this.batch.lines.length === 0 && !this.writing) return undefined;
    const promise = new Promise<void>((resolve, reject) => this.batch.waiters.push({ resolve, reject }));
    this.schedule();
    return promise;
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    this.idle = new Promise((resolve) => (this.idleResolve = resolve));
    try {
      while (this.batch.lines.length > 0 || this.batch.waiters.length > 0) {
        const batch = this.batch;
        this.batch = { lines: [], waiters: [] };
        try {
          if (batch.lines.length > 0) {
            const data = `${batch.lines.join('\n')}\n`;
            await this.handle!.write(data);
            if (this.options.syncWrites) await this.handle!.sync();
            this.bytesInGeneration += Buffer.byteLength(data);
          }
          for (const waiter of batch.waiters) waiter.resolve();
        } catch (error) {
          this.failed = error as Error;
          for (const waiter of batch.waiters) waiter.reject(error as Error);
        }
        if (this.shouldCompact()) await this.compact();
      }
    } finally {
      this.writing = false;
      this.idleResolve?.();
    }
  }

  /** Compact once the journal is past the limit and at least twice the last snapshot (bounded write amplification). */
  private shouldCompact(): boolean {
    const limit = Math.max(this.options.compactAfterBytes ?? 64 * 1024 * 1024, 2 * this.lastSnapshotBytes);
    return this.bytesInGeneration >= limit && this.failed === undefined;
  }

  /** Writes the whole state as the next generation's snapshot, then switches to that generation's journal. */
  async compact(): Promise<void> {
    const next = this.generation + 1;
    // Everything recorded so far is in memory, hence in the snapshot: the pending lines belong to the old generation.
    const carried = this.batch;
    this.batch = { lines: [], waiters: [] };
    const snapshot = this.snapshot(next);
    const tmp = `${this.snapshotPath(next)}.tmp`;
    const file = await fs.open(tmp, 'w');
    try {
      const text = JSON.stringify(snapshot);
      this.lastSnapshotBytes = Buffer.byteLength(text);
      await file.write(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await fs.rename(tmp, this.snapshotPath(next));
    const old = this.generation;
    await this.handle!.close();
    this.handle = await fs.open(this.journalPath(next), 'a');
    this.generation = next;
    this.bytesInGeneration = 0;
    for (const waiter of carried.waiters) waiter.resolve();
    await fs.rm(this.journalPath(old), { force: true });
    await fs.rm(this.snapshotPath(old), { force: true });
  }

  private snapshot(gen: number): Snapshot {
    const stores: Snapshot['stores'] = {};
    for (const store of this.broker.stores.values()) {
      const sessions: Record<string, string> = {};
      for (const [id, state] of store.sessionStates) sessions[id] = state.toString('base64');
      stores[store.path] = { next: store.nextSeq, messages: [...store.messages.values()].map(serialize), sessions };
    }
    const seen: Record<string, Record<string, number>> = {};
    for (const [name, entity] of this.broker.entities) {
      if (entity.dedup.size > 0) seen[name] = Object.fromEntries(entity.dedup);
    }
    const rules: Record<string, RuleOptions[]> = {};
    for (const path of this.changedRules) {
      const subscription = this.broker.subscription(path);
      if (subscription !== undefined) rules[path] = subscription.rules.map(ruleOptionsOf);
    }
    return { gen, queues: [...this.autoQueues], seen, rules, stores };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const pending = this.commit();
    if (pending !== undefined) await pending.catch(() => undefined);
    await this.idle;
    this.closed = true;
    await this.handle?.close();
    this.handle = undefined;
  }

  /** Applies one record during recovery. */
  apply(record: JournalRecord): void {
    const broker = this.broker;
    const store = (p: string): MessageStore | undefined => broker.stores.get(p);
    switch (record.t) {
      case 'q':
        if (broker.entity(record.n) === undefined) broker.addQueue(record.n, record.p, 'journal');
        this.autoQueues.push({ n: record.n, p: record.p });
        break;
      case 'p':
        store(record.s)?.restore(deserialize(record.m));
        break;
      case 'u': {
        const message = store(record.s)?.messages.get(record.q);
        if (message !== undefined) {
          message.deliveryCount = record.c;
          message.state = record.st;
          message.scheduledAt = record.sa;
        }
        break;
      }
      case 'd':
        store(record.s)?.messages.delete(record.q);
        break;
      case 'id': {
        const entity = broker.entity(record.e);
        if (entity !== undefined) {
          entity.dedup.delete(record.i);
          entity.dedup.set(record.i, record.at);
        }
        break;
      }
      case 'r': {
        const subscription = broker.subscription(record.s);
        if (subscription !== undefined) {
          subscription.rules = record.rules.map(compileRule);
          this.changedRules.add(record.s);
        }
        break;
      }
      case 'ss': {
        const target = store(record.s);
        if (target === undefined) break;
        if (record.v === null) target.sessionStates.delete(record.i);
        else target.sessionStates.set(record.i, Buffer.from(record.v, 'base64'));
        break;
      }
    }
  }
}

/** Opens (creating if needed) the journal in `dir`, recovers its state into `broker`, and attaches itself. */
export async function openFileJournal(dir: string, broker: Broker, options: FileJournalOptions): Promise<FileJournal> {
  await fs.mkdir(dir, { recursive: true });
  const names = await fs.readdir(dir);
  const generations = names
    .map((name) => /^snapshot-(\d+)\.json$/.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => Number(match[1]))
    .sort((a, b) => b - a);
  let generation = 0;
  let snapshot: Snapshot | undefined;
  let snapshotBytes = 0;
  for (const gen of generations) {
    try {
      const text = await fs.readFile(path.join(dir, `snapshot-${gen}.json`), 'utf8');
      snapshot = JSON.parse(text) as Snapshot;
      snapshotBytes = Buffer.byteLength(text);
      generation = gen;
      break;
    } catch {
      // a damaged snapshot: fall back to an older generation
    }
  }
  if (snapshot === undefined) {
    const journals = names
      .map((name) => /^journal-(\d+)\.log$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => Number(match[1]));
    generation = journals.length === 0 ? 0 : Math.min(...journals);
  }
  const journal = new FileJournalImpl(dir, broker, options, generation);
  journal.lastSnapshotBytes = snapshotBytes;
  if (snapshot !== undefined) {
    for (const queue of snapshot.queues) journal.apply({ t: 'q', n: queue.n, p: queue.p });
    for (const [subscription, rules] of Object.entries(snapshot.rules ?? {})) journal.apply({ t: 'r', s: subscription, rules });
    for (const [entity, ids] of Object.entries(snapshot.seen ?? {})) {
      for (const [id, at] of Object.entries(ids)) journal.apply({ t: 'id', e: entity, i: id, at });
    }
    for (const [storePath, data] of Object.entries(snapshot.stores)) {
      const store = broker.stores.get(storePath);
      if (store === undefined) continue;
      store.nextSeq = Math.max(store.nextSeq, data.next);
      for (const message of data.messages) store.restore(deserialize(message));
      for (const [id, state] of Object.entries(data.sessions)) store.sessionStates.set(id, Buffer.from(state, 'base64'));
    }
  }
  let text = '';
  try {
    text = await fs.readFile(path.join(dir, `journal-${generation}.log`), 'utf8');
  } catch {
    // no journal yet
  }
  const lines = text.split('\n');
  // The last element is '' after a complete write, or a torn fragment that was never acknowledged: ignore it.
  let validLength = 0;
  for (let index = 0; index < lines.length - 1; index++) {
    const line = lines[index]!;
    if (line.length > 0) {
      let record: JournalRecord;
      try {
        record = JSON.parse(line) as JournalRecord;
      } catch {
        break;
      }
      journal.apply(record);
    }
    validLength += Buffer.byteLength(line) + 1;
  }
  if (validLength < Buffer.byteLength(text)) {
    await fs.truncate(path.join(dir, `journal-${generation}.log`), validLength);
  }
  await journal.start();
  broker.journal = journal;
  const now = broker.now();
  for (const store of broker.stores.values()) store.armAll(now);
  return journal;
}
