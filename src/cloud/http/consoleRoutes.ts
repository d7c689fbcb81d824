/**
 * The operations console (`/console`) and the routes only it needs:
 *
 *   GET /console, /console/<file>     public  the console's static files (built by `npm run build` into dist/console);
 *                                             its page holds no data and asks for an API key, kept in sessionStorage
 *   GET /session                      any key { name, scopes }: who the presented key is, so the page can say what it lacks
 *   GET /activity                     read    { at, stores: StoreActivityRow[], lastHour: ActivityMinute[] } (storeActivity.ts)
 *   GET /stores/:storeId/chart        read    { chart, state, stateValue, tags }: the link chart's structure and where the store is in it
 *
 * The files are read once, when the API starts, from the folder given; a name that is not one of them is a 404, so a
 * path can never reach outside it.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { StorelinkError } from '../../core/errors.js';
import type { JsonValue } from '../../core/json.js';
import type { Logger } from '../../core/logger.js';
import type { ApiClient } from '../apiKeys.js';
import type { Dispatcher } from '../dispatcher.js';
import type { StoreActivity } from '../storeActivity.js';
import { topStateOf } from '../storeLinks.js';
import { allowOnly } from './errors.js';
import { storeParamsSchema, type ZodTypeProvider } from './zodValidation.js';

/**
 * A chart's structure as the console draws it: what src/charts/chartModel.ts's `chartModelOf` returns (the CLI and the
 * demo hand it in; the cloud does not read chart definitions itself).
 */
export interface ConsoleChartState {
  id: string;
  key: string;
  type: string;
  initial?: string;
  tags: string[];
  transitions: { kind: string; event?: string; delay?: string | number; guard?: string; targets: string[] }[];
  states: ConsoleChartState[];
}

export interface ConsoleChart {
  id: string;
  initial?: string;
  states: ConsoleChartState[];
}

export interface ConsoleOptions {
  /** The built console: a folder with index.html and its assets (dist/console). */
  assetsDir: string;
  /** The link chart's structure, for `GET /stores/:storeId/chart`; without it that route answers 404. */
  chart?: ConsoleChart;
}

export interface ConsoleRoutesOptions extends ConsoleOptions {
  dispatcher: Dispatcher;
  activity: StoreActivity;
  identify: (request: FastifyRequest) => Promise<ApiClient | undefined>;
  logger: Logger;
}

/** What `/session` answers, for the OpenAPI document. */
export const sessionResponseSchema = z.object({ name: z.string(), scopes: z.array(z.string()) });
/** What `/activity` answers, for the OpenAPI document. */
export const activityResponseSchema = z.object({
  at: z.string(),
  stores: z.array(
    z.object({
      storeId: z.string(),
      bidirectional: z.boolean(),
      state: z.string(),
      tags: z.array(z.string()),
      reason: z.string().nullable(),
      lastHeardFromAt: z.string().nullable(),
      relayLatencyInMs: z.number().nullable(),
      backlog: z.number().int(),
      lastHour: z.object({ relay: z.number().int(), queue: z.number().int(), fallbacks: z.number().int(), failures: z.number().int() }),
    }),
  ),
  lastHour: z.array(z.object({ at: z.string(), relay: z.number().int(), queue: z.number().int(), fallbacks: z.number().int(), failures: z.number().int() })),
});

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

/** Everything the page loads comes from here; no inline script, nothing from elsewhere. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const fileNameSchema = z.object({ file: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'expected a console file name') });

async function readAssets(folder: string, logger: Logger): Promise<Map<string, { type: string; body: Buffer }>> {
  const assets = new Map<string, { type: string; body: Buffer }>();
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (error) {
    logger.warn({ err: error, folder }, 'the console is not built (npm run build); /console answers 404');
    return assets;
  }
  for (const name of names) {
    const type = CONTENT_TYPES[path.extname(name)];
    if (type !== undefined) assets.set(name, { type, body: await readFile(path.join(folder, name)) });
  }
  return assets;
}

/** Every state id a state value names, outermost first: `{ bidirectional: { tripped: 'waiting' } }` → three ids. */
export function activeStateIds(value: JsonValue, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([key, child]) => [`${prefix}${key}`, ...activeStateIds(child, `${prefix}${key}.`)]);
}

export const consoleRoutes: FastifyPluginAsync<ConsoleRoutesOptions> = async (fastify, { assetsDir, chart, dispatcher, activity, identify, logger }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const assets = await readAssets(assetsDir, logger);
  const send = (name: string) => {
    const asset = assets.get(name);
    if (asset === undefined) {
      throw new StorelinkError('ROUTE_NOT_FOUND', assets.size === 0 ? 'the console is not built: run npm run build' : `the console has no file ${name}`);
    }
    return asset;
  };

  app.get('/console', { config: { scope: 'public', openapi: { summary: 'The operations console (redirects to /console/)', response: { status: 302, description: 'To /console/', contentType: 'text/plain' } } } }, async (_request, reply) => reply.redirect('/console/', 302));
  app.get('/console/', { config: { scope: 'public', openapi: { summary: "The operations console's page (holds no data)", response: { description: 'The page', contentType: 'text/html' } } } }, async (_request, reply) => {
    const page = send('index.html');
    return reply.type(page.type).header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').send(page.body);
  });
  app.get('/console/:file', { schema: { params: fileNameSchema }, config: { scope: 'public', openapi: { summary: "One of the console's built assets", response: { description: 'The asset (script, style sheet)', contentType: 'application/octet-stream' }, errors: ['ROUTE_NOT_FOUND'] } } }, async (request, reply) => {
    const asset = send(request.params.file);
    return reply.type(asset.type).header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-content-type-options', 'nosniff').send(asset.body);
  });

  app.get('/session', { config: { scope: 'authenticated', openapi: { summary: 'Who the key is: its name and scopes', response: { description: 'The key', schema: sessionResponseSchema } } } }, async (request) => {
    const client = await identify(request);
    // Admitted by the hook, so the key is valid; it may have been revoked in between.
    if (client === undefined) throw new StorelinkError('API_UNAUTHORIZED', 'the API key is unknown, revoked or expired, or its secret is wrong');
    return { name: client.name, scopes: [...client.scopes] };
  });

  app.get('/activity', { config: { scope: 'read', openapi: { summary: "Every store's activity for the console: last heard from, relay latency, backlog, the last hour", response: { description: 'The activity', schema: activityResponseSchema } } } }, async () => {
    await dispatcher.start();
    return activity.snapshot();
  });

  app.get('/stores/:storeId/chart', { schema: { params: storeParamsSchema }, config: { scope: 'read', openapi: { summary: "The link chart's structure and the store's current states in it", response: { description: 'The chart', schema: z.record(z.string(), z.unknown()) }, errors: ['STORE_UNKNOWN', 'ROUTE_NOT_FOUND'] } } }, async (request) => {
    const { storeId } = request.params;
    await dispatcher.start();
    if (!dispatcher.stores().some((store) => store.storeId === storeId)) throw new StorelinkError('STORE_UNKNOWN', `unknown store "${storeId}"`, { field: 'storeId' });
    if (chart === undefined) throw new StorelinkError('ROUTE_NOT_FOUND', 'this cloud was started without its chart structure (createCloudHttpApi console.chart)');
    const link = dispatcher.link(storeId);
    const stateValue = link.state as JsonValue;
    return { storeId, chart, state: topStateOf(link.state), stateValue, activeStates: activeStateIds(stateValue), tags: link.tags };
  });

  allowOnly(fastify, '/console', ['GET']);
  allowOnly(fastify, '/console/', ['GET']);
  allowOnly(fastify, '/session', ['GET']);
  allowOnly(fastify, '/activity', ['GET']);
  allowOnly(fastify, '/stores/:storeId/chart', ['GET']);
};
