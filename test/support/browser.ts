/**
 * Headless Chromium for the console's browser tests and benchmark: Debian's `chromium` (apt-get install chromium),
 * driven by playwright-core, never a downloaded browser. `STORELINK_CHROMIUM` names another binary.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { buildConsole } from '../../console/build.js';

export const CHROMIUM = process.env['STORELINK_CHROMIUM'] ?? '/usr/bin/chromium';
export const HAS_CHROMIUM = existsSync(CHROMIUM);
export const NO_CHROMIUM_MESSAGE = `skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set STORELINK_CHROMIUM)`;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** Builds the console from its sources into a temporary folder; returns it and its removal. */
export async function builtConsole(): Promise<{ assetsDir: string; remove: () => Promise<void> }> {
  const folder = await mkdtemp(path.join(tmpdir(), 'storelink-console-'));
  const assetsDir = await buildConsole(path.join(folder, 'console'), { minify: false });
  return { assetsDir, remove: () => rm(folder, { recursive: true, force: true }) };
}
