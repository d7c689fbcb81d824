import { StorelinkError } from '../core/errors.js';
import { parsePolicy, type Policy } from '../core/policy.js';
import { readTextFile } from './readTextFile.js';

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
  const text = await readTextFile(file);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}${jsonErrorLocation(text, cause)}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return parsePolicy(document, { source: file });
}
