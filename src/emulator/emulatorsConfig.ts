/**
 * The configuration file of `storelink emulator`: the official Service Bus emulator's `Config.json`
 * (`UserConfig.Namespaces[].Queues` and `Topics`), so existing files work unchanged, extended per namespace with
 * `HybridConnections: [{ Name, RequiresClientAuthorization, AuthorizationRules? }]` and `SharedAccessPolicies: [{ Name,
 * Key, SecondaryKey?, Rights }]`. Policies apply to both emulators; without any, the development key
 * `RootManageSharedAccessKey` / `SAS_KEY_VALUE` (Manage) is the only one. Rules of one entity, valid for it only, are
 * `AuthorizationRules: [{ KeyName, PrimaryKey, SecondaryKey?, Rights }]` on a hybrid connection, and in the
 * `Properties` of a queue or topic (read by the Service Bus emulator's own Config.json parser).
 */
import { z } from 'zod';
import { describeIssue } from '../core/validation.js';
import type { HybridConnectionDefinition } from './relay/index.js';
import { parseEmulatorConfig, type NamespaceOptions, type SharedAccessPolicy } from './servicebus/index.js';

export interface EmulatorsConfig {
  namespaces: NamespaceOptions[];
  hybridConnections: HybridConnectionDefinition[];
  /** Undefined when the file names no policy: each emulator then uses the development key. */
  sharedAccessPolicies: SharedAccessPolicy[] | undefined;
}

const extensionsSchema = z.object({
  UserConfig: z.object({
    Namespaces: z.array(
      z.object({
        HybridConnections: z
          .array(
            z.strictObject({
              Name: z.string().min(1, 'must not be empty').max(260),
              RequiresClientAuthorization: z.boolean().optional(),
              AuthorizationRules: z
                .array(
                  z.strictObject({
                    KeyName: z.string().min(1, 'must not be empty').max(256),
                    PrimaryKey: z.string().min(1, 'must not be empty'),
                    SecondaryKey: z.string().min(1, 'must not be empty').optional(),
                    Rights: z.array(z.enum(['Listen', 'Send', 'Manage'])).min(1, 'must list at least one right'),
                  }),
                )
                .max(12, 'Azure allows at most 12 rules on one entity')
                .optional(),
            }),
          )
          .optional(),
        SharedAccessPolicies: z
          .array(
            z.strictObject({
              Name: z.string().min(1, 'must not be empty'),
              Key: z.string().min(1, 'must not be empty'),
              SecondaryKey: z.string().min(1).optional(),
              Rights: z.array(z.enum(['Listen', 'Send', 'Manage'])).min(1, 'must list at least one right'),
            }),
          )
          .optional(),
      }),
    ),
  }),
});

/** Parses the file's JSON text (or parsed value). Throws a TypeError naming the failing path. */
export function parseEmulatorsConfig(config: unknown, source = 'config'): EmulatorsConfig {
  let input = config;
  if (typeof config === 'string') {
    try {
      input = JSON.parse(config) as unknown;
    } catch (cause) {
      throw new TypeError(`${source}: not valid JSON: ${(cause as Error).message}`, { cause });
    }
  }
  let namespaces: NamespaceOptions[];
  try {
    namespaces = parseEmulatorConfig(input).namespaces;
  } catch (cause) {
    throw new TypeError(`${source}: ${(cause as Error).message}`, { cause });
  }
  const result = extensionsSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    throw new TypeError(`${source}: ${result.error.issues.map((issue) => describeIssue(issue).text).join('; ')}`);
  }
  const hybridConnections: HybridConnectionDefinition[] = [];
  const policies: SharedAccessPolicy[] = [];
  const seenConnections = new Set<string>();
  const seenPolicies = new Set<string>();
  result.data.UserConfig.Namespaces.forEach((namespace, index) => {
    for (const connection of namespace.HybridConnections ?? []) {
      const key = connection.Name.toLowerCase();
      if (seenConnections.has(key)) {
        throw new TypeError(`${source}: UserConfig.Namespaces[${index}].HybridConnections: "${connection.Name}" is defined twice`);
      }
      seenConnections.add(key);
      const rules = (connection.AuthorizationRules ?? []).map((rule) => ({
        keyName: rule.KeyName,
        primaryKey: rule.PrimaryKey,
        ...(rule.SecondaryKey === undefined ? {} : { secondaryKey: rule.SecondaryKey }),
        rights: [...new Set(rule.Rights)],
      }));
      hybridConnections.push({
        name: connection.Name,
        requiresClientAuthorization: connection.RequiresClientAuthorization ?? true,
        ...(rules.length === 0 ? {} : { authorizationRules: rules }),
      });
    }
    for (const policy of namespace.SharedAccessPolicies ?? []) {
      if (seenPolicies.has(policy.Name)) {
        throw new TypeError(`${source}: UserConfig.Namespaces[${index}].SharedAccessPolicies: "${policy.Name}" is defined twice`);
      }
      seenPolicies.add(policy.Name);
      policies.push({
        keyName: policy.Name,
        primaryKey: policy.Key,
        ...(policy.SecondaryKey === undefined ? {} : { secondaryKey: policy.SecondaryKey }),
        rights: [...new Set(policy.Rights)],
      });
    }
  });
  return { namespaces, hybridConnections, sharedAccessPolicies: policies.length > 0 ? policies : undefined };
}
