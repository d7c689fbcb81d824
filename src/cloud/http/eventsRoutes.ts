/**
 * `GET /events`: what happens, as server-sent events (`link`, `delivery`, `store-event`, JSON data), with a comment
 * now and then so proxies keep the stream open. The reply is hijacked: the stream is written on the raw response.
 */
import type { FastifyPluginCallback } from 'fastify';
import { Subscription, map, merge } from 'rxjs';
import type { Logger } from '../../core/logger.js';
import type { Dispatcher } from '../dispatcher.js';
import { allowOnly } from './errors.js';
import { linkChangeViewOf } from './linkViews.js';

/** An event stream whose client reads slower than this much buffered output is ended; the client may reconnect. */
const MAX_EVENT_STREAM_BUFFER_BYTES = 1024 * 1024;

export interface EventsRoutesOptions {
  dispatcher: Dispatcher;
  heartbeatIntervalInMs: number;
  logger: Logger;
  /** Where each open stream registers its `end`, so the API's close() can end it. */
  openStreams: Set<(reason: string) => void>;
}

export const eventsRoutes: FastifyPluginCallback<EventsRoutesOptions> = (app, { dispatcher, heartbeatIntervalInMs, logger, openStreams }, done) => {
  app.get('/events', (request, reply) => {
    reply.hijack();
    const response = reply.raw;
    const remote = request.raw.socket.remoteAddress;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // Reverse proxies (nginx) would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    // A first comment flushes the headers, so a client knows the stream is open before any event.
    response.write(': storelink events\n\n');
    // A container, so a stream that completes while subscribing (a closed dispatcher) still unsubscribes.
    const subscription = new Subscription();
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      logger.debug({ reason, remote }, 'event stream ended');
      clearInterval(heartbeat);
      subscription.unsubscribe();
      openStreams.delete(end);
      if (!response.writableEnded) response.end();
    };
    const write = (text: string) => {
      if (ended || response.destroyed) return;
      response.write(text);
      if (response.writableLength > MAX_EVENT_STREAM_BUFFER_BYTES) {
        logger.warn({ remote }, 'event stream client reads too slowly; ending its stream');
        end('slow client');
      }
    };
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), heartbeatIntervalInMs);
    openStreams.add(end);
    response.on('close', () => end('client left'));
    subscription.add(
      merge(
        dispatcher.links$.pipe(map((change) => ['link', linkChangeViewOf(change)] as const)),
        dispatcher.deliveries$.pipe(map((delivery) => ['delivery', delivery] as const)),
        dispatcher.events$.pipe(map((event) => ['store-event', event] as const)),
      ).subscribe({
        next: ([event, data]) => write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
        complete: () => end('dispatcher closed'),
      }),
    );
  });
  allowOnly(app, '/events', ['GET']);
  done();
};
