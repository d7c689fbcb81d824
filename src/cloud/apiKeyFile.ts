/**
 * The API key file on disk: read by the cloud HTTP API whenever it changes, written by `storelink apikeys`.
 *
 * The API checks the file (one `stat`) at most every `recheckAfterInMs` (default API_KEY_RECHECK_IN_MS, half a second)
 * and re-reads it when its identity, size, modification or change time differ from the copy it holds. A `stat` per
 * request cost a thread-pool round trip on every call under load; checked this often, a key added to the file works,
 * and a key removed from it is refused, within half a second of the file being saved. That is chosen over
 * `fs.watch`: a watch follows the inode, so it misses a file replaced by rename (how editors and `apikeys` save) unless
 * re-armed, is unreliable on network and container-mounted file systems, and has to be closed. A copy more than a
 * second old is read again even when the file looks the same (see MAX_COPY_AGE_IN_MS).
 *
 * A file that cannot be read or is not valid (gone, half-written by an editor that writes in place) refuses every
 * request with API_KEYS_UNAVAILABLE (503, retryable) until it is fixed: the keys of an older copy are not trusted,
 * since the change may have been a revocation.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { StorelinkError, isStorelinkError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ApiKeyRing, MAX_API_KEY_FILE_BYTES, parseApiKeyFile, type ApiKeyFile } from './apiKeys.js';

/** Where the API finds the keys valid now. */
export interface ApiKeySource {
  /** The keys valid now; throws API_KEYS_UNAVAILABLE when there are none to trust. */
  current(): Promise<ApiKeyRing>;
}

/** A fixed set of keys (the deprecated single token, or keys given in code). */
export function fixedApiKeys(ring: ApiKeyRing): ApiKeySource {
  return { current: () => Promise.resolve(ring) };
}

type Loaded = { signature: string; at: number } & ({ ring: ApiKeyRing } | { error: StorelinkError });

/** How long the API trusts its last look at the key file before it `stat`s it again: the bound on a rotation. */
export const API_KEY_RECHECK_IN_MS = 500;

export interface ApiKeyFileOptions {
  /** At most this long between two looks at the file; default API_KEY_RECHECK_IN_MS. 0: on every request. */
  recheckAfterInMs?: number;
  /** A monotonic clock in ms; default `performance.now`. */
  clock?: () => number;
}

/**
 * A copy this old is re-read even if the file looks unchanged: a same-size rewrite within the file system's timestamp
 * granularity (a few ms) onto a reused inode would otherwise go unseen until the next change.
 */
const MAX_COPY_AGE_IN_MS = 1_000;

/** The keys of `file`, re-read whenever it changes. */
export function apiKeysFromFile(file: string, logger: Logger, options: ApiKeyFileOptions = {}): ApiKeySource {
  const recheckAfterInMs = options.recheckAfterInMs ?? API_KEY_RECHECK_IN_MS;
  if (!(recheckAfterInMs >= 0)) throw new RangeError('apiKeysFromFile: recheckAfterInMs must be a number of ms, at least 0');
  const clock = options.clock ?? (() => performance.now());
  let loaded: Loaded | undefined;
  /** When the file was last looked at (clock), and the copy that look left. */
  let checkedAt = Number.NEGATIVE_INFINITY;
  let loading: { signature: string; promise: Promise<ApiKeyRing> } | undefined;

  const unavailable = (message: string, cause?: unknown) =>
    new StorelinkError('API_KEYS_UNAVAILABLE', `the API key file cannot be used (${message}); every request is refused until it is fixed`, { cause });

  async function load(signature: string, size: bigint): Promise<ApiKeyRing> {
    // The periodic re-read of an unchanged file is not news: logged only when the file or its state changed.
    const before = loaded;
    const news = (failed: boolean) => before?.signature !== signature || 'error' in before !== failed;
    try {
      if (size > BigInt(MAX_API_KEY_FILE_BYTES)) throw new StorelinkError('FILE_UNREADABLE', `${file}: larger than ${MAX_API_KEY_FILE_BYTES} bytes, not an API key file`);
      const ring = new ApiKeyRing(parseApiKeyFile(await readFile(file, 'utf8'), file));
      loaded = { signature, ring, at: clock() };
      if (news(false)) logger.info({ file, keys: ring.list().map(({ name, scopes }) => ({ name, scopes })) }, 'API keys loaded');
      return ring;
    } catch (cause) {
      const error = unavailable(isStorelinkError(cause) ? cause.message : (cause as Error).message, cause);
      loaded = { signature, at: clock(), error };
      if (news(true)) logger.error({ file, err: cause }, 'API key file unusable: every request is refused');
      throw error;
    } finally {
      if (loading?.signature === signature) loading = undefined;
    }
  }

  return {
    async current() {
      const now = clock();
      if (loaded !== undefined && loading === undefined && now - checkedAt < recheckAfterInMs) {
        if ('error' in loaded) throw loaded.error;
        return loaded.ring;
      }
      checkedAt = now;
      let signature: string;
      let size: bigint;
      try {
        const stats = await stat(file, { bigint: true });
        size = stats.size;
        signature = `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
      } catch (cause) {
        if (loaded === undefined || !('error' in loaded) || loaded.signature !== 'missing') {
          logger.error({ file, err: cause }, 'API key file unreadable: every request is refused');
        }
        loaded = { signature: 'missing', at: clock(), error: unavailable(`${file}: ${(cause as Error).message}`, cause) };
        throw loaded.error;
      }
      if (loaded?.signature === signature && clock() - loaded.at < MAX_COPY_AGE_IN_MS) {
        if ('error' in loaded) throw loaded.error;
        return loaded.ring;
      }
      if (loading?.signature !== signature) loading = { signature, promise: load(signature, size) };
      return loading.promise;
    },
  };
}

/** Reads a key file for `storelink apikeys`; a file that does not exist yet has no keys when `missingIsEmpty`. */
export async function readApiKeyFile(file: string, options: { missingIsEmpty?: boolean } = {}): Promise<ApiKeyFile> {
  let text: string;
  try {
    const stats = await stat(file);
    if (stats.size > MAX_API_KEY_FILE_BYTES) throw new StorelinkError('FILE_UNREADABLE', `${file}: larger than ${MAX_API_KEY_FILE_BYTES} bytes, not an API key file`);
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if (isStorelinkError(cause)) throw cause;
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
      if (options.missingIsEmpty === true) return { keys: [] };
      throw new StorelinkError('FILE_NOT_FOUND', `${file}: no such file (create a key first: storelink apikeys create)`, { cause });
    }
    throw new StorelinkError('FILE_UNREADABLE', `${file}: cannot read: ${(cause as Error).message}`, { cause });
  }
  return parseApiKeyFile(text, file);
}

/**
 * Replaces the key file in one step (a temporary file in the same folder, renamed over it), readable by its owner
 * only, so the API never sees it half-written. Two writers at once: the last one wins.
 */
export async function writeApiKeyFile(file: string, keys: ApiKeyFile): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify({ keys: keys.keys }, null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
