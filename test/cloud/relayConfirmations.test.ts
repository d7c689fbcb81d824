/** The cloud's list of relay answers to confirm per store, and the headers that carry them (pure logic). */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_CONFIRMED_PER_CALL, confirmationHeaders, confirmationOf } from '../../src/channels/relay/relayProtocol.js';
import { CONFIRMATIONS_PER_BATCH, RelayConfirmations } from '../../src/cloud/relayConfirmations.js';

const SIGNATURE = { keyId: 'cloud-2026', value: 'A'.repeat(86) };

describe('relay confirmation headers', () => {
  it('read back what they were written from', () => {
    const operationIds = [randomUUID(), randomUUID()];
    const headers = confirmationHeaders({ operationIds, signature: SIGNATURE });
    expect(confirmationOf(headers['storelink-confirmed'], headers['storelink-confirmed-signature'])).toEqual({ operationIds, signature: SIGNATURE });
    expect(confirmationOf(undefined, undefined)).toBeUndefined();
  });

  it('are refused when malformed, before any splitting for a header that is too long', () => {
    const id = randomUUID();
    const signature = `${SIGNATURE.keyId}:${SIGNATURE.value}`;
    const cases: [string | string[] | undefined, string | string[] | undefined][] = [
      [id, undefined],
      [undefined, signature],
      ['', signature],
      [`${id},not-a-uuid`, signature],
      [Array.from({ length: MAX_CONFIRMED_PER_CALL + 1 }, () => randomUUID()).join(','), signature],
      ['x'.repeat(100_000), signature],
      [id, `${SIGNATURE.keyId}:${SIGNATURE.value.slice(1)}`],
      [id, SIGNATURE.value],
      [[id, id], signature],
    ];
    for (const [ids, sig] of cases) expect(confirmationOf(ids, sig)).toBe('invalid');
  });
});

describe('RelayConfirmations', () => {
  it('gives a store its ids oldest first, at most a call at a time, and each once', () => {
    const confirmations = new RelayConfirmations({ now: () => 0, batchWaitInMs: 0 });
    const ids = Array.from({ length: MAX_CONFIRMED_PER_CALL + 3 }, () => randomUUID());
    for (const id of ids) confirmations.add('paris-1', id);
    confirmations.add('nice-3', ids[0]!);
    expect(confirmations.take('paris-1')).toEqual(ids.slice(0, MAX_CONFIRMED_PER_CALL));
    expect(confirmations.take('paris-1')).toEqual(ids.slice(MAX_CONFIRMED_PER_CALL));
    expect(confirmations.take('paris-1')).toBeUndefined();
    expect(confirmations.take('nice-3')).toEqual([ids[0]]);
    expect(confirmations.stores).toBe(0);
  });

  it('skips ids too old to matter, and prune() forgets stores left with only those', () => {
    let now = 0;
    const confirmations = new RelayConfirmations({ now: () => now, maxAgeInMs: 1_000, batchWaitInMs: 0 });
    const [old, fresh] = [randomUUID(), randomUUID()];
    confirmations.add('paris-1', old);
    confirmations.add('nice-3', old);
    now = 900;
    confirmations.add('paris-1', fresh);
    now = 1_500;
    expect(confirmations.take('paris-1')).toEqual([fresh]);
    confirmations.prune();
    expect(confirmations.stores).toBe(0);
    expect(confirmations.take('nice-3')).toBeUndefined();
  });

  it('waits for a batch to fill, or for its oldest id to have waited long enough', () => {
    let now = 0;
    const confirmations = new RelayConfirmations({ now: () => now, batchWaitInMs: 250 });
    const ids = Array.from({ length: CONFIRMATIONS_PER_BATCH }, () => randomUUID());
    for (const id of ids.slice(0, -1)) confirmations.add('paris-1', id);
    expect(confirmations.take('paris-1')).toBeUndefined();
    confirmations.add('paris-1', ids.at(-1)!);
    expect(confirmations.take('paris-1')).toEqual(ids);
    confirmations.add('paris-1', ids[0]!);
    now = 249;
    expect(confirmations.take('paris-1')).toBeUndefined();
    now = 250;
    expect(confirmations.take('paris-1')).toEqual([ids[0]]);
  });

  it('keeps a bounded number of ids per store, dropping the oldest', () => {
    const confirmations = new RelayConfirmations({ now: () => 0 });
    const ids = Array.from({ length: 4 * MAX_CONFIRMED_PER_CALL + 1 }, () => randomUUID());
    for (const id of ids) confirmations.add('paris-1', id);
    expect(confirmations.take('paris-1')![0]).toBe(ids[1]);
  });
});
