/**
 * What the API's routes answer, as zod schemas: the OpenAPI document is generated from them (see openapi.ts), and
 * the tests parse real answers with them, so the document cannot drift from what the server sends.
 */
import { z } from 'zod';
import { API_SCOPES } from '../apiKeys.js';

const jsonValue = z.unknown().describe('any JSON value');
const isoInstant = z.iso.datetime({ offset: true });

/** `POST /stores/:storeId/operations`: what a publish did (src/cloud/deliver.ts, Delivery). */
export const deliverySchema = z.object({
  operationId: z.string(),
  storeId: z.string(),
  type: z.string(),
  latency: z.enum(['async', 'realtime']),
  channel: z.enum(['relay', 'queue']).nullable().describe('the channel that carried it last; null when nothing was sent'),
  outcome: z.enum(['delivered', 'queued', 'rejected', 'served-cached', 'failed']),
  reply: jsonValue.optional(),
  rejection: z.object({ code: z.string(), message: z.string() }).optional(),
  failure: z.object({ code: z.string(), message: z.string(), executed: z.boolean() }).optional(),
  cachedAgeInMs: z.number().optional(),
  fallbackReason: z.string().optional(),
  attempts: z.number().int(),
  durationInMs: z.number(),
});

/** What a store last said about its outbox (a `store.outbox` report), as the cloud shows it. */
export const outboxReportSchema = z
  .object({
    pending: z.number().int().min(0).describe('entries waiting to be sent when the store wrote the report'),
    parked: z.number().int().min(0).describe('entries set aside as unsendable (`storelink outbox`)'),
    reportedAt: isoInstant.describe("when the store wrote the report (the store's clock)"),
  })
  .describe("the store's outbox as its last report saw it; null until one arrives");

/** A store and its link (src/cloud/http/linkViews.ts, StoreLinkView). */
export const storeLinkViewSchema = z.object({
  storeId: z.string(),
  bidirectional: z.boolean(),
  state: z.string().describe("the chart's top-level state"),
  stateValue: jsonValue.describe("the chart's whole state value, sub-states included"),
  tags: z.array(z.string()),
  counters: z.object({
    deliveries: z.record(z.string(), z.number()).describe('by `<channel>:<outcome>`'),
    fallbacks: z.record(z.string(), z.number()).describe('by reason'),
  }),
  backlog: z.number().int().min(0).describe('operations this instance put on the queue whose outcome it has not learnt yet'),
  outbox: outboxReportSchema.nullable(),
});

export const storeListSchema = z.object({ stores: z.array(storeLinkViewSchema) });

export const apiKeyListSchema = z.object({
  keys: z.array(z.object({ name: z.string(), scopes: z.array(z.enum(API_SCOPES)), createdAt: isoInstant, expiresAt: isoInstant.optional() })),
});

/** An operation's final outcome as the cloud learnt it (src/cloud/outcomes.ts, OperationOutcome). */
export const operationOutcomeSchema = z.object({
  operationId: z.string(),
  storeId: z.string(),
  type: z.string(),
  outcome: z.enum(['done', 'rejected', 'failed']),
  reply: jsonValue.optional(),
  rejection: z.object({ code: z.string(), message: z.string() }).optional(),
  failure: z.object({ code: z.string(), message: z.string(), executed: z.boolean() }).optional(),
  channel: z.enum(['relay', 'queue']),
  late: z.boolean(),
  at: isoInstant,
});

/** `GET /operations/:id`: what became of one operation (src/cloud/operationRecords.ts, OperationStatus). */
export const operationStatusSchema = z.object({
  id: z.string(),
  storeId: z.string(),
  type: z.string(),
  latency: z.enum(['async', 'realtime']),
  status: z.enum(['in-flight', 'queued', 'done', 'rejected', 'failed']),
  channel: z.enum(['relay', 'queue']).nullable(),
  fallback: z.string().nullable(),
  outcome: operationOutcomeSchema.nullable(),
  lateOutcomes: z.number().int(),
  publishedAt: isoInstant,
  deliveredAt: isoInstant.nullable(),
  outcomeAt: isoInstant.nullable(),
  durationInMs: z.number().nullable(),
  instanceId: z.string(),
});

/** `GET /stores/:storeId/operations`: one page of a store's records, newest first. */
export const operationPageSchema = z.object({ operations: z.array(operationStatusSchema), nextCursor: z.string().nullable() });
