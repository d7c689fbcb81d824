/**
 * Turns zod issues into messages that name the failing field and say what was expected, and the few schema pieces
 * whose issues read well that way.
 */
import { z } from 'zod';

/** Renders an issue path as `payload.items[0].sku`, quoting keys that are not plain words: `operations["stock.query"]`. */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  return path
    .map((key, index) => {
      if (typeof key === 'number') return `[${key}]`;
      const name = String(key);
      if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name)) return index === 0 ? name : `.${name}`;
      return `[${JSON.stringify(name)}]`;
    })
    .join('');
}

function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export interface IssueDescription {
  /** The failing path (`payload.items[0].sku`); undefined when the value itself fails. */
  field: string | undefined;
  /** What is wrong there, with the offending value when the parse reported it (`reportInput`). */
  problem: string;
  /** `<field>: <problem>`, or the problem alone. */
  text: string;
}

/** One issue as a field and what is wrong with it. */
export function describeIssue(issue: z.core.$ZodIssue): IssueDescription {
  const field = issue.path.length > 0 ? formatIssuePath(issue.path) : undefined;
  let problem: string;
  if (issue.code === 'invalid_key') {
    problem = `invalid key: ${issue.issues.map((inner) => inner.message).join('; ')}`;
  } else {
    const got = 'input' in issue && issue.input !== undefined && issue.code !== 'unrecognized_keys' ? `, got ${preview(issue.input)}` : '';
    problem = `${issue.message}${got}`;
  }
  return { field, problem, text: field === undefined ? problem : `${field}: ${problem}` };
}

/**
 * Validates a value, describing one issue as a phrase that follows the name of the thing checked:
 * `.id must be a non-empty string`, or ` has an unknown field "note"` for the thing itself. An unknown field is told
 * first: a misspelt field is usually why another one is missing.
 */
export function validate<T>(schema: z.ZodType<T>, value: unknown): { success: true; data: T } | { success: false; problem: string } {
  const result = parseReportingInput(schema, value);
  if (result.success) return { success: true, data: result.data };
  const { issues } = result.error;
  const { field, problem } = describeIssue(issues.find((issue) => issue.code === 'unrecognized_keys') ?? issues[0]!);
  return { success: false, problem: field === undefined ? ` ${problem}` : `.${field} ${problem}` };
}

/**
 * `schema.safeParse(value)`, whose issues carry the offending values when it fails. They are asked for only then, by
 * parsing again: reporting them costs about a third of a successful parse, which every accepted value would pay.
 */
export function parseReportingInput<T>(schema: z.ZodType<T>, value: unknown): z.ZodSafeParseResult<T> {
  const result = schema.safeParse(value);
  return result.success ? result : schema.safeParse(value, { reportInput: true });
}

/** `has an unknown field "note" (allowed: id, type)`: a misspelt field says which ones exist. */
export function unknownFieldsPhrase(keys: readonly string[], allowed: Iterable<string>): string {
  const names = keys.map((key) => `"${key}"`).join(', ');
  return `has ${keys.length === 1 ? 'an unknown field' : 'unknown fields'} ${names} (allowed: ${[...allowed].join(', ')})`;
}

/** A strict object whose own issues read as phrases: `notObject` for a value that is no object, unknown fields named. */
export function strictFields<Shape extends z.core.$ZodLooseShape>(shape: Shape, notObject = 'must be an object') {
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? unknownFieldsPhrase(issue.keys, Object.keys(shape)) : notObject),
  });
}

export const nonEmptyStringSchema = z.string({ error: 'must be a non-empty string' }).min(1);

/** One of a few strings: `must be one of "done", "rejected"`. */
export function oneOf<const Values extends readonly [string, ...string[]]>(values: Values) {
  return z.enum(values, { error: `must be one of ${values.map((value) => `"${value}"`).join(', ')}` });
}

/** An instant with its time zone, as `Date.prototype.toISOString` writes it (any offset is accepted). */
export const timestampSchema = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 timestamp such as "2026-11-28T17:00:00.000Z"' });
