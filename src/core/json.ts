/**
 * Plain JSON values: what survives `JSON.stringify` and `JSON.parse` unchanged, and how deep they may nest. Every walk
 * here is iterative: a value nested 100,000 levels deep (a 200 KB body can hold one) must not overflow the stack of
 * whoever checks it.
 */
import { z } from 'zod';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * The deepest nesting accepted wherever untrusted JSON comes in (an operation envelope on the relay or the queue, a
 * request to the cloud HTTP API, a message in the cloud inbox): an envelope is one level, so a payload may nest 63.
 * Real payloads nest a handful of levels; a limit keeps recursive code (zod, JSON.stringify) far from the stack's end.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether the brackets of a JSON text, outside strings, open more than `maxDepth` levels at some point. One pass over
 * the text, no allocation: run it before `JSON.parse`, so a deep text costs a scan instead of a deep object graph. It
 * does not check the text is JSON; the parse that follows does.
 */
export function nestsDeeperThan(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const character = text.charCodeAt(index);
    if (inString) {
      if (character === 0x5c /* \ */) index += 1;
      else if (character === 0x22 /* " */) inString = false;
    } else if (character === 0x22) {
      inString = true;
    } else if (character === 0x7b /* { */ || character === 0x5b /* [ */) {
      depth += 1;
      if (depth > maxDepth) return true;
    } else if (character === 0x7d /* } */ || character === 0x5d /* ] */) {
      depth -= 1;
    }
  }
  return false;
}

/**
 * Whether a value's arrays and objects nest more than `maxDepth` levels (a scalar is 0, `[]` is 1, `[[]]` is 2).
 * Iterative, and it stops at the first level too deep, so checking a hostile value costs at most `maxDepth` levels of
 * it per branch. A cycle counts as too deep.
 */
export function valueNestsDeeperThan(value: unknown, maxDepth: number): boolean {
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (pending.length > 0) {
    const { value: current, depth } = pending.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth + 1 > maxDepth) return true;
    const children: unknown[] = Array.isArray(current) ? current : Object.values(current);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) pending.push({ value: child, depth: depth + 1 });
    }
  }
  return false;
}

export interface NonJsonProblem {
  path: (string | number)[];
  message: string;
}

/** One step of the walk: a value, how it was reached (for the path of a problem), and whether its children are done. */
interface Visit {
  value: unknown;
  key: string | number | undefined;
  parent: Visit | undefined;
  left: boolean;
}

function pathOf(visit: Visit): (string | number)[] {
  const path: (string | number)[] = [];
  for (let step: Visit | undefined = visit; step?.parent !== undefined; step = step.parent) path.push(step.key!);
  return path.reverse();
}

function problemWith(value: unknown): string | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : `must be a finite number, got ${value}`;
  if (typeof value !== 'object') return `must be a JSON value, got ${typeof value}`;
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (!Array.isArray(value) && prototype !== Object.prototype && prototype !== null) {
    return `must be a plain JSON object, got a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'object'}`;
  }
  return undefined;
}

/** The first place where `value` is not plain JSON (which JSON.stringify would drop, mangle or reject). */
export function findNonJson(value: unknown): NonJsonProblem | undefined {
  // Depth first, in document order, with the objects on the current path kept to tell a cycle from a shared value.
  const ancestors = new Set<object>();
  const stack: Visit[] = [{ value, key: undefined, parent: undefined, left: false }];
  while (stack.length > 0) {
    const visit = stack[stack.length - 1]!;
    const current = visit.value;
    if (visit.left) {
      ancestors.delete(current as object);
      stack.pop();
      continue;
    }
    const message = problemWith(current);
    if (message !== undefined) return { path: pathOf(visit), message };
    if (typeof current !== 'object' || current === null) {
      stack.pop();
      continue;
    }
    if (ancestors.has(current)) return { path: pathOf(visit), message: 'must not contain a reference to itself' };
    ancestors.add(current);
    visit.left = true;
    const entries: [string | number, unknown][] = Array.isArray(current) ? Array.from(current, (item, index) => [index, item]) : Object.entries(current);
    for (let index = entries.length - 1; index >= 0; index -= 1) {
      const [key, child] = entries[index]!;
      stack.push({ value: child, key, parent: visit, left: false });
    }
  }
  return undefined;
}

/** A JSON value; an issue points at the first part that is not (`payload.items[2]`) and says what it is instead. */
export const jsonValueSchema = z.custom<JsonValue>().check((context) => {
  const problem = findNonJson(context.value);
  // No input on the issue: the message already says what was found, at the place it was found.
  if (problem !== undefined) context.issues.push({ code: 'custom', message: problem.message, path: problem.path, input: undefined });
});
