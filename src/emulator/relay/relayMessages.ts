/**
 * The JSON messages of the Hybrid Connections control protocol: schemas for what listeners send (validated before
 * use), and builders for what the relay sends. The relay only ever sends well-formed `request` messages: anything
 * else would crash hyco-https (spec §11 P9, P16).
 */
import { z } from 'zod';

const statusCodeSchema = z.union([
  z.number().int().min(100).max(999),
  z
    .string()
    .regex(/^\d{3}$/)
    .transform(Number),
]);

export const responseMessageSchema = z.object({
  requestId: z.string().min(1).max(512),
  statusCode: statusCodeSchema,
  statusDescription: z.string().max(8192).nullish(),
  // Values are filtered one by one later: a bad header must not cost the whole response.
  responseHeaders: z.record(z.string(), z.unknown()).nullish(),
  body: z.boolean().nullish(),
});

export type ResponseMessage = z.infer<typeof responseMessageSchema>;

const listenerMessageSchema = z.union([
  z.object({ response: responseMessageSchema }),
  z.object({ renewToken: z.object({ token: z.string().max(16_384) }) }),
]);

export type ListenerMessage = { kind: 'response'; response: ResponseMessage } | { kind: 'renewToken'; token: string };

/** Parses one text frame from a listener; the error string says what was wrong (for the log, never the listener). */
export function parseListenerMessage(text: string): { ok: true; message: ListenerMessage } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const parsed = listenerMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, error: `not a response or renewToken message (${issue?.path.join('.') ?? ''}: ${issue?.message ?? '?'})` };
  }
  if ('response' in parsed.data) return { ok: true, message: { kind: 'response', response: parsed.data.response } };
  return { ok: true, message: { kind: 'renewToken', token: parsed.data.renewToken.token } };
}

export interface RequestMessageFields {
  address: string;
  id: string;
  requestTarget: string;
  method: string;
  remoteEndpoint: { address: string; port: number };
  requestHeaders: Record<string, string>;
  /** True iff exactly one binary body message follows (never true for an empty body, spec §11 P10). */
  body: boolean;
}

export function requestMessage(fields: RequestMessageFields): string {
  return JSON.stringify({ request: fields });
}

/** The control-channel notice of a rendezvous request: no `method` and no `body`, which is how clients recognise it. */
export function rendezvousNotice(address: string, id: string): string {
  return JSON.stringify({ request: { address, id } });
}
