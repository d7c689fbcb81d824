import { describe, expect, it } from 'vitest';
import { EventLog, resetFrame } from '../../src/cloud/http/eventLog.js';

function filled(count: number, options: ConstructorParameters<typeof EventLog>[0] = {}): EventLog {
  const log = new EventLog({ epoch: 'e1', ...options });
  for (let index = 1; index <= count; index += 1) log.append('delivery', { n: index });
  return log;
}

const dataOf = (frame: string) => JSON.parse(/^data: (.*)$/m.exec(frame)![1]!) as { n: number };

describe('EventLog (the event stream window)', () => {
  it('frames each event with an id, its name and JSON data', () => {
    const log = new EventLog({ epoch: 'e1' });
    const first = log.append('outcome', { operationId: 'op-1' });
    expect(first.frame).toBe('id: e1-1\nevent: outcome\ndata: {"operationId":"op-1"}\n\n');
    expect(log.lastId).toBe('e1-1');
  });

  it('replays what a client missed after its Last-Event-ID, and nothing to a client that names none', () => {
    const log = filled(5);
    expect(log.since('e1-2').frames.map(dataOf)).toEqual([{ n: 3 }, { n: 4 }, { n: 5 }]);
    expect(log.since('e1-5').frames).toEqual([]);
    expect(log.since('e1-0').frames).toHaveLength(5);
    expect(log.since(undefined)).toEqual({ frames: [] });
  });

  it('keeps only the last N events: an id older than the window gets a reset naming where to resume', () => {
    const log = filled(10, { maxEvents: 3 });
    expect(log.size).toBe(3);
    expect(log.since('e1-7').frames.map(dataOf)).toEqual([{ n: 8 }, { n: 9 }, { n: 10 }]);
    expect(log.since('e1-6')).toEqual({ frames: [], reset: { reason: 'too-old', lastEventId: 'e1-6', resumeFrom: 'e1-10' } });
  });

  it('bounds the window in bytes too', () => {
    const frameBytes = Buffer.byteLength(new EventLog({ epoch: 'e1' }).append('delivery', { n: 1 }).frame);
    const log = filled(9, { maxBytes: frameBytes * 2 + 1 });
    expect(log.size).toBe(2);
    expect(log.bytes).toBeLessThanOrEqual(frameBytes * 2 + 1);
    expect(log.since('e1-7').frames.map(dataOf)).toEqual([{ n: 8 }, { n: 9 }]);
  });

  it('answers an id from another run, a malformed one or one never given with a reset', () => {
    const log = filled(3);
    for (const id of ['other-2', 'e1-x', 'garbage', 'e1-4']) {
      expect(log.since(id).reset).toEqual({ reason: 'unknown-id', lastEventId: id, resumeFrom: 'e1-3' });
    }
    expect(resetFrame(log.since('e1-99').reset!)).toBe('id: e1-3\nevent: reset\ndata: {"reason":"unknown-id","lastEventId":"e1-99","resumeFrom":"e1-3"}\n\n');
  });

  it('stays correct past many evictions (its array is compacted)', () => {
    const log = filled(5_000, { maxEvents: 10 });
    expect(log.size).toBe(10);
    expect(log.since('e1-4995').frames.map(dataOf)).toEqual([{ n: 4996 }, { n: 4997 }, { n: 4998 }, { n: 4999 }, { n: 5000 }]);
    expect(log.since('e1-4989').reset?.reason).toBe('too-old');
  });

  it('tells live subscribers each event and completes on close', () => {
    const log = new EventLog({ epoch: 'e1' });
    const seen: number[] = [];
    let completed = false;
    log.live$.subscribe({ next: (event) => seen.push(event.sequence), complete: () => (completed = true) });
    log.append('link', {});
    log.append('link', {});
    log.close();
    expect(seen).toEqual([1, 2]);
    expect(completed).toBe(true);
  });

  it('refuses bounds that are not whole numbers', () => {
    expect(() => new EventLog({ maxEvents: -1 })).toThrow(RangeError);
    expect(() => new EventLog({ maxBytes: 1.5 })).toThrow(RangeError);
  });
});
