/** `storelink emulator`: runs both local Azure emulators until SIGINT or SIGTERM. */
import path from 'node:path';
import type { Command } from 'commander';
import { StorelinkError } from '../core/errors.js';
import { parseEmulatorsConfig, type EmulatorsConfig } from '../emulator/emulatorsConfig.js';
import { startEmulators } from '../emulator/startEmulators.js';
import { portNumber } from './optionParsers.js';
import type { CliIo } from './program.js';
import { untilStopped } from './untilStopped.js';
import { readTextFile } from './readTextFile.js';

interface EmulatorCommandOptions {
  host: string;
  servicebusPort: number;
  relayPort: number;
  config?: string;
  dataDir?: string;
  autoCreate?: boolean;
  json?: boolean;
  tlsPort?: number;
  tlsCert?: string;
  tlsKey?: string;
}

async function readConfig(file: string): Promise<EmulatorsConfig> {
  const text = await readTextFile(file);
  try {
    return parseEmulatorsConfig(text, file);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', (cause as Error).message, { cause });
  }
}

export function addEmulatorCommand(program: Command, io: CliIo): void {
  program
    .command('emulator')
    .description('run the local Azure Service Bus and Azure Relay emulators until interrupted')
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('--servicebus-port <port>', 'Service Bus (AMQP) port; 0 picks a free one', portNumber, 5672)
    .option('--relay-port <port>', 'Relay (HTTP and WebSocket) port; 0 picks a free one', portNumber, 9352)
    .option('--config <file>', "the Service Bus emulator's Config.json, with HybridConnections and SharedAccessPolicies per namespace")
    .option('--data-dir <dir>', 'keep Service Bus messages on disk here (in memory without it)')
    .option('--auto-create', 'create unknown queues and hybrid connections on first use')
    .option('--tls-port <port>', 'also serve both emulators over TLS on this port (AMQPS, AMQP over wss, relay https/wss); 0 picks a free one', portNumber)
    .option('--tls-cert <file>', "the TLS port's certificate (PEM); without it a development CA in <data-dir>/tls issues one")
    .option('--tls-key <file>', "the TLS port's private key (PEM), with --tls-cert")
    .option('--json', 'print one JSON line with both endpoints when ready, and nothing else on stdout')
    .action(async (options: EmulatorCommandOptions, command: Command) => {
      if ((options.tlsCert === undefined) !== (options.tlsKey === undefined) || (options.tlsCert !== undefined && options.tlsPort === undefined)) {
        command.error('storelink: --tls-cert and --tls-key go together, and with --tls-port', { exitCode: 2, code: 'storelink.tlsOptions' });
      }
      const config = options.config === undefined ? undefined : await readConfig(path.resolve(io.cwd, options.config));
      const emulators = await startEmulators({
        host: options.host,
        serviceBusPort: options.servicebusPort,
        relayPort: options.relayPort,
        namespaces: config?.namespaces ?? [],
        hybridConnections: config?.hybridConnections ?? [],
        ...(config?.sharedAccessPolicies === undefined ? {} : { sharedAccessPolicies: config.sharedAccessPolicies }),
        autoCreate: options.autoCreate === true,
        ...(options.dataDir === undefined ? {} : { dataDir: path.resolve(io.cwd, options.dataDir) }),
        ...(options.tlsPort === undefined ? {} : { tlsPort: options.tlsPort }),
        ...(options.tlsCert === undefined || options.tlsKey === undefined
          ? {}
          : { tls: { certFile: path.resolve(io.cwd, options.tlsCert), keyFile: path.resolve(io.cwd, options.tlsKey) } }),
      });
      const tls = emulators.tls;
      const ready = {
        serviceBus: { port: emulators.serviceBus.port, connectionString: emulators.serviceBusConnectionString() },
        relay: { port: emulators.relay.port, connectionString: emulators.relayConnectionString() },
        ...(tls === undefined
          ? {}
          : {
              tls: {
                port: tls.port,
                caFile: tls.caFile ?? null,
                serviceBus: { connectionString: tls.serviceBusConnectionString(), endpointAddress: tls.serviceBusEndpointAddress },
                relay: { connectionString: tls.relayConnectionString() },
              },
            }),
      };
      if (options.json === true) {
        io.stdout(`${JSON.stringify(ready)}\n`);
      } else {
        io.stdout(
          [
            `Service Bus emulator on ${options.host}:${ready.serviceBus.port}`,
            `  ${ready.serviceBus.connectionString}`,
            `Relay emulator on ${options.host}:${ready.relay.port}`,
            `  ${ready.relay.connectionString}`,
            ...(tls === undefined
              ? []
              : [
                  `Both over TLS on ${options.host}:${tls.port} (AMQPS, AMQP over wss at /$servicebus/websocket, relay https and wss)`,
                  `  Service Bus: ${tls.serviceBusConnectionString()}`,
                  `  Relay:       ${tls.relayConnectionString()}`,
                  `  A client given only the host name needs customEndpointAddress ${tls.serviceBusEndpointAddress}`,
                  tls.caFile === undefined
                    ? '  Certificate from --tls-cert; clients must trust its issuer.'
                    : `  Trust the development CA: NODE_EXTRA_CA_CERTS=${tls.caFile}`,
                ]),
            options.dataDir === undefined ? 'Messages are kept in memory.' : `Messages are kept in ${options.dataDir}.`,
            'Development keys only. Press Ctrl+C to stop.',
            '',
          ].join('\n'),
        );
      }
      const reason = await untilStopped(io.stopSignal);
      await emulators.close();
      if (options.json !== true) io.stderr(`storelink: emulators stopped (${reason})\n`);
    });
}
