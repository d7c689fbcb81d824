/** `storelink demo`: the embedded retail demo, ending with a reconciliation report (exit 0 only if it holds). */
import type { Command } from 'commander';
import { runDemo, type DemoReport } from '../demo/runDemo.js';
import { wholeNumber } from './optionParsers.js';
import { CliExit, EXIT_FAILED, type CliIo } from './program.js';

function summary(report: DemoReport): string {
  const lines = [
    'Reconciliation',
    `  published ${report.published} operations to ${report.stores.length} stores`,
    `  outcomes: ${Object.entries(report.outcomes).map(([key, count]) => `${key} ${count}`).join(', ')}`,
    `  fallbacks: ${report.fallbacks}; served from cache: ${report.servedCached}`,
    `  executed by the stores (in their ledgers): ${report.executed}`,
    `  rejected with a reason: ${report.rejected.length} (${[...new Set(report.rejected.map((item) => item.code))].join(', ') || 'none'})`,
    `  dead-lettered with a reason: ${report.deadLettered.length} (${[...new Set(report.deadLettered.map((item) => item.reason))].join(', ') || 'none'})`,
    `  lost: ${report.lost.length}   executed twice: ${report.duplicated.length}`,
    report.reconciled ? 'Every operation is accounted for.' : 'RECONCILIATION FAILED.',
    '',
  ];
  return lines.join('\n');
}

export function addDemoCommand(program: Command, io: CliIo): void {
  program
    .command('demo')
    .description('run the embedded demo: emulators, a cloud dispatcher and stores through a retail morning with faults')
    .option('--stores <n>', 'number of stores (every third one is async-only)', wholeNumber(1, 50), 3)
    .option('--duration <seconds>', 'how long operations are published', wholeNumber(1, 3600), 40)
    .option('--seed <n>', 'seed of the scripted morning', wholeNumber(1, 2 ** 31), 42)
    .option('--no-faults', 'play the morning without faults')
    .option('--json', 'print the reconciliation report as JSON (and nothing else on stdout)')
    .action(async (options: { stores: number; duration: number; seed: number; faults: boolean; json?: boolean }) => {
      const live = options.json !== true && process.stdout.isTTY === true;
      const report = await runDemo({
        stores: options.stores,
        durationInSeconds: options.duration,
        seed: options.seed,
        faults: options.faults,
        live,
        write: options.json === true ? () => undefined : io.stdout,
      });
      io.stdout(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : summary(report));
      if (!report.reconciled) throw new CliExit(EXIT_FAILED);
    });
}
