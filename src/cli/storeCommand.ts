/** `storelink store --config FILE`: runs one store agent until SIGINT or SIGTERM. */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { entityNameSchema, storeIdSchema } from '../core/names.js';
import { createStoreAgent } from '../store/storeAgent.js';
import { loadStoreModule } from '../store/storeModule.js';
import { createCliLogger, LOG_LEVELS, type LogLevel } from './logger.js';
import type { CliIo } from './program.js';
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
import { readSigningKey, readTrustedKeys, signingKeyConfigSchema, trustedKeysConfigSchema } from './signingKeyFiles.js';
import type { SigningKey } from '../core/signing.js';

/** A connection string, or `env:NAME` to read it from the environment and keep keys out of files. */
const secretSchema = z.string().min(1, 'must not be empty');

const storeConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  storeId: storeIdSchema,
  /** Path to a store module exporting createStore(context). */
  module: z.string().min(1, 'must not be empty'),
  dataDir: z.string().min(1, 'must not be empty'),
  serviceBus: z.strictObject({
    connectionString: secretSchema,
    /** Default websockets (port 443); amqp for TCP 5671. */
    transport: transportSchema.optional(),
    endpointAddress: endpointAddressSchema.optional(),
    queue: entityNameSchema.optional(),
    cloudInbox: entityNameSchema.optional(),
    /** A credential of its own for Send on the inbox (a SharedAccessSignature string); default connectionString. */
    cloudInboxConnectionString: secretSchema.optional(),
    concurrency: z.number().int().min(1).max(64).optional(),
    handlerRetry: z
      .strictObject({
        initialDelayInMs: z.number().int().min(1).optional(),
        maxDelayInMs: z.number().int().min(1).optional(),
        maxRetryWindowInMs: z.number().int().min(0).optional(),
      })
      .optional(),
    maxDeliveryCount: z.number().int().min(1).max(2_000).optional(),
  }),
  relay: z
    .strictObject({
      connectionString: secretSchema,
      hybridConnection: entityNameSchema.optional(),
      /** How long a relay answer's outbox copy waits for the cloud's confirmation (README "The store agent"). */
      replyHoldInMs: z.number().int().min(0).max(600_000).optional(),
    })
    .optional(),
  /** The store's private key (PEM file, relative to the configuration file): it signs everything the store sends. */
  signing: signingKeyConfigSchema,
  /** The cloud's public keys by key id (PEM files): the store runs only operations one of them signed. */
  trustedCloudKeys: trustedKeysConfigSchema,
  proxy: proxyConfigSchema.optional(),
  tls: tlsTrustConfigSchema.optional(),
}).superRefine((config, context) => {
  if (config.serviceBus.transport === 'amqp' && config.proxy !== undefined && config.proxy !== false) {
    context.addIssue({
      code: 'custom',
      path: ['proxy'],
      message: "cannot apply to serviceBus.transport 'amqp': AMQP over TCP cannot go through an HTTPS proxy (use transport 'websockets')",
    });
  }
});

/** The configuration with paths resolved, secrets read and key files loaded. */
export type StoreConfig = Omit<z.infer<typeof storeConfigSchema>, 'signing' | 'trustedCloudKeys'> & {
  signing: SigningKey;
  trustedCloudKeys: Record<string, string>;
};

export async function readStoreConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<StoreConfig> {
  const config = await readJsonConfig(file, storeConfigSchema, 'store configuration');
  const base = path.dirname(file);
  return {
    ...config,
    module: path.resolve(base, config.module),
    dataDir: path.resolve(base, config.dataDir),
    serviceBus: {
      ...config.serviceBus,
      connectionString: resolveSecret(config.serviceBus.connectionString, 'serviceBus.connectionString', env),
      ...(config.serviceBus.cloudInboxConnectionString === undefined
        ? {}
        : { cloudInboxConnectionString: resolveSecret(config.serviceBus.cloudInboxConnectionString, 'serviceBus.cloudInboxConnectionString', env) }),
    },
    ...(config.relay === undefined
      ? {}
      : { relay: { ...config.relay, connectionString: resolveSecret(config.relay.connectionString, 'relay.connectionString', env) } }),
    ...(config.proxy === undefined ? {} : { proxy: resolveProxyConfig(config.proxy, env) }),
    ...(config.tls === undefined ? {} : { tls: resolveTlsTrustConfig(config.tls, base) }),
    signing: await readSigningKey(config.signing, base),
    trustedCloudKeys: await readTrustedKeys(config.trustedCloudKeys, base),
  };
}

export function addStoreCommand(program: Command, io: CliIo): void {
  program
    .command('store')
    .description('run one store: its queue consumer, its relay listener (if configured) and its outbox')
    .requiredOption('--config <file>', 'store configuration (JSON): storeId, module, dataDir, serviceBus, relay, signing, trustedCloudKeys')
    .addOption(new Option('--log-level <level>', 'log level (JSON lines on stderr)').choices(LOG_LEVELS).default('info'))
    .action(async (options: { config: string; logLevel: LogLevel }) => {
      const config = await readStoreConfig(path.resolve(io.cwd, options.config));
      const logger = createCliLogger(options.logLevel, 'storelink-store');
      const createStore = await loadStoreModule(config.module);
      const store = await createStore({ storeId: config.storeId, dataDir: config.dataDir, logger });
      const agent = createStoreAgent({
        storeId: config.storeId,
        handlers: store.handlers,
        ...(config.relay === undefined ? {} : { expose: store.expose ?? [], relay: config.relay }),
        serviceBus: config.serviceBus,
        ...(config.proxy === undefined ? {} : { proxy: config.proxy }),
        ...(config.tls === undefined ? {} : { tls: config.tls }),
        dataDir: config.dataDir,
        signing: config.signing,
        trustedCloudKeys: config.trustedCloudKeys,
        logger,
      });
      try {
        await agent.start();
        io.stdout(`store ${config.storeId} running (relay: ${config.relay === undefined ? 'none' : 'yes'}); Ctrl+C to stop\n`);
        await untilStopped(io.stopSignal);
      } finally {
        await agent.close();
        await store.close?.();
      }
    });
}
