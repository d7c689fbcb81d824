/**
 * `GET /openapi.json`: the API described as OpenAPI 3.1, built from the routes fastify registers (its `onRoute`
 * hook feeds a catalogue) and from the same zod schemas that validate their requests (`z.toJSONSchema`, JSON Schema
 * 2020-12, which is OpenAPI 3.1's own dialect). A route says what the document cannot learn from its schemas (a
 * summary, its answer) in one line of its config: `config: { scope: 'read', openapi: { summary, response } }`. A
 * route without that line is still listed, marked `x-storelink-undocumented`, so the test that checks every served
 * route fails until someone writes it.
 */
import type { FastifyPluginCallback, RouteOptions } from 'fastify';
import { z } from 'zod';
import { STORELINK_ERROR_CODES, StorelinkError, cloudHttpStatusOf, type StorelinkErrorCode } from '../../core/errors.js';
import { API_SCOPES } from '../apiKeys.js';
import type { RouteScope } from './apiKeyAuth.js';
import { allowOnly } from './errors.js';

/** What a route's answer is on success. */
export interface RouteResponseDoc {
  /** Default 200. */
  status?: number;
  description: string;
  /** The JSON body; for another media type, say it with `contentType` and leave this out. */
  schema?: z.ZodType;
  /** Default `application/json`. */
  contentType?: string;
}

/** A route's entry in the document: what it does and what it answers. Its request schemas are read from the route. */
export interface RouteDoc {
  summary: string;
  description?: string;
  /** Groups routes in the document (`stores`, `operations`…); default the path's first segment. */
  tag?: string;
  response: RouteResponseDoc;
  /** Error codes the route may answer with besides those every route has (401, 403, 500) and 400 for a request it validates. */
  errors?: readonly StorelinkErrorCode[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's OpenAPI entry; `false` for a route deliberately left out (the 405 answers of allowOnly). */
    openapi?: RouteDoc | false;
  }
}

/** A route as the catalogue keeps it: what fastify registered, and nothing it was not told. */
export interface CataloguedRoute {
  method: string;
  url: string;
  scope: RouteScope | undefined;
  doc: RouteDoc | false | undefined;
  schema: { params?: unknown; querystring?: unknown; body?: unknown; headers?: unknown };
}

const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/** Every route fastify registers, in order: fed by the API's onRoute hook. */
export class RouteCatalogue {
  readonly #routes: CataloguedRoute[] = [];

  add(route: Pick<RouteOptions, 'method' | 'url' | 'config' | 'schema'>): void {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const config = route.config;
    for (const method of methods) {
      this.#routes.push({ method: String(method).toUpperCase(), url: route.url, scope: config?.scope, doc: config?.openapi, schema: route.schema ?? {} });
    }
  }

  /** The routes the document describes: all but those marked `openapi: false`. */
  get routes(): readonly CataloguedRoute[] {
    return this.#routes.filter((route) => route.doc !== false);
  }
}

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

type JsonObject = Record<string, unknown>;

/** The error body every failure answers with; `code` is one of the documented StorelinkError codes. */
export const apiErrorSchema = z
  .object({
    error: z.object({
      code: z.enum(Object.keys(STORELINK_ERROR_CODES) as [StorelinkErrorCode, ...StorelinkErrorCode[]]),
      message: z.string(),
      field: z.string().optional(),
      operationId: z.string().optional(),
    }),
  });

/** The JSON Schema of a zod schema, without its own `$schema` (the document's dialect applies). */
function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    io,
    // A payload is "any JSON value" checked by code (z.custom): it documents as an unconstrained schema.
    unrepresentable: 'any',
  }) as JsonObject;
  return rest;
}

/** fastify's `/stores/:storeId` as OpenAPI's `/stores/{storeId}` (a wildcard `*` as `{path}`), with the parameters' names. */
function openApiPath(url: string): { path: string; names: string[] } {
  const names: string[] = [];
  const path = url
    .split('/')
    .map((segment) => {
      if (segment.startsWith(':')) {
        const name = segment.slice(1);
        names.push(name);
        return `{${name}}`;
      }
      if (segment === '*') {
        names.push('path');
        return '{path}';
      }
      return segment;
    })
    .join('/');
  return { path, names };
}

function isZod(value: unknown): value is z.ZodType {
  return value instanceof z.ZodType;
}

function parametersOf(route: CataloguedRoute, names: readonly string[]): JsonObject[] {
  const parameters: JsonObject[] = [];
  const params = isZod(route.schema.params) ? jsonSchemaOf(route.schema.params, 'input') : undefined;
  const paramProperties = (params?.properties ?? {}) as Record<string, JsonObject>;
  for (const name of names) {
    parameters.push({ name, in: 'path', required: true, schema: paramProperties[name] ?? { type: 'string' } });
  }
  if (isZod(route.schema.querystring)) {
    const query = jsonSchemaOf(route.schema.querystring, 'input');
    const required = new Set((query.required ?? []) as string[]);
    for (const [name, schema] of Object.entries((query.properties ?? {}) as Record<string, JsonObject>)) {
      const { description, ...rest } = schema;
      parameters.push({ name, in: 'query', required: required.has(name), schema: rest, ...(description === undefined ? {} : { description }) });
    }
  }
  return parameters;
}

/** Codes grouped by the status they answer with, so each status of a route lists the codes behind it. */
function errorResponses(codes: Iterable<StorelinkErrorCode>): Record<string, JsonObject> {
  const byStatus = new Map<number, StorelinkErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = cloudHttpStatusOf(new StorelinkError(code, code));
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, JsonObject> = {};
  for (const [status, statusCodes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: `error.code ${statusCodes.join(', ')}`,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }
  return responses;
}

function operationOf(route: CataloguedRoute, names: readonly string[]): JsonObject {
  const doc = route.doc === false ? undefined : route.doc;
  const validates = isZod(route.schema.params) || isZod(route.schema.querystring) || isZod(route.schema.body);
  const codes: StorelinkErrorCode[] = ['API_UNAUTHORIZED', 'API_FORBIDDEN', 'UNEXPECTED_FAILURE', ...(validates ? (['OPERATION_INVALID'] as const) : []), ...(doc?.errors ?? [])];
  const success: JsonObject = {};
  if (doc !== undefined) {
    const { status = 200, description, schema, contentType = 'application/json' } = doc.response;
    success[String(status)] = {
      description,
      // Read as input: an answer may gain fields in a later version, so the document does not forbid others.
      content: { [contentType]: { schema: schema === undefined ? { type: 'string' } : jsonSchemaOf(schema, 'input') } },
    };
  }
  const scope = route.scope;
  const operation: JsonObject = {
    operationId: `${route.method.toLowerCase()}${openApiPath(route.url).path.replace(/[{}]/g, '').replace(/(?:^|[/_.-])(\w)/g, (_match, letter: string) => letter.toUpperCase())}`,
    tags: [doc?.tag ?? route.url.split('/').find((segment) => segment !== '') ?? 'api'],
    ...(doc === undefined ? { summary: `${route.method} ${route.url}`, 'x-storelink-undocumented': true } : { summary: doc.summary }),
    ...(doc?.description === undefined ? {} : { description: doc.description }),
    // OpenAPI 3.1 lets a non-OAuth scheme name the roles a call needs: here, the API key's scope.
    // A public route (the console's static files) needs no key at all: an empty security list says so.
    security: scope === 'public' ? [] : [{ apiKey: scope === undefined || scope === 'authenticated' ? [] : [scope] }],
    ...(scope === undefined ? {} : { 'x-storelink-scope': scope }),
    parameters: parametersOf(route, names),
    responses: { ...success, ...errorResponses(codes) },
  };
  if (isZod(route.schema.body)) {
    operation.requestBody = { required: true, content: { 'application/json': { schema: jsonSchemaOf(route.schema.body, 'input') } } };
  }
  if ((operation.parameters as unknown[]).length === 0) delete operation.parameters;
  return operation;
}

/** The OpenAPI 3.1 document of the catalogued routes. */
export function openApiDocument(catalogue: RouteCatalogue, info: OpenApiInfo): JsonObject {
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of catalogue.routes) {
    const method = route.method.toLowerCase();
    if (!HTTP_METHODS.has(method)) continue;
    const { path, names } = openApiPath(route.url);
    paths[path] ??= {};
    paths[path][method] = operationOf(route, names);
  }
  return {
    openapi: '3.1.1',
    info,
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ apiKey: [] }],
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: '<name>.<secret>',
          description: `An API key (\`storelink apikeys create\`), sent as \`Authorization: Bearer <name>.<secret>\`. Each operation names the scope it needs: ${API_SCOPES.join(', ')}.`,
        },
      },
      schemas: { Error: jsonSchemaOf(apiErrorSchema, 'output') },
    },
  };
}

export interface OpenApiRoutesOptions {
  catalogue: RouteCatalogue;
  /** Read on the first request. */
  info: () => OpenApiInfo;
}

/** `GET /openapi.json` (read): built once, on the first request, when every route is registered. */
export const openApiRoutes: FastifyPluginCallback<OpenApiRoutesOptions> = (app, { catalogue, info }, done) => {
  let document: string | undefined;
  app.get(
    '/openapi.json',
    { config: { scope: 'read', openapi: { summary: 'This document: the HTTP API as OpenAPI 3.1', response: { description: 'An OpenAPI 3.1 document', schema: z.record(z.string(), z.unknown()) } } } },
    async (_request, reply) => {
      document ??= JSON.stringify(openApiDocument(catalogue, info()));
      return reply.type('application/json; charset=utf-8').send(document);
    },
  );
  allowOnly(app, '/openapi.json', ['GET']);
  done();
};
