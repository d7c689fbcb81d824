/** What the long-running commands share about their JSON configuration files. */
import path from 'node:path';
import { z } from 'zod';
import { StorelinkError } from '../core/errors.js';
import { describeIssue } from '../core/validation.js';
import { readTextFile } from './readTextFile.js';

/** Reads and validates a JSON configuration file; every error names the file (and the field, when there is one). */
export async function readJsonConfig<Schema extends z.ZodType>(file: string, schema: Schema, what: string): Promise<z.output<Schema>> {
  const text = await readTextFile(file);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (cause) {
    throw new StorelinkError('FILE_UNREADABLE', `${file}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = schema.safeParse(document, { reportInput: true });
  if (!parsed.success) {
    const { field, text: problem } = describeIssue(parsed.error.issues[0]!);
    throw new StorelinkError('FILE_UNREADABLE', `${file}: invalid ${what}: ${problem}`, { field });
  }
  return parsed.data;
}

/** A secret from a configuration file, or `env:NAME` to read it from the environment and keep keys out of files. */
export function resolveSecret(value: string, where: string, env: NodeJS.ProcessEnv): string {
  if (!value.startsWith('env:')) return value;
  const name = value.slice('env:'.length);
  const found = env[name];
  if (found === undefined || found.length === 0) {
    throw new StorelinkError('FILE_UNREADABLE', `${where} names environment variable ${name}, which is not set`, { field: where });
  }
  return found;
}

/** `proxy` in a configuration file: the proxy both channels go through, or false for none (default: HTTPS_PROXY). */
export const proxyConfigSchema = z.union([
  z.literal(false),
  z.strictObject({
    url: z.string().min(1, 'must not be empty'),
    username: z.string().min(1, 'must not be empty').optional(),
    /** Or `env:NAME`. */
    password: z.string().min(1, 'must not be empty').optional(),
    noProxy: z.array(z.string().min(1, 'must not be empty').max(255)).max(200).optional(),
  }),
]);

/** `tls` in a configuration file: an extra CA to trust, relative to the file. */
export const tlsTrustConfigSchema = z.strictObject({ caFile: z.string().min(1, 'must not be empty').optional() });

export const transportSchema = z.enum(['websockets', 'amqp'], { message: "expected 'websockets' (AMQP over WebSockets, port 443) or 'amqp' (AMQP over TCP, port 5671)" });

export const endpointAddressSchema = z
  .string()
  .regex(/^(sb|amqps|https|wss):\/\/[^/\s]+\/?$/i, 'expected a scheme, host and port such as https://sb-gateway.example.com:443');

type ProxyConfig = z.output<typeof proxyConfigSchema>;

/** The proxy with its password read from the environment when it is `env:NAME`. */
export function resolveProxyConfig(proxy: ProxyConfig, env: NodeJS.ProcessEnv): ProxyConfig {
  if (proxy === false || proxy.password === undefined) return proxy;
  return { ...proxy, password: resolveSecret(proxy.password, 'proxy.password', env) };
}

/** `tls.caFile` resolved against the configuration file's folder. */
export function resolveTlsTrustConfig(tls: z.output<typeof tlsTrustConfigSchema>, base: string): { caFile?: string } {
  return tls.caFile === undefined ? {} : { caFile: path.resolve(base, tls.caFile) };
}
