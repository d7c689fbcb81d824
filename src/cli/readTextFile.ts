import { readFile } from 'node:fs/promises';
import { StorelinkError } from '../core/errors.js';

/** Reads a file named on the command line: FILE_NOT_FOUND (a usage error) or FILE_UNREADABLE, both naming the file. */
export async function readTextFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    const notFound = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new StorelinkError(notFound ? 'FILE_NOT_FOUND' : 'FILE_UNREADABLE', `${file}: ${notFound ? 'no such file' : `cannot read: ${(cause as Error).message}`}`, {
      cause,
    });
  }
}
