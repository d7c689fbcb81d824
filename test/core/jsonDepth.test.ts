import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, findNonJson, nestsDeeperThan, valueNestsDeeperThan } from '../../src/core/json.js';
import { MAX_OPERATION_BYTES, parseOperation } from '../../src/core/operation.js';

/** An array holding an array … `depth` levels in all, innermost `leaf`, built without recursion. */
function nested(depth: number, leaf: unknown = null): unknown {
  let value: unknown = leaf;
  for (let level = 0; level < depth; level += 1) value = [value];
  return value;
}

const ENVELOPE = {
  id: '3b241101-e2bb-4255-8caf-4136c566a962',
  storeId: 'paris-1',
  type: 'clickAndCollect.order',
  latency: 'realtime',
  createdAt: '2026-11-28T10:00:00.000Z',
  expiresAt: '2026-11-28T11:00:00.000Z',
};

describe('JSON nesting depth', () => {
  it('is one limit, 64, shared by every boundary', () => {
    expect(MAX_JSON_DEPTH).toBe(64);
    expect(MAX_OPERATION_BYTES).toBeGreaterThan(256 * 1024);
  });

  it.each([
    ['[]', 1, false],
    ['[[]]', 1, true],
    ['{"a":{"b":1}}', 2, false],
    ['{"a":{"b":{}}}', 2, true],
    ['"[[[[[["', 1, false],
    ['["\\"[[[["]', 1, false],
    ['["\\\\",[[]]]', 2, true],
  ])('the text %s nests deeper than %i: %s', (text, depth, expected) => {
    expect(nestsDeeperThan(text, depth)).toBe(expected);
  });

  it.each([
    [nested(3), 3, false],
    [nested(4), 3, true],
    [{ a: [{ b: 1 }] }, 3, false],
    [{ a: [{ b: {} }] }, 3, true],
    ['plain', 0, false],
    [[], 0, true],
  ])('the value %j nests deeper than %i: %s', (value, depth, expected) => {
    expect(valueNestsDeeperThan(value, depth)).toBe(expected);
  });

  it('walks a value 100,000 levels deep without overflowing the stack', () => {
    const deep = nested(100_000, Number.NaN);
    expect(valueNestsDeeperThan(deep, MAX_JSON_DEPTH)).toBe(true);
    const problem = findNonJson(deep);
    expect(problem?.message).toBe('must be a finite number, got NaN');
    expect(problem?.path).toHaveLength(100_000);
    expect(findNonJson(nested(100_000))).toBeUndefined();
  });

  it('still finds non-JSON values and cycles, with their paths', () => {
    const cycle: Record<string, unknown> = { a: 1 };
    cycle['self'] = { back: cycle };
    expect(findNonJson(cycle)).toEqual({ path: ['self', 'back'], message: 'must not contain a reference to itself' });
    expect(findNonJson({ items: [1, { when: new Date(0) }] })).toEqual({ path: ['items', 1, 'when'], message: 'must be a plain JSON object, got a Date' });
    // A value seen twice side by side is no cycle.
    const shared = { x: 1 };
    expect(findNonJson([shared, shared])).toBeUndefined();
  });

  it('refuses an operation whose payload nests 10,000 deep as OPERATION_INVALID on payload, before any schema walks it', () => {
    const parsed = parseOperation({ ...ENVELOPE, payload: nested(10_000) });
    expect(parsed.success).toBe(false);
    if (parsed.success) return;
    expect(parsed.error).toMatchObject({ code: 'OPERATION_INVALID', field: 'payload', retryable: false });
    expect(parsed.error.message).toContain(`nests deeper than ${MAX_JSON_DEPTH} levels`);
  });

  it('accepts a payload at the limit and refuses one a level deeper (the envelope is the first level)', () => {
    expect(parseOperation({ ...ENVELOPE, payload: nested(MAX_JSON_DEPTH - 1, 1) }).success).toBe(true);
    const deeper = parseOperation({ ...ENVELOPE, payload: nested(MAX_JSON_DEPTH, 1) });
    expect(deeper.success ? undefined : deeper.error.field).toBe('payload');
  });
});
