/** What the long-running commands share about their JSON configuration files. */
import type { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { describeIssue } from '../core/validation.js';
import { readTextFile } from './readTextFile.js';

/** Reads and validates a JSON configuration file; every error names the file (and the field, when there is one). */
export async function readJsonConfig<Schema extends z.ZodType>(file: string, schema: Schema, what: string): Promise<z.output<Schema>> {
  const text = await readTextFile(file);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = schema.safeParse(document, { reportInput: true });
  if (!parsed.success) {
    const { field, text: problem } = describeIssue(parsed.error.issues[0]!);
    throw new StorelinkError('FILE_UNREADABLE', `${file}: invalid ${what}: ${problem}`, { field });
  }
  return parsed.data;
}

/** A secret from a configuration file, or `env:NAME` to read it from the environment and keep keys out of files. */
export function resolveSecret(value: string, where: string, env: NodeJS.ProcessEnv): string {
  if (!value.startsWith('env:')) return value;
  const name = value.slice('env:'.length);
  const found = env[name];
  if (found === undefined || found.length === 0) {
    throw new StorelinkError('FILE_UNREADABLE', `${where} names environment variable ${name}, which is not set`, { field: where });
  }
  return found;
}
