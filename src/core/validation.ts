/** Turns zod issues into messages that name the failing field and say what was expected. */
import type { z } from 'zod';

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

/** `"<path>" <message>` (with the offending value when zod reported it) for one issue. */
export function describeIssue(issue: z.core.$ZodIssue): { field: string | undefined; text: string } {
  const field = issue.path.length > 0 ? formatIssuePath(issue.path) : undefined;
  if (issue.code === 'invalid_key') {
    const reasons = issue.issues.map((inner) => inner.message).join('; ');
    return { field, text: `${field === undefined ? '' : `${field}: `}invalid key: ${reasons}` };
  }
  const got = 'input' in issue && issue.input !== undefined && issue.code !== 'unrecognized_keys' ? `, got ${preview(issue.input)}` : '';
  const text = `${field === undefined ? '' : `${field}: `}${issue.message}${got}`;
  return { field, text };
}
