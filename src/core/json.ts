/** Plain JSON values: what survives `JSON.stringify` and `JSON.parse` unchanged. */
import { z } from 'zod';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface NonJsonProblem {
  path: (string | number)[];
  message: string;
}

/** The first place where `value` is not plain JSON (which JSON.stringify would drop, mangle or reject). */
export function findNonJson(value: unknown): NonJsonProblem | undefined {
  const ancestors = new Set<object>();
  const visit = (current: unknown, path: (string | number)[]): NonJsonProblem | undefined => {
    if (current === null || typeof current === 'string' || typeof current === 'boolean') return undefined;
    if (typeof current === 'number') {
      return Number.isFinite(current) ? undefined : { path, message: `must be a finite number, got ${current}` };
    }
    if (typeof current !== 'object') return { path, message: `must be a JSON value, got ${typeof current}` };
    const prototype = Object.getPrototypeOf(current) as unknown;
    if (!Array.isArray(current) && prototype !== Object.prototype && prototype !== null) {
      const name = (current as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      return { path, message: `must be a plain JSON object, got a ${name}` };
    }
    if (ancestors.has(current)) return { path, message: 'must not contain a reference to itself' };
    ancestors.add(current);
    const entries: [string | number, unknown][] = Array.isArray(current)
      ? Array.from(current, (item, index) => [index, item])
      : Object.entries(current);
    for (const [key, child] of entries) {
      const problem = visit(child, [...path, key]);
      if (problem !== undefined) return problem;
    }
    ancestors.delete(current);
    return undefined;
  };
  return visit(value, []);
}

/** A JSON value; an issue points at the first part that is not (`payload.items[2]`) and says what it is instead. */
export const jsonValueSchema = z.custom<JsonValue>().check((context) => {
  const problem = findNonJson(context.value);
  // No input on the issue: the message already says what was found, at the place it was found.
  if (problem !== undefined) context.issues.push({ code: 'custom', message: problem.message, path: problem.path, input: undefined });
});
