/**
 * `storelink apikeys create|list|revoke`: the cloud HTTP API's key file. `create` prints the new key once (stdout) and
 * writes only its hash; `list` shows names, scopes and dates; `revoke` removes a key, refused by a running API from its
 * next request on. The file is replaced in one step each time (see cloud/apiKeyFile.ts).
 */
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { API_SCOPES, apiKeyNameSchema, apiScopesSchema, newApiKey, type ApiScope } from '../cloud/apiKeys.js';
import { readApiKeyFile, writeApiKeyFile } from '../cloud/apiKeyFile.js';
import { CliExit, EXIT_FAILED, type CliIo } from './program.js';

export const DEFAULT_API_KEYS_FILE = 'api-keys.json';

function keyName(value: string): string {
  const parsed = apiKeyNameSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]!.message);
  return parsed.data;
}

function scopeList(value: string): ApiScope[] {
  const parsed = apiScopesSchema.safeParse(value.split(',').map((scope) => scope.trim()));
  if (!parsed.success) throw new InvalidArgumentError(`${parsed.error.issues[0]!.message} (a comma-separated list of ${API_SCOPES.join(', ')})`);
  return parsed.data;
}

function instant(value: string): number {
  const parsed = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(parsed)) throw new InvalidArgumentError('expected an ISO 8601 date, e.g. 2030-01-31 or 2030-01-31T12:00:00Z');
  return parsed;
}

function fail(io: CliIo, message: string): never {
  io.stderr(`storelink: ${message}\n`);
  throw new CliExit(EXIT_FAILED);
}

const fileOption = ['--file <file>', `the API key file (the cloud configuration's http.apiKeysFile)`, DEFAULT_API_KEYS_FILE] as const;

export function addApikeysCommand(program: Command, io: CliIo): void {
  const apikeys = program.command('apikeys').description("manage the cloud HTTP API's keys: named, with scopes (publish, read, admin), stored hashed");

  apikeys
    .command('create')
    .description('create a key and print it once: the file keeps only its hash')
    .requiredOption('--name <name>', 'the key\'s name: who uses it (letters, digits, "-", "_")', keyName)
    .requiredOption('--scopes <scopes>', `what it may do, comma-separated: ${API_SCOPES.join(', ')}`, scopeList)
    .option('--expires-at <date>', 'refuse it from this date and time on (ISO 8601)', instant)
    .option(...fileOption)
    .action(async (options: { name: string; scopes: ApiScope[]; expiresAt?: number; file: string }) => {
      const file = path.resolve(io.cwd, options.file);
      const keys = await readApiKeyFile(file, { missingIsEmpty: true });
      if (keys.keys.some((key) => key.name === options.name)) {
        fail(io, `${file} already has a key named "${options.name}": create the new one under another name, then revoke the old one`);
      }
      const now = Date.now();
      if (options.expiresAt !== undefined && options.expiresAt <= now) fail(io, `--expires-at ${new Date(options.expiresAt).toISOString()} is not in the future`);
      const created = newApiKey({ name: options.name, scopes: options.scopes, now, ...(options.expiresAt === undefined ? {} : { expiresAt: options.expiresAt }) });
      await writeApiKeyFile(file, { keys: [...keys.keys, created.record] });
      io.stdout(`${created.presented}\n`);
      io.stderr(
        `created API key "${created.record.name}" (${created.record.scopes.join(', ')}) in ${file}; ` +
          'the line above is its secret, shown this once: send it as "Authorization: Bearer <that line>"\n',
      );
    });

  apikeys
    .command('list')
    .description('list the keys: names, scopes and dates, never secrets')
    .option(...fileOption)
    .option('--json', 'print JSON')
    .action(async (options: { file: string; json?: boolean }) => {
      const { keys } = await readApiKeyFile(path.resolve(io.cwd, options.file));
      const shown = keys.map(({ hash: _hash, ...key }) => key);
      if (options.json === true) {
        io.stdout(`${JSON.stringify({ keys: shown }, null, 2)}\n`);
        return;
      }
      if (shown.length === 0) {
        io.stdout('no API keys\n');
        return;
      }
      const rows = [['NAME', 'SCOPES', 'CREATED', 'EXPIRES'], ...shown.map((key) => [key.name, key.scopes.join(','), key.createdAt, key.expiresAt ?? 'never'])];
      const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
      for (const row of rows) io.stdout(`${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}\n`);
    });

  apikeys
    .command('revoke')
    .description('remove a key: a running cloud API refuses it from its next request on')
    .requiredOption('--name <name>', 'the key to remove', keyName)
    .option(...fileOption)
    .action(async (options: { name: string; file: string }) => {
      const file = path.resolve(io.cwd, options.file);
      const keys = await readApiKeyFile(file);
      const kept = keys.keys.filter((key) => key.name !== options.name);
      if (kept.length === keys.keys.length) fail(io, `${file} has no key named "${options.name}"`);
      await writeApiKeyFile(file, { keys: kept });
      io.stdout(`revoked API key "${options.name}"; ${kept.length} key${kept.length === 1 ? '' : 's'} left\n`);
    });
}
