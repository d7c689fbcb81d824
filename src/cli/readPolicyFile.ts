import { readFile } from 'node:fs/promises';
import { StorelinkError } from '../core/errors.js';
import { parsePolicy, type Policy } from '../core/policy.js';

/** Where a JSON.parse error points, as line:column, when the engine reports a position. */
function jsonErrorLocation(text: string, error: unknown): string {
  const position = /position (\d+)/.exec(error instanceof Error ? error.message : '');
  if (position === null) return '';
  const before = text.slice(0, Number(position[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `:${line}:${column}`;
}

/** Reads and validates a policy JSON file; every error names the file. */
export async function readPolicyFile(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    const notFound = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new StorelinkError(notFound ? 'FILE_NOT_FOUND' : 'FILE_UNREADABLE', `${file}: ${notFound ? 'no such file' : `cannot read: ${(cause as Error).message}`}`, { cause });
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}${jsonErrorLocation(text, cause)}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return parsePolicy(document, { source: file });
}
