/** `GET /metrics`: the dispatcher's numbers for Prometheus. */
import type { FastifyPluginCallback } from 'fastify';
import type { Dispatcher } from '../dispatcher.js';
import type { DispatcherMetrics } from '../metrics.js';
import { allowOnly } from './errors.js';

export interface MetricsRoutesOptions {
  dispatcher: Dispatcher;
  metrics: DispatcherMetrics;
}

export const metricsRoutes: FastifyPluginCallback<MetricsRoutesOptions> = (app, { dispatcher, metrics }, done) => {
  app.get('/metrics', { config: { scope: 'read', openapi: { summary: 'Prometheus metrics', response: { description: 'Prometheus text format 0.0.4', contentType: 'text/plain; version=0.0.4' } } } }, async (_request, reply) => {
    await dispatcher.start();
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
  allowOnly(app, '/metrics', ['GET']);
  done();
};
