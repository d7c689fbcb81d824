/**
 * `storelink provision --stores stores.json --out <dir>`: every entity and rule of a chain, least privilege per store.
 *
 * Service Bus, through the management API (src/channels/servicebus/provisioning.ts; the same calls on Azure and on
 * the emulators' TLS port): a queue per store (duplicate detection on) with a `store` rule (Listen) of its own key and a `cloud` rule (Send);
 * `cloud-inbox` with duplicate detection, one `stores-send` rule (Send) that signs each store's pre-issued inbox token,
 * and a `cloud` rule (Listen). Every `cloud` rule carries the same key, so the cloud's one connection string holds
 * Send on the store queues and Listen on the inbox, nothing else (no namespace policy).
 *
 * Relay hybrid connections are managed by Azure Resource Manager, not by this API: the command writes
 * `relay/az-relay.sh` (the exact `az relay hyco` commands) and `relay/hybrid-connections.json`, the emulator's
 * Config.json fragment (`HybridConnections` with their `AuthorizationRules`), which is also where their keys are kept.
 *
 * Writes `<out>/<storeId>/store.json` (only that store's credentials, its signing key, the cloud's public key) and
 * `<out>/cloud/cloud.json`. Idempotent: existing rules, signing keys, relay keys and inbox tokens with more than half
 * their lifetime left are kept, and a file is written only when its content changes.
 */
import { access, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { z } from 'zod';
import { provisionQueues, provisionTopic, newRuleKey, type ProvisionedRule, type QueueProvisioning, type TopicProvisioning } from '../channels/servicebus/provisioning.js';
import { inboxSubscriptions } from '../cloud/inboxTopology.js';
import { parseConnectionString } from '../core/connectionString.js';
import { DEFAULT_CLOUD_INBOX, defaultStoreEntityName, instanceIdSchema, storeIdSchema } from '../core/names.js';
import { createSasToken } from '../core/sas.js';
import { readJsonConfig } from './configFile.js';
import { readTextFile } from './readTextFile.js';
import type { CliIo } from './program.js';
import { keyPairFiles, writeKeyPair } from './signingKeyFiles.js';

const DAY_IN_MS = 86_400_000;
export const DEFAULT_INBOX_TOKEN_DAYS = 90;
const CLOUD_KEY_ID = 'cloud-1';

const storesFileSchema = z.strictObject({
  $schema: z.string().optional(),
  /** The store module each store.json names (relative to where the store config will be); default ./store.js. */
  module: z.string().min(1).optional(),
  stores: z
    .array(z.strictObject({ storeId: storeIdSchema, bidirectional: z.boolean().optional(), module: z.string().min(1).optional() }))
    .min(1, 'must list at least one store')
    .max(10_000),
});

interface ProvisionOptions {
  stores: string;
  out: string;
  connectionString?: string;
  relayEndpoint?: string;
  tokenDays: number;
  caFile?: string;
  relayNamespace?: string;
  resourceGroup?: string;
  /** Several cloud instances: the inbox is a topic with their subscriptions (README "Several cloud instances"). */
  instances?: string[];
}

function instanceIds(value: string): string[] {
  const ids = value.split(',').map((id) => id.trim()).filter((id) => id.length > 0);
  if (ids.length === 0) throw new InvalidArgumentError('expected instance ids separated by commas, e.g. cloud-a,cloud-b,cloud-c');
  for (const id of ids) {
    const valid = instanceIdSchema.safeParse(id);
    if (!valid.success) throw new InvalidArgumentError(`instance id "${id}" ${valid.error.issues[0]!.message}`);
  }
  if (new Set(ids).size !== ids.length) throw new InvalidArgumentError('an instance id is listed twice');
  return ids;
}

function days(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1 || parsed > 3650) throw new InvalidArgumentError('expected a whole number of days from 1 to 3650');
  return parsed;
}

export function addProvisionCommand(program: Command, io: CliIo): void {
  program
    .command('provision')
    .description('create every queue and rule of the chain through the management API, and write one config per store with only its credentials')
    .requiredOption('--stores <file>', 'stores.json: { "module"?: "./store.js", "stores": [{ "storeId", "bidirectional"? }] }')
    .requiredOption('--out <dir>', 'where to write <storeId>/store.json, cloud/cloud.json and relay/')
    .option('--connection-string <cs>', 'a Service Bus connection string with Manage (default: $STORELINK_PROVISION_CONNECTION_STRING)')
    .option('--relay-endpoint <sb://host/>', "the relay namespace's endpoint (default: the Service Bus endpoint, as on the emulators' TLS port)")
    .option('--token-days <days>', 'lifetime of each store\'s pre-issued inbox token', days, DEFAULT_INBOX_TOKEN_DAYS)
    .option('--ca-file <file>', 'a CA certificate the written configs trust (tls.caFile), and the management calls too, e.g. the emulators\' development CA')
    .option('--relay-namespace <name>', 'the Azure Relay namespace, for relay/az-relay.sh')
    .option('--resource-group <name>', 'its resource group, for relay/az-relay.sh')
    .option('--instances <ids>', 'several cloud instances (ids separated by commas): the inbox becomes a topic with a replies, an events and one announcements subscription per instance', instanceIds)
    .action(async (options: ProvisionOptions) => {
      const connectionString = options.connectionString ?? process.env.STORELINK_PROVISION_CONNECTION_STRING;
      if (connectionString === undefined || connectionString.length === 0) {
        throw new InvalidArgumentError('give --connection-string or STORELINK_PROVISION_CONNECTION_STRING: a Service Bus connection string with Manage');
      }
      const summary = await provision({ ...options, connectionString, cwd: io.cwd, now: io.now ?? Date.now });
      io.stdout(summary.join('\n') + '\n');
    });
}

interface Context extends ProvisionOptions {
  connectionString: string;
  cwd: string;
  now: () => number;
}

interface RelayRuleFile {
  HybridConnections: { Name: string; AuthorizationRules: { KeyName: string; PrimaryKey: string; Rights: string[] }[] }[];
}

/** Runs the whole provisioning; returns the lines to print. */
export async function provision(ctx: Context): Promise<string[]> {
  const storesFile = path.resolve(ctx.cwd, ctx.stores);
  const spec = await readJsonConfig(storesFile, storesFileSchema, 'stores file');
  const ids = new Set<string>();
  for (const store of spec.stores) {
    if (ids.has(store.storeId)) throw new InvalidArgumentError(`${storesFile}: store "${store.storeId}" is listed twice`);
    ids.add(store.storeId);
  }
  const out = path.resolve(ctx.cwd, ctx.out);
  const endpoint = endpointOf(ctx.connectionString);
  const relayEndpoint = (ctx.relayEndpoint ?? endpoint).replace(/\/?$/, '/');
  const lines: string[] = [];
  let written = 0;
  const write = async (file: string, text: string): Promise<void> => {
    const previous = await readFile(file, 'utf8').catch(() => undefined);
    if (previous === text) return;
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text, { mode: 0o600 });
    written++;
  };

  // The CA the written configs trust is trusted for the management calls too (the emulators' development CA).
  const caCertificate = ctx.caFile === undefined ? undefined : await readTextFile(path.resolve(ctx.cwd, ctx.caFile));
  const trust = caCertificate === undefined ? {} : { caCertificate };
  // 1. The inbox first: its `cloud` rule's key is the key of every other `cloud` rule. A queue for one cloud
  // instance; for several, a topic of the same name (the stores send to it just the same) with their subscriptions.
  const inboxRules = [
    { keyName: 'stores-send', rights: ['Send' as const] },
    { keyName: 'cloud', rights: ['Listen' as const] },
  ];
  const inbox: QueueProvisioning | TopicProvisioning | undefined =
    ctx.instances === undefined
      ? (await provisionQueues({ connectionString: ctx.connectionString, ...trust, queues: [{ name: DEFAULT_CLOUD_INBOX, requiresDuplicateDetection: true, rules: inboxRules }] }))[0]
      : await provisionTopic({
          connectionString: ctx.connectionString,
          ...trust,
          topic: { name: DEFAULT_CLOUD_INBOX, requiresDuplicateDetection: true, rules: inboxRules, subscriptions: inboxSubscriptions(ctx.instances) },
        });
  const storesSend = ruleNamed(inbox!.rules, 'stores-send');
  const cloudKey = ruleNamed(inbox!.rules, 'cloud').primaryKey;
  const queues = await provisionQueues({
    connectionString: ctx.connectionString,
    ...trust,
    queues: spec.stores.map((store) => ({
      name: defaultStoreEntityName(store.storeId),
      requiresDuplicateDetection: true,
      rules: [
        { keyName: 'store', rights: ['Listen'] },
        { keyName: 'cloud', rights: ['Send'], primaryKey: cloudKey },
      ],
    })),
  });
  for (const result of [inbox!, ...queues]) {
    lines.push(`${result === inbox && ctx.instances !== undefined ? 'topic' : 'queue'} ${result.name}: ${result.change}`);
    for (const warning of result.warnings) lines.push(`warning: ${warning}`);
  }
  const subscriptions = inbox !== undefined && 'subscriptions' in inbox ? (inbox as TopicProvisioning).subscriptions : [];
  if (inbox !== undefined) {
    for (const subscription of subscriptions) lines.push(`subscription ${inbox.name}/${subscription.name}: ${subscription.change}`);
  }

  // 2. Relay rules: kept in the emulator fragment, which a second run reads back.
  const relayFile = path.join(out, 'relay', 'hybrid-connections.json');
  const previousRelay = (await readFile(relayFile, 'utf8').then((text) => JSON.parse(text) as RelayRuleFile).catch(() => undefined)) ?? { HybridConnections: [] };
  const relayKeyOf = (name: string, keyName: string): string =>
    previousRelay.HybridConnections.find((hc) => hc.Name === name)?.AuthorizationRules.find((rule) => rule.KeyName === keyName)?.PrimaryKey ?? newRuleKey();
  const bidirectional = spec.stores.filter((store) => store.bidirectional === true);
  const relay: RelayRuleFile = {
    HybridConnections: bidirectional.map((store) => {
      const name = defaultStoreEntityName(store.storeId);
      return {
        Name: name,
        AuthorizationRules: [
          { KeyName: 'store', PrimaryKey: relayKeyOf(name, 'store'), Rights: ['Listen'] },
          { KeyName: 'cloud', PrimaryKey: cloudKey, Rights: ['Send'] },
        ],
      };
    }),
  };
  await write(relayFile, JSON.stringify(relay, null, 2) + '\n');
  await write(path.join(out, 'relay', 'az-relay.sh'), azCommands(relay, ctx));

  // 3. The cloud's signing key, then one directory per store.
  const cloudDir = path.join(out, 'cloud');
  const cloudKeyFiles = await ensureKeyPair(path.join(cloudDir, 'keys'), CLOUD_KEY_ID);
  const cloudStores: Record<string, unknown>[] = [];
  for (const [index, store] of spec.stores.entries()) {
    const storeDir = path.join(out, store.storeId);
    const keyId = `${store.storeId}-1`;
    const storeKeys = await ensureKeyPair(path.join(storeDir, 'keys'), keyId);
    await copyIfChanged(cloudKeyFiles.publicKeyFile, path.join(storeDir, 'keys', `${CLOUD_KEY_ID}.pub.pem`));
    await copyIfChanged(storeKeys.publicKeyFile, path.join(cloudDir, 'keys', 'stores', `${keyId}.pub.pem`));
    const storeFile = path.join(storeDir, 'store.json');
    const queueRule = ruleNamed(queues[index]!.rules, 'store');
    const inboxString = await keptInboxString(storeFile, ctx) ?? inboxConnectionString(endpoint, storesSend, ctx);
    const hc = relay.HybridConnections.find((candidate) => candidate.Name === defaultStoreEntityName(store.storeId));
    const config = {
      storeId: store.storeId,
      module: store.module ?? spec.module ?? './store.js',
      dataDir: './data',
      serviceBus: {
        connectionString: `Endpoint=${endpoint};SharedAccessKeyName=store;SharedAccessKey=${queueRule.primaryKey}`,
        cloudInboxConnectionString: inboxString,
      },
      ...(hc === undefined ? {} : { relay: { connectionString: `Endpoint=${relayEndpoint};SharedAccessKeyName=store;SharedAccessKey=${hc.AuthorizationRules[0]!.PrimaryKey}` } }),
      signing: { keyId, privateKeyFile: `keys/${keyId}.key.pem` },
      trustedCloudKeys: { [CLOUD_KEY_ID]: `keys/${CLOUD_KEY_ID}.pub.pem` },
      ...(ctx.caFile === undefined ? {} : { tls: { caFile: path.resolve(ctx.cwd, ctx.caFile) } }),
    };
    await write(storeFile, JSON.stringify(config, null, 2) + '\n');
    cloudStores.push({ storeId: store.storeId, bidirectional: hc !== undefined, publicKeys: { [keyId]: `keys/stores/${keyId}.pub.pem` } });
  }
  const cloudConfig = {
    serviceBus: {
      connectionString: `Endpoint=${endpoint};SharedAccessKeyName=cloud;SharedAccessKey=${cloudKey}`,
      // Each instance runs with this file and its own --instance-id (one of --instances).
      ...(ctx.instances === undefined ? {} : { inbox: 'topic' }),
    },
    ...(bidirectional.length === 0 ? {} : { relay: { connectionString: `Endpoint=${relayEndpoint};SharedAccessKeyName=cloud;SharedAccessKey=${cloudKey}` } }),
    stores: cloudStores,
    signing: { keyId: CLOUD_KEY_ID, privateKeyFile: `keys/${CLOUD_KEY_ID}.key.pem` },
    http: { apiKeysFile: 'api-keys.json' },
    ...(ctx.caFile === undefined ? {} : { tls: { caFile: path.resolve(ctx.cwd, ctx.caFile) } }),
  };
  await write(path.join(cloudDir, 'cloud.json'), JSON.stringify(cloudConfig, null, 2) + '\n');
  lines.push(
    `${spec.stores.length} store(s), ${bidirectional.length} hybrid connection(s); ${written} file(s) written under ${out}`,
    `relay: apply ${path.join(out, 'relay', 'az-relay.sh')} on Azure, or merge ${relayFile} into the emulators' Config.json namespace`,
    `cloud: create its API keys with storelink apikeys create --name <who> --scopes publish,read --file ${path.join(cloudDir, 'api-keys.json')}`,
  );
  return lines;
}

function endpointOf(connectionString: string): string {
  const parsed = parseConnectionString(connectionString);
  if (parsed.useDevelopmentEmulator) {
    throw new InvalidArgumentError("the management API is HTTPS: give the production form of the connection string (the emulators' TLS port), not UseDevelopmentEmulator=true");
  }
  const match = /(?:^|;)\s*Endpoint=([^;]+)/i.exec(connectionString);
  return match![1]!.trim().replace(/\/?$/, '/');
}

function ruleNamed(rules: readonly ProvisionedRule[], keyName: string): ProvisionedRule {
  const rule = rules.find((candidate) => candidate.keyName === keyName);
  if (rule === undefined) throw new Error(`rule "${keyName}" was not provisioned`);
  return rule;
}

/** A pre-issued inbox token, signed by the inbox's one Send rule for stores. */
function inboxConnectionString(endpoint: string, rule: ProvisionedRule, ctx: Context): string {
  const token = createSasToken({
    resource: `${endpoint}${DEFAULT_CLOUD_INBOX}`,
    keyName: rule.keyName,
    key: rule.primaryKey,
    timeToLiveInMs: ctx.tokenDays * DAY_IN_MS,
    nowInMs: ctx.now(),
  });
  return `Endpoint=${endpoint};SharedAccessSignature=${token}`;
}

/** The inbox string of an earlier run, while more than half its lifetime is left. */
async function keptInboxString(storeFile: string, ctx: Context): Promise<string | undefined> {
  try {
    const previous = JSON.parse(await readFile(storeFile, 'utf8')) as { serviceBus?: { cloudInboxConnectionString?: string } };
    const text = previous.serviceBus?.cloudInboxConnectionString;
    if (text === undefined) return undefined;
    const expiresAt = parseConnectionString(text).signatureExpiresAtInMs;
    return expiresAt !== undefined && expiresAt - ctx.now() > (ctx.tokenDays * DAY_IN_MS) / 2 ? text : undefined;
  } catch {
    return undefined;
  }
}

async function ensureKeyPair(directory: string, keyId: string): Promise<{ privateKeyFile: string; publicKeyFile: string }> {
  const files = keyPairFiles(directory, keyId);
  const exists = await access(files.privateKeyFile).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(directory, { recursive: true });
    await writeKeyPair(directory, keyId);
  }
  return files;
}

async function copyIfChanged(from: string, to: string): Promise<void> {
  const [a, b] = await Promise.all([readFile(from, 'utf8'), readFile(to, 'utf8').catch(() => undefined)]);
  if (a === b) return;
  await mkdir(path.dirname(to), { recursive: true });
  await copyFile(from, to);
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The Azure CLI commands that give a relay namespace the same hybrid connections and rules (keys set after creation). */
function azCommands(relay: RelayRuleFile, ctx: Context): string {
  const group = '"$RESOURCE_GROUP"';
  const namespace = '"$RELAY_NAMESPACE"';
  const lines = [
    '#!/bin/sh',
    '# Written by storelink provision: the hybrid connections and their rules, on Azure Relay.',
    '# Needs SUBSCRIPTION_ID (and RESOURCE_GROUP, RELAY_NAMESPACE unless given to storelink provision).',
    'set -eu',
    `RESOURCE_GROUP=\${RESOURCE_GROUP:-${ctx.resourceGroup === undefined ? '' : shellQuote(ctx.resourceGroup)}}`,
    `RELAY_NAMESPACE=\${RELAY_NAMESPACE:-${ctx.relayNamespace === undefined ? '' : shellQuote(ctx.relayNamespace)}}`,
    ': "${SUBSCRIPTION_ID:?set SUBSCRIPTION_ID}" "${RESOURCE_GROUP:?set RESOURCE_GROUP}" "${RELAY_NAMESPACE:?set RELAY_NAMESPACE}"',
  ];
  for (const hc of relay.HybridConnections) {
    const name = shellQuote(hc.Name);
    lines.push(`az relay hyco create --resource-group ${group} --namespace-name ${namespace} --name ${name} --requires-client-authorization true`);
    for (const rule of hc.AuthorizationRules) {
      const common = `--resource-group ${group} --namespace-name ${namespace} --hybrid-connection-name ${name} --name ${shellQuote(rule.KeyName)}`;
      lines.push(`az relay hyco authorization-rule create ${common} --rights ${rule.Rights.join(' ')}`);
      // The rule's key is set to the one the configs hold through the documented regenerateKeys call, which takes a key value.
      const url = `https://management.azure.com/subscriptions/\${SUBSCRIPTION_ID}/resourceGroups/\${RESOURCE_GROUP}/providers/Microsoft.Relay/namespaces/\${RELAY_NAMESPACE}/hybridConnections/${hc.Name}/authorizationRules/${rule.KeyName}/regenerateKeys?api-version=2021-11-01`;
      lines.push(`az rest --method post --url "${url}" --body ${shellQuote(JSON.stringify({ keyType: 'PrimaryKey', key: rule.PrimaryKey }))}`);
    }
  }
  return lines.join('\n') + '\n';
}
