/**
 * Runs an emulator in its own process so a test can SIGKILL it. Usage:
 *   node --import tsx test/emulator/servicebus/emulatorProcess.ts <dataDir> <queue>
 * Prints one JSON line `{"port": N}` on stdout once it listens.
 */
import { startServiceBusEmulator } from '../../../src/emulator/servicebus/index.js';

const [dataDir, queue] = process.argv.slice(2);
if (dataDir === undefined || queue === undefined) {
  process.stderr.write('usage: emulatorProcess.ts <dataDir> <queue>\n');
  process.exit(2);
}
const emulator = await startServiceBusEmulator({ dataDir, namespaces: [{ queues: [{ name: queue }] }] });
process.stdout.write(`${JSON.stringify({ port: emulator.port })}\n`);
process.on('SIGTERM', () => {
  void emulator.close().then(() => process.exit(0));
});
