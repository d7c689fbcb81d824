/** `GET /api-keys` (admin): the keys valid now, by name, scopes and dates; never a secret or a hash. */
import type { FastifyPluginCallback } from 'fastify';
import type { ApiKeySource } from '../apiKeyFile.js';
import { allowOnly } from './errors.js';
import { apiKeyListSchema } from './responseSchemas.js';

export interface ApiKeysRoutesOptions {
  apiKeys: ApiKeySource;
}

export const apiKeysRoutes: FastifyPluginCallback<ApiKeysRoutesOptions> = (app, { apiKeys }, done) => {
  app.get('/api-keys', { config: { scope: 'admin', openapi: { summary: 'The API keys valid now (never a secret or hash)', response: { description: 'The keys', schema: apiKeyListSchema } } } }, async () => ({ keys: (await apiKeys.current()).list() }));
  allowOnly(app, '/api-keys', ['GET']);
  done();
};
