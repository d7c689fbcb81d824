/**
 * One HTTP sender request in flight through the relay (spec §5, §6): dispatched on a control channel (inline when
 * small, by rendezvous when large), answered by a `response` message and body on whatever socket the listener chose,
 * timed out with 504, failed with 502 when the listener goes away, and dropped silently when the sender goes away.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import WebSocket from 'ws';
import { isOversizedMessage, type RelayContext } from './relayContext.js';
import type { HybridConnectionState } from './hybridConnectionState.js';
import type { ListenerChannel } from './listenerChannel.js';
import { RELAY_MESSAGES, writeHttpError } from './relayErrors.js';
import { buildResponseHeaders, validReasonPhrase } from './relayHeaders.js';
import { parseListenerMessage, rendezvousNotice, requestMessage, type ResponseMessage } from './relayMessages.js';
import { ResponseReader } from './responseReader.js';

/** Requests whose body or header JSON is larger go by rendezvous (spec §5.1 step 5). */
export const MAX_INLINE_BODY_BYTES = 64 * 1024;
export const MAX_INLINE_HEADER_BYTES = 32 * 1024;

type State = 'created' | 'awaitingRendezvous' | 'awaitingResponse' | 'awaitingBody' | 'responding' | 'done';

export interface RelayedRequestInit {
  id: string;
  requestTarget: string;
  method: string;
  requestHeaders: Record<string, string>;
  remoteEndpoint: { address: string; port: number };
  body: Buffer;
  /** Host for the `Via` header of the response. */
  viaHost: string;
}

export class RelayedRequest {
  readonly id: string;
  private state: State = 'created';
  private mode: 'control' | 'rendezvous' = 'control';
  private channel: ListenerChannel | undefined;
  private rendezvous: WebSocket | undefined;
  private responseTimer: NodeJS.Timeout | undefined;
  private rendezvousTimer: NodeJS.Timeout | undefined;
  private delayTimer: NodeJS.Timeout | undefined;
  private header: ResponseMessage | undefined;

  constructor(
    private readonly context: RelayContext,
    readonly hybridConnection: HybridConnectionState,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly init: RelayedRequestInit,
  ) {
    this.id = init.id;
    res.on('close', () => {
      if (this.state === 'done') return;
      this.context.counters.abandonedRequests += 1;
      this.log('info', 'request.abandoned', 'the sender went away before the response; dropping the request');
      this.finish();
    });
  }

  dispatch(channel: ListenerChannel): void {
    this.channel = channel;
    this.context.requests.set(this.id, this);
    this.context.counters.relayedRequests += 1;
    const fields = this.messageFields(channel);
    const inline = requestMessage(fields);
    const onError = (error: Error): void => {
      this.fail(502, RELAY_MESSAGES.listenerDisconnected, `sending to the listener failed: ${error.message}`);
    };
    this.responseTimer = setTimeout(() => {
      this.fail(504, RELAY_MESSAGES.responseTimeout, `no response within ${this.context.options.responseTimeoutInMs} ms`);
    }, this.context.options.responseTimeoutInMs);
    if (this.init.body.length <= MAX_INLINE_BODY_BYTES && Buffer.byteLength(inline) <= MAX_INLINE_HEADER_BYTES) {
      this.mode = 'control';
      this.state = 'awaitingResponse';
      this.log('debug', 'request.dispatched', `${this.init.method} ${this.init.requestTarget} sent inline to listener ${channel.id}`);
      channel.send(inline, this.init.body.length > 0 ? this.init.body : undefined, onError);
      return;
    }
    this.mode = 'rendezvous';
    this.state = 'awaitingRendezvous';
    this.context.counters.rendezvousRequests += 1;
    this.rendezvousTimer = setTimeout(() => {
      this.fail(502, RELAY_MESSAGES.rendezvousTimeout, 'the listener did not open the rendezvous socket in time');
    }, this.context.options.rendezvousTimeoutInMs);
    this.log('debug', 'request.dispatched', `${this.init.method} ${this.init.requestTarget} offered by rendezvous to listener ${channel.id}`);
    channel.send(rendezvousNotice(fields.address, this.id), undefined, onError);
  }

  /**
   * A rendezvous socket for this request was accepted. Returns false when the request cannot use it (already
   * answered, or a second socket), in which case the caller closes it.
   */
  attachRendezvous(socket: WebSocket): boolean {
    if (this.rendezvous !== undefined) return false;
    if (this.state === 'awaitingRendezvous') {
      clearTimeout(this.rendezvousTimer);
    } else if (!(this.state === 'awaitingResponse' && this.mode === 'control')) {
      return false;
    }
    this.rendezvous = socket;
    const reader = new ResponseReader(this.context, 'rendezvous');
    socket.on('message', (data, isBinary) => {
      try {
        onMessage(data, isBinary);
      } catch (error) {
        this.log('error', 'rendezvous.internalError', `handling a rendezvous message failed: ${(error as Error).message}`);
        this.fail(502, RELAY_MESSAGES.invalidResponse, 'the rendezvous message could not be handled');
      }
    });
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
      const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (isBinary) {
        if (reader.onBinary(buffer) === 'unexpected') this.rendezvousViolation('an unexpected binary message');
        return;
      }
      const parsed = parseListenerMessage(buffer.toString('utf8'));
      if (!parsed.ok || parsed.message.kind !== 'response') {
        this.rendezvousViolation(parsed.ok ? 'a renewToken message' : `a text message that was ${parsed.error}`);
        return;
      }
      reader.onResponse(parsed.message.response);
    };
    let oversized = false;
    socket.on('error', (error) => {
      oversized ||= isOversizedMessage(error);
      this.log('debug', 'rendezvous.error', `rendezvous socket error: ${error.message}`);
    });
    socket.on('close', (code) => {
      reader.onClose(oversized ? 1009 : code);
      if (this.state === 'awaitingResponse' || this.state === 'awaitingRendezvous') {
        this.fail(502, RELAY_MESSAGES.listenerDisconnected, 'the rendezvous socket closed before the response');
      }
    });
    if (this.state === 'awaitingRendezvous') {
      this.state = 'awaitingResponse';
      const fields = this.messageFields(this.channel!);
      let reported = false;
      const callback = (error?: Error | null): void => {
        if (error && !reported) {
          reported = true;
          this.fail(502, RELAY_MESSAGES.listenerDisconnected, `sending on the rendezvous socket failed: ${error.message}`);
        }
      };
      socket.send(requestMessage(fields), { binary: false }, callback);
      // Large bodies go as one message; ws sends it as a single frame, well under hyco-https' 100 MiB cap.
      if (fields.body) socket.send(this.init.body, { binary: true }, callback);
      this.log('debug', 'rendezvous.attached', 'request delivered over the rendezvous socket');
    } else {
      this.log('debug', 'rendezvous.attached', 'the listener opened a rendezvous socket for its response');
    }
    return true;
  }

  /** A `response` header for this request arrived. Returns whether its body (if any) is wanted. */
  onResponseHeader(header: ResponseMessage): boolean {
    if (this.state !== 'awaitingResponse' && this.state !== 'awaitingRendezvous') {
      this.context.counters.lateResponses += 1;
      this.log('debug', 'response.duplicate', `ignored a response header in state ${this.state}`);
      return false;
    }
    clearTimeout(this.responseTimer);
    clearTimeout(this.rendezvousTimer);
    if (header.statusCode < 200) {
      this.fail(502, RELAY_MESSAGES.invalidResponse, `the listener answered with status ${header.statusCode}`);
      return false;
    }
    this.header = header;
    if (header.body === true) {
      this.state = 'awaitingBody';
      // hyco-https sends the body right after the header; a body that never comes is a dead listener.
      this.responseTimer = setTimeout(() => {
        this.fail(504, RELAY_MESSAGES.responseTimeout, 'the response body did not arrive in time');
      }, this.context.options.responseTimeoutInMs);
      return true;
    }
    this.respond(Buffer.alloc(0));
    return false;
  }

  onResponseBody(body: Buffer): void {
    if (this.state !== 'awaitingBody') return;
    clearTimeout(this.responseTimer);
    if (body.length > this.context.options.maxBodySizeInBytes) {
      this.fail(502, RELAY_MESSAGES.responseTooLarge, `the response body of ${body.length} bytes is over the limit`);
      return;
    }
    this.respond(body);
  }

  /** The control channel this request was dispatched on closed. */
  onChannelClosed(channel: ListenerChannel): void {
    if (this.channel !== channel || this.rendezvous !== undefined) return;
    if (this.state === 'awaitingResponse' || this.state === 'awaitingRendezvous') {
      this.fail(502, RELAY_MESSAGES.listenerDisconnected, 'the control channel closed before the response');
    }
  }

  /** Answers the sender with a relay error (or cuts it if the response already started) and forgets the request. */
  fail(status: number, description: string, why: string): void {
    if (this.state === 'done') return;
    this.context.counters.relayErrors += 1;
    this.log(status === 504 ? 'warn' : 'info', 'request.failed', `${status}: ${why}`, status);
    writeHttpError(this.res, status, description, `${this.hybridConnection.name}`, this.context.options.now());
    this.finish();
  }

  private respond(body: Buffer): void {
    this.state = 'responding';
    const delay = this.hybridConnection.responseDelayInMs;
    if (delay > 0) {
      this.delayTimer = setTimeout(() => this.writeResponse(body), delay);
      return;
    }
    this.writeResponse(body);
  }

  private writeResponse(body: Buffer): void {
    if (this.state !== 'responding') return;
    const header = this.header!;
    const { headers, rejected } = buildResponseHeaders(header.responseHeaders, this.init.viaHost);
    if (rejected.length > 0) {
      this.log('warn', 'response.headersDropped', `dropped invalid response headers: ${rejected.join(', ')}`);
    }
    const status = header.statusCode;
    const bodyless = this.init.method === 'HEAD' || status === 204 || status === 304;
    if (!bodyless) headers['Content-Length'] = body.length;
    if (this.res.destroyed || this.res.writableEnded) {
      this.finish();
      return;
    }
    try {
      const reason = validReasonPhrase(header.statusDescription);
      if (reason === undefined) this.res.writeHead(status, headers);
      else this.res.writeHead(status, reason, headers);
    } catch (error) {
      this.fail(502, RELAY_MESSAGES.invalidResponse, `the response could not be written: ${(error as Error).message}`);
      return;
    }
    this.context.counters.completedResponses += 1;
    this.log('debug', 'request.completed', `${status} with ${body.length} body bytes`, status);
    this.state = 'done';
    this.res.end(bodyless ? undefined : body);
    this.finish();
  }

  private rendezvousViolation(what: string): void {
    this.context.counters.protocolViolations += 1;
    this.log('warn', 'rendezvous.protocolViolation', `${what} arrived on the rendezvous socket; closing it`);
    if (this.rendezvous?.readyState === WebSocket.OPEN) this.rendezvous.close(1008, 'Malformed or unexpected message');
    this.fail(502, RELAY_MESSAGES.invalidResponse, `protocol violation on the rendezvous socket: ${what}`);
  }

  private messageFields(channel: ListenerChannel) {
    return {
      address: channel.rendezvousAddress(this.id),
      id: this.id,
      requestTarget: this.init.requestTarget,
      method: this.init.method,
      remoteEndpoint: this.init.remoteEndpoint,
      requestHeaders: this.init.requestHeaders,
      body: this.init.body.length > 0,
    };
  }

  /** Releases everything the request holds; idempotent. */
  private finish(): void {
    this.state = 'done';
    clearTimeout(this.responseTimer);
    clearTimeout(this.rendezvousTimer);
    clearTimeout(this.delayTimer);
    if (this.context.requests.get(this.id) === this) this.context.requests.delete(this.id);
    const socket = this.rendezvous;
    // hyco-https never closes rendezvous sockets itself (spec §11 P13).
    if (socket !== undefined && (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)) {
      socket.close(1000, 'Request completed');
    }
    if (!this.req.complete) this.req.resume();
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', event: string, message: string, statusCode?: number): void {
    this.context.log(level, event, message, {
      hybridConnection: this.hybridConnection.name,
      requestId: this.id,
      ...(this.channel === undefined ? {} : { listenerId: this.channel.id }),
      ...(statusCode === undefined ? {} : { statusCode }),
    });
  }
}
