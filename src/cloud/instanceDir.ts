/**
 * A cloud instance's identity and its part of the data dir. Several instances may be given the same `dataDir`:
 *
 * - with an `instanceId` configured, each keeps its link snapshots in `<dataDir>/instances/<instanceId>/`;
 * - without one, the instance id is kept in `<dataDir>/instance-id` (made once, at random) and the snapshots stay in
 *   `<dataDir>` as a single instance always kept them.
 *
 * Either way the folder is claimed with `cloud.lock` (src/directoryLock.ts): a second live process on the same folder
 * (two instances given the same id, or two without one on one dataDir) is refused with DATA_DIR_IN_USE, never left to
 * overwrite the other's snapshots. A lock left by a process that is gone is taken over.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { instanceIdSchema } from '../core/names.js';
import { lockDirectory, type DirectoryLock } from '../directoryLock.js';

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

function lock(directory: string, holder: string): Promise<DirectoryLock> {
  return lockDirectory(directory, {
    fileName: CLOUD_LOCK_FILE,
    holder,
    inUse: (folder, heldBy, file) => `${folder} is in use by ${heldBy}: give each instance its own instanceId (or its own dataDir); if it is gone, remove ${file}`,
  });
}

/** Resolves the instance id and claims its folder (see the module comment). */
export async function claimInstanceDir(options: { dataDir?: string; instanceId?: string }): Promise<InstanceDir> {
  const configured = options.instanceId === undefined ? undefined : checkInstanceId(options.instanceId, 'createDispatcher: instanceId');
  if (options.dataDir === undefined) return { instanceId: configured ?? randomUUID(), linkDir: undefined, release: () => Promise.resolve() };
  const linkDir = configured === undefined ? options.dataDir : path.join(options.dataDir, 'instances', configured);
  await mkdir(linkDir, { recursive: true });
  const claim = await lock(linkDir, configured === undefined ? `the cloud instance whose id is in ${INSTANCE_ID_FILE}` : `cloud instance ${configured}`);
  try {
    const instanceId = configured ?? (await storedInstanceId(options.dataDir));
    return { instanceId, linkDir, release: () => claim.release() };
  } catch (error) {
    await claim.release();
    throw error;
  }
}
