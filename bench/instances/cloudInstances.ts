/**
 * The cloud side of the instances benchmark as an operator runs it: one cloud.json for every instance (the inbox a
 * topic, the operation records in one PostgreSQL, signatures on, secrets from the environment), an API key made with
 * `storelink apikeys create`, and each instance a `storelink cloud --config cloud.json --instance-id <id>` process
 * logging at the CLI's default level into its own file.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { Pool } from 'undici';
import { runCli } from '../../src/cli/program.js';
import { firstLine, startCliProcess } from '../../test/support/cliProcess.js';
import { ECHO_TYPE, type Endpoints, type KeyPem } from '../wholePath/protocol.js';

/** A relay call's own timeout: a slow call is measured as slow, not turned into a fallback to the queue. */
export const RELAY_TIMEOUT_IN_MS = 30_000;
const LINKS_READY_WITHIN_IN_MS = 120_000;

export interface CloudDeployment {
  configFile: string;
  apiKey: string;
  env: NodeJS.ProcessEnv;
  storeIds: string[];
  directory: string;
}

export interface CloudInstance {
  id: string;
  url: string;
  pid: number | undefined;
  child: ChildProcessWithoutNullStreams;
  /** SIGTERM (the CLI closes the API and the dispatcher), SIGKILL if it has not exited within 15 s. */
  stop(): Promise<void>;
}

/** Writes the key files, the API key file and cloud.json in `directory`. */
export async function writeCloudDeployment(
  directory: string,
  setup: { endpoints: Endpoints; cloudKey: KeyPem; storeKeys: Record<string, KeyPem>; storeIds: string[]; databaseConnectionString: string },
): Promise<CloudDeployment> {
  const keys = path.join(directory, 'keys');
  await mkdir(keys, { recursive: true });
  await writeFile(path.join(keys, `${setup.cloudKey.keyId}.key.pem`), setup.cloudKey.privateKeyPem, { mode: 0o600 });
  for (const storeId of setup.storeIds) {
    const key = setup.storeKeys[storeId]!;
    await writeFile(path.join(keys, `${key.keyId}.pub.pem`), key.publicKeyPem);
  }
  let apiKey = '';
  const created = await runCli(['apikeys', 'create', '--name', 'bench-driver', '--scopes', 'publish,read', '--file', 'api-keys.json'], {
    stdout: (text) => (apiKey += text),
    stderr: (text) => process.stderr.write(text),
    cwd: directory,
  });
  if (created !== 0) throw new Error(`storelink apikeys create exited ${created}`);
  const { endpoints } = setup;
  const config = {
    serviceBus: {
      connectionString: 'env:BENCH_STORELINK_SERVICEBUS',
      ...(endpoints.transport === 'tls-websockets' ? { transport: 'websockets' } : {}),
      inbox: 'topic',
    },
    relay: { connectionString: 'env:BENCH_STORELINK_RELAY' },
    proxy: false,
    ...(endpoints.caFile === undefined ? {} : { tls: { caFile: endpoints.caFile } }),
    policy: { operations: { [ECHO_TYPE]: { relayTimeoutInMs: RELAY_TIMEOUT_IN_MS } } },
    stores: setup.storeIds.map((storeId) => {
      const key = setup.storeKeys[storeId]!;
      return { storeId, bidirectional: true, publicKeys: { [key.keyId]: `keys/${key.keyId}.pub.pem` } };
    }),
    // One data dir for all: each instance keeps its link snapshots in its own folder in it.
    dataDir: 'data',
    database: { connectionString: 'env:BENCH_STORELINK_DATABASE' },
    signing: { keyId: setup.cloudKey.keyId, privateKeyFile: `keys/${setup.cloudKey.keyId}.key.pem` },
    http: { port: 0, apiKeysFile: 'api-keys.json' },
  };
  const configFile = path.join(directory, 'cloud.json');
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  return {
    configFile,
    apiKey: apiKey.trim(),
    env: { BENCH_STORELINK_SERVICEBUS: endpoints.serviceBus, BENCH_STORELINK_RELAY: endpoints.relay, BENCH_STORELINK_DATABASE: setup.databaseConnectionString },
    storeIds: setup.storeIds,
    directory,
  };
}

/** Starts one instance and resolves once its HTTP API serves (the CLI's first line names its address). */
export async function startCloudInstance(deployment: CloudDeployment, id: string): Promise<CloudInstance> {
  const { child } = startCliProcess(['cloud', '--config', deployment.configFile, '--instance-id', id], deployment.env);
  const log = createWriteStream(path.join(deployment.directory, `${id}.log`));
  child.stderr.pipe(log);
  const exited = once(child, 'exit');
  const line = await Promise.race([
    firstLine(child),
    exited.then(([code, signal]) => {
      throw new Error(`storelink cloud --instance-id ${id} exited (${String(code ?? signal)}) before serving; see ${path.join(deployment.directory, `${id}.log`)}`);
    }),
  ]);
  const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1];
  if (url === undefined || !line.includes(`as instance ${id}`)) throw new Error(`unexpected first line from instance ${id}: ${line}`);
  return {
    id,
    url,
    pid: child.pid,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.kill('SIGTERM');
      await exited;
      clearTimeout(timer);
      log.end();
    },
  };
}

/**
 * Resolves once the instance's every link carries the `relay` tag (its store's announcement reached this instance).
 * Polled: the announcement lands in another process, and GET /stores is the only way to see it from here.
 */
export async function untilRelayLinks(instance: CloudInstance, deployment: CloudDeployment): Promise<void> {
  const pool = new Pool(instance.url);
  try {
    const deadline = performance.now() + LINKS_READY_WITHIN_IN_MS;
    let waiting = deployment.storeIds.length;
    while (performance.now() < deadline) {
      const response = await pool.request({ path: '/stores', method: 'GET', headers: { authorization: `Bearer ${deployment.apiKey}` } });
      const body = (await response.body.json()) as { stores?: { storeId: string; tags: string[] }[] };
      if (response.statusCode !== 200) throw new Error(`GET /stores on ${instance.id} answered ${response.statusCode}: ${JSON.stringify(body)}`);
      waiting = deployment.storeIds.filter((storeId) => !(body.stores ?? []).some((store) => store.storeId === storeId && store.tags.includes('relay'))).length;
      if (waiting === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`instance ${instance.id}: ${waiting} store link(s) still without the relay after ${LINKS_READY_WITHIN_IN_MS} ms`);
  } finally {
    await pool.close();
  }
}
