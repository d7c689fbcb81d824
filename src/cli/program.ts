/**
 * The `storelink` command line. Exit codes: 0 success, 1 a check or command failed, 2 a usage error (unknown command
 * or option, missing file). Results go to stdout, diagnostics to stderr.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { checkChart } from '../charts/checkChart.js';
import { chartModelOf } from '../charts/chartModel.js';
import { loadChart } from '../charts/loadChart.js';
import { renderMermaid } from '../charts/renderMermaid.js';
import { renderScxml } from '../charts/renderScxml.js';
import { isStorelinkError, isUsageErrorCode } from '../core/errors.js';
import { storelinkPackage } from '../packageRoot.js';
import { addApikeysCommand } from './apikeysCommand.js';
import { addDlqCommand } from './dlqCommand.js';
import { addDemoCommand } from './demoCommand.js';
import { addDoctorCommand } from './doctorCommand.js';
import { addCloudCommand } from './cloudCommand.js';
import { addEmulatorCommand } from './emulatorCommand.js';
import { addKeysCommand } from './keysCommand.js';
import { addOutboxCommand } from './outboxCommand.js';
import { addProvisionCommand } from './provisionCommand.js';
import { readPolicyFile } from './readPolicyFile.js';
import { addStoreCommand } from './storeCommand.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Directory that relative paths are resolved against. */
  cwd: string;
  /** Ends long-running commands (`emulator`) as SIGINT/SIGTERM do; for embedding and tests. */
  stopSignal?: AbortSignal;
  /** The clock `doctor` compares with the service's, in ms since the epoch (tests inject a skewed one). */
  now?: () => number;
}

const CHART_FORMATS = ['mermaid', 'scxml', 'json'] as const;
type ChartFormat = (typeof CHART_FORMATS)[number];

/** Thrown by a command to end with an exit code after printing its own diagnostics. */
export class CliExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

function buildProgram(io: CliIo): Command {
  const program = new Command('storelink')
    .description('Links a retail cloud to its stores: Service Bus queues by default, Azure Relay for real-time operations.')
    .version(storelinkPackage().version, '-v, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

  program
    .command('chart')
    .description('render a routing chart as a diagram or data')
    .argument('[chart]', 'a built-in chart name or a module path (.ts or .js), optionally with #exportName', 'storeLink')
    .addOption(new Option('-f, --format <format>', 'output format').choices(CHART_FORMATS).default('mermaid'))
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (spec: string, options: { format: ChartFormat; output?: string }) => {
      const { machine } = await loadChart(spec, io.cwd);
      const model = chartModelOf(machine);
      const text =
        options.format === 'mermaid' ? renderMermaid(model) : options.format === 'scxml' ? renderScxml(model) : `${JSON.stringify(model, null, 2)}\n`;
      if (options.output === undefined) {
        io.stdout(text);
      } else {
        await writeFile(path.resolve(io.cwd, options.output), text, 'utf8');
      }
    });

  const policy = program.command('policy').description('work with routing policies');
  policy
    .command('check')
    .description('validate a policy file, and check that a chart honours the routing contract with it')
    .argument('<policy>', 'path to a policy JSON file')
    .option('--chart <chart>', 'a built-in chart name or a module path to check with the policy', 'storeLink')
    .action(async (file: string, options: { chart: string }) => {
      const checked = await readPolicyFile(path.resolve(io.cwd, file));
      const { name, machine } = await loadChart(options.chart, io.cwd);
      const result = checkChart(machine, { linkPolicy: checked.link });
      if (result.problems.length > 0) {
        io.stderr(`storelink: chart ${name} breaks the routing contract:\n`);
        for (const problem of result.problems) io.stderr(`  [${problem.rule}] ${problem.message}\n`);
        throw new CliExit(EXIT_FAILED);
      }
      const types = Object.keys(checked.operations);
      io.stdout(
        `policy ${file}: valid (${types.length} operation type${types.length === 1 ? '' : 's'}${types.length > 0 ? `: ${types.join(', ')}` : ''})\n` +
          `chart ${name}: honours the routing contract (states reached: ${result.reachedStates.join(', ')})\n`,
      );
    });

  addEmulatorCommand(program, io);
  addStoreCommand(program, io);
  addDemoCommand(program, io);
  addDlqCommand(program, io);
  addOutboxCommand(program, io);
  addCloudCommand(program, io);
  addDoctorCommand(program, io);
  addApikeysCommand(program, io);
  addKeysCommand(program, io);
  addProvisionCommand(program, io);
  return program;
}

/** Runs the command line and resolves with its exit code; never calls process.exit. */
export async function runCli(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const resolvedIo: CliIo = {
    stdout: io.stdout ?? ((text) => process.stdout.write(text)),
    stderr: io.stderr ?? ((text) => process.stderr.write(text)),
    cwd: io.cwd ?? process.cwd(),
    ...(io.stopSignal === undefined ? {} : { stopSignal: io.stopSignal }),
    ...(io.now === undefined ? {} : { now: io.now }),
  };
  const program = buildProgram(resolvedIo);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CliExit) return error.exitCode;
    if (error instanceof CommanderError) {
      // Help and version are successful exits; everything else commander reports is a usage error.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (isStorelinkError(error)) {
      resolvedIo.stderr(`storelink: ${error.message}\n`);
      return isUsageErrorCode(error.code) ? EXIT_USAGE : EXIT_FAILED;
    }
    resolvedIo.stderr(`storelink: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILED;
  }
}
