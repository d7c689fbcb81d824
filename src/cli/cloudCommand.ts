/** `storelink cloud --config FILE`: runs the cloud dispatcher and its HTTP API until SIGINT or SIGTERM. */
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import { chartModelOf } from '../charts/chartModel.js';
import { checkChart } from '../charts/checkChart.js';
import { storelinkPackage } from '../packageRoot.js';
import { BUILT_IN_CHARTS, loadChart } from '../charts/loadChart.js';
import { createCloudHttpApi, MIN_TOKEN_LENGTH } from '../cloud/httpApi.js';
import { createDispatcher } from '../cloud/dispatcher.js';
import { StorelinkError } from '../core/errors.js';
import { entityNameSchema, instanceIdSchema, storeIdSchema } from '../core/names.js';
import { defaultPolicy, parsePolicy, type Policy } from '../core/policy.js';
import { createCliLogger, LOG_LEVELS, type LogLevel } from './logger.js';
import { CliExit, EXIT_FAILED, type CliIo } from './program.js';
import { readPolicyFile } from './readPolicyFile.js';
import { untilStopped } from './untilStopped.js';
import {
  endpointAddressSchema,
  proxyConfigSchema,
  readJsonConfig,
  resolveProxyConfig,
  resolveSecret,
  resolveTlsTrustConfig,
  tlsTrustConfigSchema,
  transportSchema,
} from './configFile.js';
import { readTextFile } from './readTextFile.js';
import { readSigningKey, readTrustedKeys, signingKeyConfigSchema, trustedKeysConfigSchema } from './signingKeyFiles.js';
import type { SigningKey } from '../core/signing.js';

export const DEFAULT_CLOUD_HTTP_PORT = 8380;

/** A secret, or `env:NAME` to read it from the environment and keep it out of files. */
const secretSchema = z.string().min(1, 'must not be empty');

const cloudConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    serviceBus: z.strictObject({
      connectionString: secretSchema,
      cloudInbox: entityNameSchema.optional(),
      /** Default amqp (TCP 5671); websockets for port 443 or a proxy. */
      transport: transportSchema.optional(),
      endpointAddress: endpointAddressSchema.optional(),
      /** `topic`: several instances share the stores (README "Several cloud instances"); default `queue`. */
      inbox: z.enum(['queue', 'topic'], { message: "expected 'queue' (one instance) or 'topic' (several)" }).optional(),
      adoptRepliesAfterInMs: z.number().int('expected whole milliseconds').min(0, 'expected 0 or more milliseconds').optional(),
    }),
    /** This instance's id (overridden by --instance-id); default kept in dataDir. */
    instanceId: instanceIdSchema.optional(),
    relay: z.strictObject({ connectionString: secretSchema }).optional(),
    /** For the console's dead-letter routes: Listen and Send on the store queues; default serviceBus.connectionString. */
    deadLetters: z.strictObject({ connectionString: secretSchema }).optional(),
    proxy: proxyConfigSchema.optional(),
    tls: tlsTrustConfigSchema.optional(),
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
    /** The operation records: a PostgreSQL connection string (or env:NAME), else PGlite in dataDir/database (in memory without a dataDir). */
    database: z
      .strictObject({
        connectionString: secretSchema.optional(),
        retentionInMs: z.number().int('expected a whole number of milliseconds').min(60_000, 'expected at least 60000 ms (a minute)').optional(),
      })
      .optional(),
    /** What `GET /metrics` labels: by store (`off`, `all` or the `{ top: N }` busiest, default 50) and how many types (default 100). */
    metrics: z
      .strictObject({
        perStore: z
          .union([
            z.enum(['off', 'all'], { message: 'expected "off", "all" or { "top": N }' }),
            z.strictObject({ top: z.number().int('expected a whole number of stores').min(1, 'expected at least 1 store') }),
          ], { message: 'expected "off", "all" or { "top": N } with N a whole number of stores, 1 or more' })
          .optional(),
        maxOperationTypes: z.number().int('expected a whole number of types').min(0, 'expected 0 or more types').optional(),
      })
      .optional(),
    /** The cloud's private key (PEM file, relative to the configuration file): it signs every operation. */
    signing: signingKeyConfigSchema,
    http: z.strictObject({
      host: z.string().min(1, 'must not be empty').optional(),
      port: z.number().int('expected a port number').min(0, 'expected a port number from 0 to 65535').max(65535, 'expected a port number from 0 to 65535').optional(),
      /** The API key file (`storelink apikeys`), relative to the configuration file. */
      apiKeysFile: z.string().min(1, 'must not be empty').optional(),
      /** Deprecated: one shared token with every scope. */
      token: secretSchema.optional(),
      /** Serve HTTPS with this certificate (PEM, the chain after it) and key, relative to the configuration file. */
      tls: z.strictObject({ certFile: z.string().min(1, 'must not be empty'), keyFile: z.string().min(1, 'must not be empty') }).optional(),
    }),
  })
  .superRefine((config, context) => {
    if ((config.http.apiKeysFile === undefined) === (config.http.token === undefined)) {
      const message = config.http.token === undefined ? 'is required: the API key file (storelink apikeys create writes it)' : 'give http.apiKeysFile or the deprecated http.token, not both';
      context.addIssue({ code: 'custom', path: ['http', 'apiKeysFile'], message });
    }
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
  serviceBus: {
    connectionString: string;
    cloudInbox?: string;
    transport?: 'websockets' | 'amqp';
    endpointAddress?: string;
    inbox?: 'queue' | 'topic';
    adoptRepliesAfterInMs?: number;
  };
  instanceId?: string;
  relay?: { connectionString: string };
  deadLetters?: { connectionString: string };
  proxy?: false | { url: string; username?: string; password?: string; noProxy?: string[] };
  tls?: { caFile?: string };
  policy?: Policy;
  /** Resolved against the configuration file's folder unless a built-in name. */
  chart?: string;
  chartBaseDir: string;
  stores: { storeId: string; bidirectional: boolean; queue?: string; hybridConnection?: string; publicKeys: Record<string, string> }[];
  dataDir?: string;
  database: { connectionString?: string; retentionInMs?: number };
  metrics: { perStore?: 'off' | 'all' | { top: number }; maxOperationTypes?: number };
  signing: SigningKey;
  /** `apiKeysFile` resolved against the configuration file's folder; or the deprecated `token`. */
  http: { host: string; port: number; tls?: { cert: string; key: string } } & ({ apiKeysFile: string; token?: undefined } | { token: string; apiKeysFile?: undefined });
}

export async function readCloudConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<CloudConfig> {
  const config = await readJsonConfig(file, cloudConfigSchema, 'cloud configuration');
  const base = path.dirname(file);
  const token = config.http.token === undefined ? undefined : resolveSecret(config.http.token, 'http.token', env);
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: http.token must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`, { field: 'http.token' });
  }
  let serverTls: { cert: string; key: string } | undefined;
  if (config.http.tls !== undefined) {
    const [cert, key] = await Promise.all([readTextFile(path.resolve(base, config.http.tls.certFile)), readTextFile(path.resolve(base, config.http.tls.keyFile))]);
    if (!cert.includes('-----BEGIN CERTIFICATE-----')) {
      throw new StorelinkError('FILE_UNREADABLE', `${file}: http.tls.certFile ${config.http.tls.certFile} holds no PEM certificate`, { field: 'http.tls.certFile' });
    }
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
      throw new StorelinkError('FILE_UNREADABLE', `${file}: http.tls.keyFile ${config.http.tls.keyFile} holds no PEM private key`, { field: 'http.tls.keyFile' });
    }
    serverTls = { cert, key };
  }
  const auth = token === undefined ? { apiKeysFile: path.resolve(base, config.http.apiKeysFile!) } : { token };
  let policy: Policy | undefined;
  if (typeof config.policy === 'string') policy = await readPolicyFile(path.resolve(base, config.policy));
  else if (config.policy !== undefined) policy = parsePolicy(config.policy, { source: `${file}: policy` });
  return {
    serviceBus: { ...config.serviceBus, connectionString: resolveSecret(config.serviceBus.connectionString, 'serviceBus.connectionString', env) },
    ...(config.relay === undefined ? {} : { relay: { connectionString: resolveSecret(config.relay.connectionString, 'relay.connectionString', env) } }),
    ...(config.deadLetters === undefined ? {} : { deadLetters: { connectionString: resolveSecret(config.deadLetters.connectionString, 'deadLetters.connectionString', env) } }),
    ...(config.proxy === undefined ? {} : { proxy: resolveProxyConfig(config.proxy, env) }),
    ...(config.tls === undefined ? {} : { tls: resolveTlsTrustConfig(config.tls, base) }),
    ...(policy === undefined ? {} : { policy }),
    ...(config.chart === undefined ? {} : { chart: config.chart }),
    chartBaseDir: base,
    stores: await Promise.all(config.stores.map(async (store) => ({ ...store, publicKeys: await readTrustedKeys(store.publicKeys, base) }))),
    ...(config.dataDir === undefined ? {} : { dataDir: path.resolve(base, config.dataDir) }),
    database: {
      ...(config.database?.connectionString === undefined ? {} : { connectionString: resolveSecret(config.database.connectionString, 'database.connectionString', env) }),
      ...(config.database?.retentionInMs === undefined ? {} : { retentionInMs: config.database.retentionInMs }),
    },
    metrics: {
      ...(config.metrics?.perStore === undefined ? {} : { perStore: config.metrics.perStore }),
      ...(config.metrics?.maxOperationTypes === undefined ? {} : { maxOperationTypes: config.metrics.maxOperationTypes }),
    },
    ...(config.instanceId === undefined ? {} : { instanceId: config.instanceId }),
    signing: await readSigningKey(config.signing, base),
    http: { host: config.http.host ?? '127.0.0.1', port: config.http.port ?? DEFAULT_CLOUD_HTTP_PORT, ...auth, ...(serverTls === undefined ? {} : { tls: serverTls }) },
  };
}

function httpPort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return port;
}

function urlOf(host: string, port: number, secure: boolean): string {
  return `${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function addCloudCommand(program: Command, io: CliIo): void {
  program
    .command('cloud')
    .description('run the cloud dispatcher and its HTTP API (publish, stores, events, metrics)')
    .requiredOption('--config <file>', 'cloud configuration (JSON): serviceBus, relay, policy, chart, stores (with their publicKeys), dataDir, database, signing, http (apiKeysFile)')
    .addOption(new Option('--log-level <level>', 'log level (JSON lines on stderr)').choices(LOG_LEVELS).default('info'))
    .option('--instance-id <id>', "this instance's id, when several share one configuration (default: the configuration's instanceId, else kept in dataDir)")
    .option('--port <port>', 'the HTTP port, instead of the configuration\'s http.port (0: any free port)', httpPort)
    .action(async (options: { config: string; logLevel: LogLevel; instanceId?: string; port?: number }) => {
      const config = await readCloudConfig(path.resolve(io.cwd, options.config));
      if (options.instanceId !== undefined) config.instanceId = options.instanceId;
      if (options.port !== undefined) config.http.port = options.port;
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
        ...(config.proxy === undefined ? {} : { proxy: config.proxy }),
        ...(config.tls === undefined ? {} : { tls: config.tls }),
        ...(config.policy === undefined ? {} : { policy: config.policy }),
        ...(chart === undefined ? {} : { chart: chart.machine }),
        stores: config.stores,
        signing: config.signing,
        ...(config.dataDir === undefined ? {} : { dataDir: config.dataDir }),
        database: config.database,
        ...(config.instanceId === undefined ? {} : { instanceId: config.instanceId }),
        logger,
      });
      if (config.http.token !== undefined) {
        io.stderr('storelink: http.token is deprecated: one shared token has every scope; create named keys (storelink apikeys create) and set http.apiKeysFile\n');
      }
      const auth = config.http.token === undefined ? { apiKeysFile: config.http.apiKeysFile } : { token: config.http.token };
      const api = createCloudHttpApi({
        dispatcher,
        ...auth,
        host: config.http.host,
        port: config.http.port,
        ...(config.http.tls === undefined ? {} : { tls: config.http.tls }),
        logger,
        metrics: config.metrics,
        console: { assetsDir: path.join(storelinkPackage().root, 'dist', 'console'), chart: chartModelOf(chart?.machine ?? BUILT_IN_CHARTS['storeLink']!) },
        deadLetters: {
          connectionString: config.deadLetters?.connectionString ?? config.serviceBus.connectionString,
          ...(config.serviceBus.transport === undefined ? {} : { transport: config.serviceBus.transport }),
          ...(config.serviceBus.endpointAddress === undefined ? {} : { endpointAddress: config.serviceBus.endpointAddress }),
          ...(config.proxy === undefined ? {} : { proxy: config.proxy }),
          ...(config.tls === undefined ? {} : { tls: config.tls }),
        },
      });
      try {
        const { port } = await api.listen();
        const stores = config.stores.length;
        // Started here, so the instance id (kept in dataDir unless given) is known, and a data dir in use is refused now.
        await dispatcher.start();
        const instance = config.serviceBus.inbox === 'topic' ? ` as instance ${dispatcher.instanceId!}` : '';
        const url = urlOf(config.http.host, port, config.http.tls !== undefined);
        // One line, as before: the console's address rides on it.
        io.stdout(`cloud dispatcher for ${stores} store${stores === 1 ? '' : 's'}${instance} serving ${url} (API key required), console ${url}/console/; Ctrl+C to stop\n`);
        await untilStopped(io.stopSignal);
      } finally {
        await api.close();
        await dispatcher.close();
      }
    });
}
