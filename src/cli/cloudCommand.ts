/** `storelink cloud --config FILE`: runs the cloud dispatcher and its HTTP API until SIGINT or SIGTERM. */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { checkChart } from '../charts/checkChart.js';
import { loadChart } from '../charts/loadChart.js';
import { createCloudHttpApi, MIN_TOKEN_LENGTH } from '../cloud/httpApi.js';
import { createDispatcher } from '../cloud/dispatcher.js';
import { StorelinkError } from '../core/errors.js';
import { entityNameSchema, storeIdSchema } from '../core/names.js';
import { defaultPolicy, parsePolicy, type Policy } from '../core/policy.js';
import { createCliLogger, LOG_LEVELS, type LogLevel } from './logger.js';
import { CliExit, EXIT_FAILED, type CliIo } from './program.js';
import { readPolicyFile } from './readPolicyFile.js';
import { untilStopped } from './untilStopped.js';
import { readJsonConfig, resolveSecret } from './configFile.js';
import { readSigningKey, readTrustedKeys, signingKeyConfigSchema, trustedKeysConfigSchema } from './signingKeyFiles.js';
import type { SigningKey } from '../core/signing.js';

export const DEFAULT_CLOUD_HTTP_PORT = 8380;

/** A secret, or `env:NAME` to read it from the environment and keep it out of files. */
const secretSchema = z.string().min(1, 'must not be empty');

const cloudConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    serviceBus: z.strictObject({ connectionString: secretSchema, cloudInbox: entityNameSchema.optional() }),
    relay: z.strictObject({ connectionString: secretSchema }).optional(),
    /** A policy JSON file (relative to the configuration file), or the policy itself. */
    policy: z.union([z.string().min(1, 'must not be empty'), z.record(z.string(), z.unknown())]).optional(),
    /** A built-in chart name or a chart module path (relative to the configuration file). */
    chart: z.string().min(1, 'must not be empty').optional(),
    stores: z
      .array(
        z.strictObject({
          storeId: storeIdSchema,
          bidirectional: z.boolean({ message: 'expected true (the store runs a relay listener) or false' }),
          queue: entityNameSchema.optional(),
          hybridConnection: entityNameSchema.optional(),
          /** The store's public keys by key id (PEM files): what claims to come from it counts only if one signed it. */
          publicKeys: trustedKeysConfigSchema,
        }),
      )
      .min(1, 'must list at least one store'),
    dataDir: z.string().min(1, 'must not be empty').optional(),
    /** The cloud's private key (PEM file, relative to the configuration file): it signs every operation. */
    signing: signingKeyConfigSchema,
    http: z.strictObject({
      host: z.string().min(1, 'must not be empty').optional(),
      port: z.number().int('expected a port number').min(0, 'expected a port number from 0 to 65535').max(65535, 'expected a port number from 0 to 65535').optional(),
      token: secretSchema,
    }),
  })
  .superRefine((config, context) => {
    const seen = new Set<string>();
    config.stores.forEach((store, index) => {
      if (seen.has(store.storeId)) context.addIssue({ code: 'custom', path: ['stores', index, 'storeId'], message: `"${store.storeId}" is listed twice` });
      seen.add(store.storeId);
    });
    const bidirectional = config.stores.find((store) => store.bidirectional);
    if (bidirectional !== undefined && config.relay === undefined) {
      context.addIssue({ code: 'custom', path: ['relay'], message: `is required: store "${bidirectional.storeId}" is bi-directional (give a connection string with Send)` });
    }
  });

export interface CloudConfig {
  serviceBus: { connectionString: string; cloudInbox?: string };
  relay?: { connectionString: string };
  policy?: Policy;
  /** Resolved against the configuration file's folder unless a built-in name. */
  chart?: string;
  chartBaseDir: string;
  stores: { storeId: string; bidirectional: boolean; queue?: string; hybridConnection?: string; publicKeys: Record<string, string> }[];
  dataDir?: string;
  signing: SigningKey;
  http: { host: string; port: number; token: string };
}

export async function readCloudConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<CloudConfig> {
  const config = await readJsonConfig(file, cloudConfigSchema, 'cloud configuration');
  const base = path.dirname(file);
  const token = resolveSecret(config.http.token, 'http.token', env);
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: http.token must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`, { field: 'http.token' });
  }
  let policy: Policy | undefined;
  if (typeof config.policy === 'string') policy = await readPolicyFile(path.resolve(base, config.policy));
  else if (config.policy !== undefined) policy = parsePolicy(config.policy, { source: `${file}: policy` });
  return {
    serviceBus: { ...config.serviceBus, connectionString: resolveSecret(config.serviceBus.connectionString, 'serviceBus.connectionString', env) },
    ...(config.relay === undefined ? {} : { relay: { connectionString: resolveSecret(config.relay.connectionString, 'relay.connectionString', env) } }),
    ...(policy === undefined ? {} : { policy }),
    ...(config.chart === undefined ? {} : { chart: config.chart }),
    chartBaseDir: base,
    stores: await Promise.all(config.stores.map(async (store) => ({ ...store, publicKeys: await readTrustedKeys(store.publicKeys, base) }))),
    ...(config.dataDir === undefined ? {} : { dataDir: path.resolve(base, config.dataDir) }),
    signing: await readSigningKey(config.signing, base),
    http: { host: config.http.host ?? '127.0.0.1', port: config.http.port ?? DEFAULT_CLOUD_HTTP_PORT, token },
  };
}

function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function addCloudCommand(program: Command, io: CliIo): void {
  program
    .command('cloud')
    .description('run the cloud dispatcher and its HTTP API (publish, stores, events, metrics)')
    .requiredOption('--config <file>', 'cloud configuration (JSON): serviceBus, relay, policy, chart, stores (with their publicKeys), dataDir, signing, http')
    .addOption(new Option('--log-level <level>', 'log level (JSON lines on stderr)').choices(LOG_LEVELS).default('info'))
    .action(async (options: { config: string; logLevel: LogLevel }) => {
      const config = await readCloudConfig(path.resolve(io.cwd, options.config));
      const logger = createCliLogger(options.logLevel, 'storelink-cloud');
      const chart = config.chart === undefined ? undefined : await loadChart(config.chart, config.chartBaseDir);
      if (chart !== undefined) {
        // The same check as `storelink policy check`: a chart that breaks the routing contract never routes a store.
        const result = checkChart(chart.machine, { linkPolicy: (config.policy ?? defaultPolicy()).link });
        if (result.problems.length > 0) {
          io.stderr(`storelink: chart ${chart.name} breaks the routing contract:\n`);
          for (const problem of result.problems) io.stderr(`  [${problem.rule}] ${problem.message}\n`);
          throw new CliExit(EXIT_FAILED);
        }
      }
      const dispatcher = createDispatcher({
        serviceBus: config.serviceBus,
        ...(config.relay === undefined ? {} : { relay: config.relay }),
        ...(config.policy === undefined ? {} : { policy: config.policy }),
        ...(chart === undefined ? {} : { chart: chart.machine }),
        stores: config.stores,
        signing: config.signing,
        ...(config.dataDir === undefined ? {} : { dataDir: config.dataDir }),
        logger,
      });
      const api = createCloudHttpApi({ dispatcher, token: config.http.token, host: config.http.host, port: config.http.port, logger });
      try {
        const { port } = await api.listen();
        const stores = config.stores.length;
        io.stdout(`cloud dispatcher for ${stores} store${stores === 1 ? '' : 's'} serving ${urlOf(config.http.host, port)} (bearer token required); Ctrl+C to stop\n`);
        await untilStopped(io.stopSignal);
      } finally {
        await api.close();
        await dispatcher.close();
      }
    });
}
