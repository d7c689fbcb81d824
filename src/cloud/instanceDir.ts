/**
 * A cloud instance's identity and its part of the data dir. Several instances may be given the same `dataDir`:
 *
 * - with an `instanceId` configured, each keeps its link snapshots in `<dataDir>/instances/<instanceId>/`;
 * - without one, the instance id is kept in `<dataDir>/instance-id` (made once, at random) and the snapshots stay in
 *   `<dataDir>` as a single instance always kept them.
 *
 * Either way the folder is claimed with a lock file naming its holder (pid, host): a second live process on the same
 * folder (two instances given the same id, or two without one on one dataDir) is refused with DATA_DIR_IN_USE, never
 * left to overwrite the other's snapshots. A lock left by a process that is gone is taken over.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { StorelinkError } from '../core/errors.js';
import { instanceIdSchema } from '../core/names.js';

export const INSTANCE_ID_FILE = 'instance-id';
export const CLOUD_LOCK_FILE = 'cloud.lock';

export interface InstanceDir {
  instanceId: string;
  /** Where this instance's link snapshots live; undefined without a dataDir (in memory). */
  linkDir: string | undefined;
  release(): Promise<void>;
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

export function checkInstanceId(instanceId: string, what: string): string {
  const valid = instanceIdSchema.safeParse(instanceId);
  if (!valid.success) throw new TypeError(`${what} "${String(instanceId).slice(0, 64)}" ${valid.error.issues[0]!.message}`);
  return valid.data;
}

async function storedInstanceId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, INSTANCE_ID_FILE);
  try {
    return checkInstanceId((await readFile(file, 'utf8')).trim(), `${file} holds the instance id`);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
  const id = randomUUID();
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${id}\n`);
  await rename(temporary, file);
  return id;
}

async function lock(directory: string, instanceId: string): Promise<() => Promise<void>> {
  const file = path.join(directory, CLOUD_LOCK_FILE);
  const content = JSON.stringify({ pid: process.pid, host: hostname(), instanceId, since: new Date().toISOString() });
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(content);
      await handle.close();
      return async () => {
        await unlink(file).catch(() => undefined);
      };
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
    const held = await readFile(file, 'utf8')
      .then((text) => JSON.parse(text) as { pid?: unknown; host?: unknown; instanceId?: unknown })
      .catch(() => undefined);
    const live = held !== undefined && typeof held.pid === 'number' && (held.host !== hostname() || isAlive(held.pid));
    if (live) {
      throw new StorelinkError(
        'DATA_DIR_IN_USE',
        `${directory} is in use by cloud instance ${String(held.instanceId)} (pid ${String(held.pid)} on ${String(held.host)}): ` +
          'give each instance its own instanceId (or its own dataDir)',
      );
    }
    // Left by a process that is gone (or unreadable): take it over.
    await unlink(file).catch(() => undefined);
  }
  throw new StorelinkError('DATA_DIR_IN_USE', `${directory}: could not take ${CLOUD_LOCK_FILE}`);
}

/** Resolves the instance id and claims its folder (see the module comment). */
export async function claimInstanceDir(options: { dataDir?: string; instanceId?: string }): Promise<InstanceDir> {
  const configured = options.instanceId === undefined ? undefined : checkInstanceId(options.instanceId, 'createDispatcher: instanceId');
  if (options.dataDir === undefined) return { instanceId: configured ?? randomUUID(), linkDir: undefined, release: () => Promise.resolve() };
  const linkDir = configured === undefined ? options.dataDir : path.join(options.dataDir, 'instances', configured);
  await mkdir(linkDir, { recursive: true });
  const release = await lock(linkDir, configured ?? '(from instance-id)');
  try {
    const instanceId = configured ?? (await storedInstanceId(options.dataDir));
    return { instanceId, linkDir, release };
  } catch (error) {
    await release();
    throw error;
  }
}
