/** Plain JSON values: what survives `JSON.stringify` and `JSON.parse` unchanged. */

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

