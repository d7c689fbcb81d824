/**
 * `GET /events`: what happens, as server-sent events (`link`, `delivery`, `outcome`, `store-event`, JSON data), each
 * with an `id:`, and a comment now and then so proxies keep the stream open. A client reconnecting with
 * `Last-Event-ID` first gets the events it missed from the API's window (eventLog.ts), or a `reset` event when they
 * are no longer there. The reply is hijacked: the stream is written on the raw response.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { Subscription, map, merge, type Observable } from 'rxjs';
import type { Logger } from '../../core/logger.js';
import type { Dispatcher } from '../dispatcher.js';
import { allowOnly } from './errors.js';
import { resetFrame, type EventLog } from './eventLog.js';
import { linkChangeViewOf } from './linkViews.js';

/** An event stream whose client reads slower than this much buffered output is ended; the client may reconnect. */
const MAX_EVENT_STREAM_BUFFER_BYTES = 1024 * 1024;

/** What the dispatcher's streams become on the event stream: an event name and its JSON data. */
export function streamEventsOf(dispatcher: Pick<Dispatcher, 'links$' | 'deliveries$' | 'outcomes$' | 'events$'>): Observable<readonly [string, unknown]> {
  return merge(
    dispatcher.links$.pipe(map((change) => ['link', linkChangeViewOf(change)] as const)),
    dispatcher.deliveries$.pipe(map((delivery) => ['delivery', delivery] as const)),
    dispatcher.outcomes$.pipe(map((outcome) => ['outcome', outcome] as const)),
    dispatcher.events$.pipe(map((event) => ['store-event', event] as const)),
  );
}

/** Writes frames in order, waiting for the client to drain when its buffer is full; false when the stream went away. */
async function writeAll(response: ServerResponse, frames: readonly string[]): Promise<boolean> {
  for (const frame of frames) {
    if (response.destroyed || response.writableEnded) return false;
    if (!response.write(frame)) await Promise.race([once(response, 'drain'), once(response, 'close')]);
  }
  return !response.destroyed && !response.writableEnded;
}

export interface EventsRoutesOptions {
  /** The API's window of recent events: every stream's source. */
  log: EventLog;
  heartbeatIntervalInMs: number;
  logger: Logger;
  /** Where each open stream registers its `end`, so the API's close() can end it. */
  openStreams: Set<(reason: string) => void>;
  /** Asked at each heartbeat: false (the key was revoked or expired since the stream opened) ends the stream. */
  stillAdmitted: (request: FastifyRequest) => Promise<boolean>;
}

export const eventsRoutes: FastifyPluginCallback<EventsRoutesOptions> = (app, { log, heartbeatIntervalInMs, logger, openStreams, stillAdmitted }, done) => {
  app.get('/events', { config: { scope: 'read', openapi: { summary: 'What happens, as server-sent events (link, delivery, outcome, store-event, reset); Last-Event-ID resumes', response: { description: 'An event stream', contentType: 'text/event-stream' } } } }, (request, reply) => {
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
    const heartbeat = setInterval(() => {
      write(': heartbeat\n\n');
      void stillAdmitted(request).then((admitted) => admitted || end('API key revoked or expired'));
    }, heartbeatIntervalInMs);
    openStreams.add(end);
    response.on('close', () => end('client left'));
    // Live events wait while the missed ones are written: subscribed and read in the same tick, so none is lost or doubled.
    const waiting: string[] = [];
    let waitingLength = 0;
    let caughtUp = false;
    subscription.add(
      log.live$.subscribe({
        next: (event) => {
          if (caughtUp) return write(event.frame);
          waiting.push(event.frame);
          waitingLength += event.frame.length;
          if (waitingLength > MAX_EVENT_STREAM_BUFFER_BYTES) {
            logger.warn({ remote }, 'event stream client reads its missed events too slowly; ending its stream');
            end('slow client');
          }
        },
        complete: () => end('dispatcher closed'),
      }),
    );
    const header = request.headers['last-event-id'];
    const resumption = log.since(Array.isArray(header) ? header[0] : header);
    const missed = resumption.reset === undefined ? resumption.frames : [resetFrame(resumption.reset)];
    if (resumption.reset !== undefined) logger.debug({ remote, reason: resumption.reset.reason }, 'event stream cannot resume; sent a reset');
    void (async () => {
      if (!(await writeAll(response, missed))) return;
      while (waiting.length > 0) {
        waitingLength = 0;
        if (!(await writeAll(response, waiting.splice(0, waiting.length)))) return;
      }
      caughtUp = true;
    })().catch((error: unknown) => {
      logger.debug({ err: error, remote }, 'event stream failed while catching up');
      end('write failed');
    });
  });
  allowOnly(app, '/events', ['GET']);
  done();
};
