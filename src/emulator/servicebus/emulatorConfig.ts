/**
 * Reads the official Service Bus emulator's `Config.json` (`UserConfig.Namespaces[].Queues[]` / `Topics[]`) into this
 * emulator's options, with one storelink extension: `AuthorizationRules` in a queue's or topic's `Properties`
 * (`[{ KeyName, PrimaryKey, SecondaryKey?, Rights }]`, keys valid for that entity only). Durations are ISO-8601 (`PT1M`, `P1DT2H`, `PT0.5S`); empty `ForwardTo` strings mean "none".
 */
import { z } from 'zod';
import { describeIssue } from '../../core/validation.js';
import {
  MAX_AUTHORIZATION_RULES_PER_ENTITY,
  type AuthorizationRule,
  type EntityProperties,
  type NamespaceOptions,
  type QueueOptions,
  type RuleOptions,
  type SubscriptionOptions,
  type TopicOptions,
} from './options.js';

const DURATION = /^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i;

/** Milliseconds in an ISO-8601 duration of weeks, days, hours, minutes and seconds. */
export function parseIsoDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (match === null || text.trim() === 'P' || /T$/i.test(text.trim())) {
    throw new RangeError(`"${text}" is not an ISO-8601 duration such as PT30S, PT1M or P1DT2H`);
  }
  const [, w, d, h, m, s] = match;
  const n = (value: string | undefined): number => (value === undefined ? 0 : Number(value));
  return Math.round((((n(w) * 7 + n(d)) * 24 + n(h)) * 60 + n(m)) * 60_000 + n(s) * 1000);
}

const duration = z.string().transform((text, context) => {
  try {
    return parseIsoDuration(text);
  } catch (error) {
    context.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

const forward = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

const entityProperties = z
  .object({
    LockDuration: duration.optional(),
    MaxDeliveryCount: z.number().int().positive().optional(),
    DefaultMessageTimeToLive: duration.optional(),
    DeadLetteringOnMessageExpiration: z.boolean().optional(),
    RequiresDuplicateDetection: z.boolean().optional(),
    DuplicateDetectionHistoryTimeWindow: duration.optional(),
    RequiresSession: z.boolean().optional(),
    ForwardTo: forward,
    ForwardDeadLetteredMessagesTo: forward,
    MaxMessageSizeInKilobytes: z.number().int().positive().optional(),
  })
  .loose();

/**
 * A storelink extension (the official emulator has no per-entity rules): `Properties.AuthorizationRules` of a queue or
 * topic, named as in Azure's entity descriptions (`KeyName`, `PrimaryKey`, `SecondaryKey`, `Rights`).
 */
const authorizationRule = z.strictObject({
  KeyName: z.string().min(1, 'must not be empty').max(256),
  PrimaryKey: z.string().min(1, 'must not be empty'),
  SecondaryKey: z.string().min(1, 'must not be empty').optional(),
  Rights: z.array(z.enum(['Listen', 'Send', 'Manage'])).min(1, 'must list at least one right'),
});

const ruleHolderProperties = entityProperties.extend({
  AuthorizationRules: z.array(authorizationRule).max(MAX_AUTHORIZATION_RULES_PER_ENTITY, `Azure allows at most ${MAX_AUTHORIZATION_RULES_PER_ENTITY} rules on one entity`).optional(),
});

const correlationFilter = z
  .object({
    ContentType: z.string().optional(),
    CorrelationId: z.string().optional(),
    Label: z.string().optional(),
    MessageId: z.string().optional(),
    ReplyTo: z.string().optional(),
    ReplyToSessionId: z.string().optional(),
    SessionId: z.string().optional(),
    To: z.string().optional(),
    Properties: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  })
  .loose();

const rule = z.object({
  Name: z.string().min(1),
  Properties: z
    .object({
      FilterType: z.enum(['Correlation', 'Sql', 'True', 'False']).optional(),
      CorrelationFilter: correlationFilter.optional(),
      SqlFilter: z.object({ SqlExpression: z.string().min(1) }).loose().optional(),
    })
    .loose(),
});

const subscription = z.object({
  Name: z.string().min(1),
  // Azure has no authorization rules on a subscription: its topic's rules cover it.
  Properties: entityProperties.extend({ AuthorizationRules: z.undefined({ error: 'a subscription has no rules of its own: put them on its topic' }).optional() }).optional(),
  Rules: z.array(rule).optional(),
});

const queue = z.object({ Name: z.string().min(1), Properties: ruleHolderProperties.optional() });

const topic = z.object({
  Name: z.string().min(1),
  Properties: ruleHolderProperties.optional(),
  Subscriptions: z.array(subscription).optional(),
});

const configSchema = z.object({
  UserConfig: z
    .object({
      Namespaces: z.array(
        z
          .object({
            Name: z.string().optional(),
            Queues: z.array(queue).optional(),
            Topics: z.array(topic).optional(),
          })
          .loose(),
      ),
    })
    .loose(),
});

type EntityPropertiesInput = z.infer<typeof entityProperties>;

function toAuthorizationRules(props: z.infer<typeof ruleHolderProperties> | undefined): { authorizationRules?: AuthorizationRule[] } {
  const rules = props?.AuthorizationRules;
  if (rules === undefined) return {};
  return {
    authorizationRules: rules.map((rule) => ({
      keyName: rule.KeyName,
      primaryKey: rule.PrimaryKey,
      ...(rule.SecondaryKey === undefined ? {} : { secondaryKey: rule.SecondaryKey }),
      rights: [...new Set(rule.Rights)],
    })),
  };
}

function toProperties(props: EntityPropertiesInput | undefined): EntityProperties {
  const out: EntityProperties = {};
  if (props === undefined) return out;
  if (props.LockDuration !== undefined) out.lockDurationInMs = props.LockDuration;
  if (props.MaxDeliveryCount !== undefined) out.maxDeliveryCount = props.MaxDeliveryCount;
  if (props.DefaultMessageTimeToLive !== undefined) out.defaultMessageTimeToLiveInMs = props.DefaultMessageTimeToLive;
  if (props.DeadLetteringOnMessageExpiration !== undefined) out.deadLetteringOnMessageExpiration = props.DeadLetteringOnMessageExpiration;
  if (props.RequiresDuplicateDetection !== undefined) out.requiresDuplicateDetection = props.RequiresDuplicateDetection;
  if (props.DuplicateDetectionHistoryTimeWindow !== undefined) out.duplicateDetectionHistoryTimeWindowInMs = props.DuplicateDetectionHistoryTimeWindow;
  if (props.RequiresSession !== undefined) out.requiresSession = props.RequiresSession;
  if (props.ForwardTo !== undefined) out.forwardTo = props.ForwardTo;
  if (props.ForwardDeadLetteredMessagesTo !== undefined) out.forwardDeadLetteredMessagesTo = props.ForwardDeadLetteredMessagesTo;
  if (props.MaxMessageSizeInKilobytes !== undefined) out.maxMessageSizeInBytes = props.MaxMessageSizeInKilobytes * 1024;
  return out;
}

function toRule(input: z.infer<typeof rule>): RuleOptions {
  const p = input.Properties;
  const type = p.FilterType ?? (p.SqlFilter !== undefined ? 'Sql' : p.CorrelationFilter !== undefined ? 'Correlation' : 'True');
  if (type === 'Sql') return { name: input.Name, sqlFilter: p.SqlFilter?.SqlExpression ?? '1=1' };
  if (type === 'Correlation') {
    const f = p.CorrelationFilter ?? {};
    const filter: NonNullable<RuleOptions['correlationFilter']> = {};
    if (f.ContentType !== undefined) filter.contentType = f.ContentType;
    if (f.CorrelationId !== undefined) filter.correlationId = f.CorrelationId;
    if (f.Label !== undefined) filter.subject = f.Label;
    if (f.MessageId !== undefined) filter.messageId = f.MessageId;
    if (f.ReplyTo !== undefined) filter.replyTo = f.ReplyTo;
    if (f.ReplyToSessionId !== undefined) filter.replyToSessionId = f.ReplyToSessionId;
    if (f.SessionId !== undefined) filter.sessionId = f.SessionId;
    if (f.To !== undefined) filter.to = f.To;
    if (f.Properties !== undefined) filter.applicationProperties = f.Properties;
    return { name: input.Name, correlationFilter: filter };
  }
  return { name: input.Name, matchAll: type === 'True' };
}

/**
 * Parses the official emulator's `Config.json` (text or parsed JSON) into `namespaces` options. Throws a `TypeError`
 * whose message names the failing path, e.g. `UserConfig.Namespaces[0].Queues[1].Properties.LockDuration: ...`.
 */
export function parseEmulatorConfig(config: unknown): { namespaces: NamespaceOptions[] } {
  let input = config;
  if (typeof config === 'string') {
    try {
      input = JSON.parse(config) as unknown;
    } catch (cause) {
      throw new TypeError(`Config.json is not valid JSON: ${(cause as Error).message}`, { cause });
    }
  }
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const details = result.error.issues.map((issue) => describeIssue(issue).text).join('; ');
    throw new TypeError(`Invalid Service Bus emulator config: ${details}`);
  }
  const namespaces = result.data.UserConfig.Namespaces.map((ns): NamespaceOptions => {
    const queues = (ns.Queues ?? []).map((q): QueueOptions => ({ name: q.Name, ...toProperties(q.Properties), ...toAuthorizationRules(q.Properties) }));
    const topics = (ns.Topics ?? []).map((t): TopicOptions => {
      const props = toProperties(t.Properties);
      const out: TopicOptions = { name: t.Name, ...toAuthorizationRules(t.Properties), subscriptions: (t.Subscriptions ?? []).map((s): SubscriptionOptions => {
        const sub: SubscriptionOptions = { name: s.Name, ...toProperties(s.Properties) };
        if (s.Rules !== undefined && s.Rules.length > 0) sub.rules = s.Rules.map(toRule);
        return sub;
      }) };
      if (props.defaultMessageTimeToLiveInMs !== undefined) out.defaultMessageTimeToLiveInMs = props.defaultMessageTimeToLiveInMs;
      if (props.requiresDuplicateDetection !== undefined) out.requiresDuplicateDetection = props.requiresDuplicateDetection;
      if (props.duplicateDetectionHistoryTimeWindowInMs !== undefined) out.duplicateDetectionHistoryTimeWindowInMs = props.duplicateDetectionHistoryTimeWindowInMs;
      if (props.maxMessageSizeInBytes !== undefined) out.maxMessageSizeInBytes = props.maxMessageSizeInBytes;
      return out;
    });
    const out: NamespaceOptions = { queues, topics };
    if (ns.Name !== undefined) out.name = ns.Name;
    return out;
  });
  return { namespaces };
}
