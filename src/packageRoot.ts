/** Where storelink's own files are, found by walking up to its package.json (code runs from src/ and from dist/). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StorelinkPackage {
  root: string;
  version: string;
}

let found: StorelinkPackage | undefined;

export function storelinkPackage(): StorelinkPackage {
  if (found !== undefined) return found;
  let directory = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(directory, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'storelink' && typeof manifest.version === 'string') return (found = { root: directory, version: manifest.version });
    } catch {
      // no manifest here: keep walking up
    }
    const parent = path.dirname(directory);
    if (parent === directory) throw new Error(`storelink's package.json was not found above ${fileURLToPath(import.meta.url)}`);
    directory = parent;
  }
}
