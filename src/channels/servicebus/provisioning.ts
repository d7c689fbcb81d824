/**
 * The Service Bus half of `storelink provision`, through `ServiceBusAdministrationClient`: the same calls against Azure
 * and against the emulator's management API. Each queue is made to exist with at least the rules asked for; a rule
 * that already exists keeps its keys (so a second run changes nothing), a missing one is added with a fresh key.
 */
import { randomBytes } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import { ServiceBusAdministrationClient, type AuthorizationRule } from '@azure/service-bus';

export type Right = 'Listen' | 'Send' | 'Manage';

export interface WantedRule {
  keyName: string;
  rights: Right[];
  /** The key to give a new rule; default a fresh random 256-bit key. An existing rule keeps its own. */
  primaryKey?: string;
}

export interface WantedQueue {
  name: string;
  rules: WantedRule[];
  requiresDuplicateDetection?: boolean;
}

export interface ProvisionedRule {
  keyName: string;
  rights: Right[];
  primaryKey: string;
}

export interface QueueProvisioning {
  name: string;
  /** What was done: created the queue, added or changed rules, or nothing. */
  change: 'created' | 'updated' | 'unchanged';
  rules: ProvisionedRule[];
  /** What is not as asked and cannot be changed in place (duplicate detection is fixed at creation). */
  warnings: string[];
}

export function newRuleKey(): string {
  return randomBytes(32).toString('base64');
}

function sameRights(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((right) => b.includes(right));
}

/** Makes one queue exist with the wanted rules (other rules it has are left alone); returns the rules with their keys. */
export async function ensureQueue(admin: ServiceBusAdministrationClient, wanted: WantedQueue): Promise<QueueProvisioning> {
  const toSdk = (rule: WantedRule, primaryKey: string): AuthorizationRule => ({
    claimType: 'SharedAccessKey',
    keyName: rule.keyName,
    accessRights: rule.rights,
    primaryKey,
    secondaryKey: newRuleKey(),
  });
  if (!(await admin.queueExists(wanted.name))) {
    const created = await admin.createQueue(wanted.name, {
      requiresDuplicateDetection: wanted.requiresDuplicateDetection ?? false,
      authorizationRules: wanted.rules.map((rule) => toSdk(rule, rule.primaryKey ?? newRuleKey())),
    });
    return { name: wanted.name, change: 'created', rules: pick(created.authorizationRules ?? [], wanted.rules), warnings: [] };
  }
  const queue = await admin.getQueue(wanted.name);
  const existing = queue.authorizationRules ?? [];
  let changed = false;
  const next = [...existing];
  for (const rule of wanted.rules) {
    const index = next.findIndex((candidate) => candidate.keyName === rule.keyName);
    if (index < 0) {
      next.push(toSdk(rule, rule.primaryKey ?? newRuleKey()));
      changed = true;
    } else if (!sameRights(next[index]!.accessRights ?? [], rule.rights)) {
      next[index] = { ...next[index]!, accessRights: rule.rights };
      changed = true;
    }
  }
  const warnings =
    wanted.requiresDuplicateDetection === true && !queue.requiresDuplicateDetection
      ? [`queue "${wanted.name}" exists without duplicate detection, which cannot be turned on later: delete and re-create it`]
      : [];
  if (!changed) return { name: wanted.name, change: 'unchanged', rules: pick(existing, wanted.rules), warnings };
  const updated = await admin.updateQueue({ ...queue, authorizationRules: next });
  return { name: wanted.name, change: 'updated', rules: pick(updated.authorizationRules ?? next, wanted.rules), warnings };
}

function pick(rules: readonly AuthorizationRule[], wanted: readonly WantedRule[]): ProvisionedRule[] {
  return wanted.map((rule) => {
    const found = rules.find((candidate) => candidate.keyName === rule.keyName);
    if (found?.primaryKey === undefined) throw new Error(`rule "${rule.keyName}" is missing from the service's answer`);
    return { keyName: found.keyName, rights: rule.rights, primaryKey: found.primaryKey };
  });
}

/** A subscription with its one rule: a SQL filter, or a correlation filter on application properties. */
export interface WantedSubscription {
  name: string;
  requiresSession?: boolean;
  sqlFilter?: string;
  propertiesFilter?: Record<string, string>;
}

export interface WantedTopic {
  name: string;
  rules: WantedRule[];
  requiresDuplicateDetection?: boolean;
  subscriptions: WantedSubscription[];
}

export interface TopicProvisioning extends QueueProvisioning {
  /** Each subscription, and what was done: an existing one is left as it is (its filter included). */
  subscriptions: { name: string; change: 'created' | 'unchanged' }[];
}

/**
 * Makes one topic exist with the wanted rules and subscriptions. Refuses, with a message that says what to do, when a
 * queue has the topic's name (a namespace provisioned for one cloud instance, whose inbox is a queue).
 */
export async function ensureTopic(admin: ServiceBusAdministrationClient, wanted: WantedTopic): Promise<TopicProvisioning> {
  const toSdk = (rule: WantedRule, primaryKey: string): AuthorizationRule => ({
    claimType: 'SharedAccessKey',
    keyName: rule.keyName,
    accessRights: rule.rights,
    primaryKey,
    secondaryKey: newRuleKey(),
  });
  if (await admin.queueExists(wanted.name)) {
    throw new Error(
      `"${wanted.name}" is a queue (the inbox of a single cloud instance); several instances need it to be a topic: drain and delete the queue, then provision again`,
    );
  }
  let change: QueueProvisioning['change'];
  let rules: ProvisionedRule[];
  const warnings: string[] = [];
  if (!(await admin.topicExists(wanted.name))) {
    const created = await admin.createTopic(wanted.name, {
      requiresDuplicateDetection: wanted.requiresDuplicateDetection ?? false,
      authorizationRules: wanted.rules.map((rule) => toSdk(rule, rule.primaryKey ?? newRuleKey())),
    });
    change = 'created';
    rules = pick(created.authorizationRules ?? [], wanted.rules);
  } else {
    const topic = await admin.getTopic(wanted.name);
    const next = [...(topic.authorizationRules ?? [])];
    let changed = false;
    for (const rule of wanted.rules) {
      const index = next.findIndex((candidate) => candidate.keyName === rule.keyName);
      if (index < 0) {
        next.push(toSdk(rule, rule.primaryKey ?? newRuleKey()));
        changed = true;
      } else if (!sameRights(next[index]!.accessRights ?? [], rule.rights)) {
        next[index] = { ...next[index]!, accessRights: rule.rights };
        changed = true;
      }
    }
    if (wanted.requiresDuplicateDetection === true && !topic.requiresDuplicateDetection) {
      warnings.push(`topic "${wanted.name}" exists without duplicate detection, which cannot be turned on later: delete and re-create it`);
    }
    if (changed) {
      const updated = await admin.updateTopic({ ...topic, authorizationRules: next });
      change = 'updated';
      rules = pick(updated.authorizationRules ?? next, wanted.rules);
    } else {
      change = 'unchanged';
      rules = pick(next, wanted.rules);
    }
  }
  const subscriptions: TopicProvisioning['subscriptions'] = [];
  for (const subscription of wanted.subscriptions) {
    if (await admin.subscriptionExists(wanted.name, subscription.name)) {
      subscriptions.push({ name: subscription.name, change: 'unchanged' });
      continue;
    }
    const filter =
      subscription.sqlFilter !== undefined
        ? { sqlExpression: subscription.sqlFilter }
        : { applicationProperties: { ...(subscription.propertiesFilter ?? {}) } };
    await admin.createSubscription(wanted.name, subscription.name, {
      requiresSession: subscription.requiresSession ?? false,
      defaultRuleOptions: { name: 'storelink', filter },
    });
    subscriptions.push({ name: subscription.name, change: 'created' });
  }
  if (change === 'unchanged' && subscriptions.some((subscription) => subscription.change === 'created')) change = 'updated';
  return { name: wanted.name, change, rules, warnings, subscriptions };
}

export interface ProvisionTopicOptions {
  connectionString: string;
  topic: WantedTopic;
  caCertificate?: string;
  abortSignal?: AbortSignal;
}

export async function provisionTopic(options: ProvisionTopicOptions): Promise<TopicProvisioning> {
  options.abortSignal?.throwIfAborted();
  return ensureTopic(adminClient(options.connectionString, options.caCertificate), options.topic);
}

function adminClient(connectionString: string, caCertificate: string | undefined): ServiceBusAdministrationClient {
  return new ServiceBusAdministrationClient(connectionString, caCertificate === undefined ? {} : { tlsOptions: { ca: [...rootCertificates, caCertificate] } });
}

export interface ProvisionQueuesOptions {
  /** A connection string with Manage on the namespace. */
  connectionString: string;
  queues: WantedQueue[];
  /** A CA certificate (PEM) to trust for the management endpoint, besides the usual ones (e.g. the emulators' development CA). */
  caCertificate?: string;
  abortSignal?: AbortSignal;
}

/** Ensures every queue in turn (the management API is not built for bursts); closes nothing (the client holds no connection). */
export async function provisionQueues(options: ProvisionQueuesOptions): Promise<QueueProvisioning[]> {
  const admin = adminClient(options.connectionString, options.caCertificate);
  const results: QueueProvisioning[] = [];
  for (const queue of options.queues) {
    options.abortSignal?.throwIfAborted();
    results.push(await ensureQueue(admin, queue));
  }
  return results;
}
