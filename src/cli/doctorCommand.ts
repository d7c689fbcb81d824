/**
 * `storelink doctor --config store.json` (or `--cloud --config cloud.json`): why a store or the cloud does not
 * connect. Reads the same configuration file as `storelink store` / `storelink cloud`. Exit 0 when every check
 * passed, 1 when one failed, 2 for a usage error.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { renderTable } from '../doctor/checkup.js';
import { DEFAULT_CHECK_TIMEOUT_IN_MS, runCloudDoctor, runStoreDoctor, type ConnectivitySettings } from '../doctor/doctor.js';
import { readCloudConfig } from './cloudCommand.js';
import { wholeNumber } from './optionParsers.js';
import { CliExit, EXIT_FAILED, type CliIo } from './program.js';
import { readTextFile } from './readTextFile.js';
import { readStoreConfig } from './storeCommand.js';

interface DoctorCommandOptions {
  config: string;
  cloud?: boolean;
  json?: boolean;
  timeoutInMs: number;
}

/**
 * The connection settings both configurations may carry (proxy, extra CA, Service Bus transport and endpoint
 * address, the API's TLS files), read leniently from the file the strict reader already accepted: the doctor uses
 * them where it opens connections, and whatever else the file holds is the strict reader's business.
 */
const connectionSettingsSchema = z.looseObject({
  proxy: z
    .union([z.literal(false), z.looseObject({ url: z.string(), username: z.string().optional(), password: z.string().optional(), noProxy: z.array(z.string()).optional() })])
    .optional()
    .catch(undefined),
  tls: z.looseObject({ caFile: z.string().optional() }).optional().catch(undefined),
  serviceBus: z
    .looseObject({ transport: z.enum(['websockets', 'amqp']).optional().catch(undefined), endpointAddress: z.string().optional().catch(undefined) })
    .optional()
    .catch(undefined),
  http: z.looseObject({ tls: z.looseObject({ certFile: z.string(), keyFile: z.string() }).optional().catch(undefined) }).optional().catch(undefined),
});

type ConnectionSettings = z.infer<typeof connectionSettingsSchema>;

async function readConnectionSettings(file: string): Promise<ConnectionSettings> {
  const parsed = connectionSettingsSchema.safeParse(JSON.parse(await readTextFile(file)));
  return parsed.success ? parsed.data : {};
}

function connectivityOf(settings: ConnectionSettings, base: string): ConnectivitySettings {
  const caFile = settings.tls?.caFile;
  return {
    ...(settings.proxy === undefined ? {} : { proxy: settings.proxy }),
    ...(caFile === undefined ? {} : { tls: { caFile: path.resolve(base, caFile) } }),
  };
}

function serviceBusExtras(settings: ConnectionSettings): { transport?: 'websockets' | 'amqp'; endpointAddress?: string } {
  const transport = settings.serviceBus?.transport;
  const endpointAddress = settings.serviceBus?.endpointAddress;
  return { ...(transport === undefined ? {} : { transport }), ...(endpointAddress === undefined ? {} : { endpointAddress }) };
}

export function addDoctorCommand(program: Command, io: CliIo): void {
  program
    .command('doctor')
    .description("check a store's (or with --cloud, the cloud's) connections: names, ports, TLS, clock, and the rights of its keys, by trying them")
    .requiredOption('--config <file>', 'the configuration file of `storelink store` (or of `storelink cloud` with --cloud)')
    .option('--cloud', "check the cloud's configuration instead of a store's")
    .option('--json', 'print one JSON document instead of the table')
    .option('--timeout-in-ms <ms>', 'how long each check may take', wholeNumber(1, 600_000), DEFAULT_CHECK_TIMEOUT_IN_MS)
    .action(async (options: DoctorCommandOptions) => {
      const file = path.resolve(io.cwd, options.config);
      const base = path.dirname(file);
      const common = { timeoutInMs: options.timeoutInMs, ...(io.now === undefined ? {} : { now: io.now }) };
      let report;
      if (options.cloud === true) {
        const config = await readCloudConfig(file);
        const settings = await readConnectionSettings(file);
        const tls = settings.http?.tls;
        report = await runCloudDoctor({
          ...common,
          connectivity: connectivityOf(settings, base),
          serviceBus: { ...config.serviceBus, ...serviceBusExtras(settings) },
          ...(config.relay === undefined ? {} : { relay: config.relay }),
          stores: config.stores,
          http: {
            host: config.http.host,
            port: config.http.port,
            ...(tls === undefined ? {} : { tls: { certFile: path.resolve(base, tls.certFile), keyFile: path.resolve(base, tls.keyFile) } }),
          },
        });
      } else {
        const config = await readStoreConfig(file);
        const settings = await readConnectionSettings(file);
        report = await runStoreDoctor({
          ...common,
          connectivity: connectivityOf(settings, base),
          storeId: config.storeId,
          serviceBus: {
            connectionString: config.serviceBus.connectionString,
            ...(config.serviceBus.queue === undefined ? {} : { queue: config.serviceBus.queue }),
            ...(config.serviceBus.cloudInbox === undefined ? {} : { cloudInbox: config.serviceBus.cloudInbox }),
            ...(config.serviceBus.cloudInboxConnectionString === undefined ? {} : { cloudInboxConnectionString: config.serviceBus.cloudInboxConnectionString }),
            ...serviceBusExtras(settings),
          },
          ...(config.relay === undefined ? {} : { relay: config.relay }),
        });
      }
      io.stdout(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : renderTable(report));
      if (!report.ok) throw new CliExit(EXIT_FAILED);
    });
}
