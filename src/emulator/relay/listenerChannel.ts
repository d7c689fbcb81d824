/**
 * One listener control channel (spec §4): delivers requests, reads responses and `renewToken` messages, pings the
 * listener to detect half-open connections (hyco-https has no pong timeout of its own, spec §11 P5), and closes the
 * channel with 1008 when its token has expired beyond the grace period (spec §3.4).
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type { AuthorizationResult } from './relayAuth.js';
import { isOversizedMessage, isoTime, scheduleAt, type RelayContext } from './relayContext.js';
import type { HybridConnectionState } from './hybridConnectionState.js';
import { parseListenerMessage } from './relayMessages.js';
import { ResponseReader } from './responseReader.js';

export interface ListenerChannelInfo {
  id: string;
  hybridConnection: string;
  /** The `sb-hc-id` the listener put in its URI, if any. */
  trackingId: string | undefined;
  remoteAddress: string | undefined;
  connectedAtMs: number;
  tokenExpiresAtMs: number;
  tokenRenewals: number;
}

export interface ListenerChannelHooks {
  /** Validates a renewed token for this channel's hybrid connection. */
  authorizeRenewal(token: string): AuthorizationResult;
  closed(channel: ListenerChannel, code: number): void;
}

export interface ListenerChannelInit {
  /** Scheme, host and port rendezvous addresses start with: `wss://localhost:8443`, as the listener reached the relay. */
  rendezvousOrigin: string;
  trackingId: string | undefined;
  remoteAddress: string | undefined;
  tokenExpiresAtMs: number;
}

export class ListenerChannel {
  readonly id = randomUUID();
  readonly connectedAtMs: number;
  private tokenExpiresAtMs: number;
  private tokenRenewals = 0;
  private missedPongs = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private expiryTimer: { cancel(): void } | undefined;
  private readonly reader: ResponseReader;
  private closed = false;
  private silenced = false;
  private oversized = false;

  constructor(
    private readonly context: RelayContext,
    readonly hybridConnection: HybridConnectionState,
    private readonly socket: WebSocket,
    private readonly init: ListenerChannelInit,
    private readonly hooks: ListenerChannelHooks,
  ) {
    this.connectedAtMs = context.options.now();
    this.tokenExpiresAtMs = init.tokenExpiresAtMs;
    this.reader = new ResponseReader(context, 'control');
  }

  get isOpen(): boolean {
    return !this.closed && !this.silenced && this.socket.readyState === WebSocket.OPEN;
  }

  info(): ListenerChannelInfo {
    return {
      id: this.id,
      hybridConnection: this.hybridConnection.name,
      trackingId: this.init.trackingId,
      remoteAddress: this.init.remoteAddress,
      connectedAtMs: this.connectedAtMs,
      tokenExpiresAtMs: this.tokenExpiresAtMs,
      tokenRenewals: this.tokenRenewals,
    };
  }

  /** The rendezvous address for a request, on the scheme, host and port the listener itself used (spec §5.2). */
  rendezvousAddress(requestId: string): string {
    const name = this.hybridConnection.name.split('/').map(encodeURIComponent).join('/');
    return `${this.init.rendezvousOrigin}/$hc/${name}?sb-hc-action=request&sb-hc-id=${encodeURIComponent(requestId)}`;
  }

  start(): void {
    this.socket.on('message', (data, isBinary) => {
      try {
        this.onMessage(data, isBinary);
      } catch (error) {
        // Whatever a listener sends, the relay must not go down with it.
        this.log('error', 'listener.internalError', `handling a message failed: ${(error as Error).message}; closing with 1011`);
        this.close(1011, 'Internal error');
      }
    });
    this.socket.on('pong', () => {
      this.missedPongs = 0;
      this.log('debug', 'listener.pong', 'pong received');
    });
    this.socket.on('error', (error) => {
      this.oversized ||= isOversizedMessage(error);
      this.log('warn', 'listener.error', `control channel error: ${error.message}`);
    });
    this.socket.on('close', (code) => this.onClose(code));
    this.schedulePing();
    this.scheduleExpiry();
  }

  /**
   * Sends a request message and, when there is one, its body as the very next message: hyco-https keeps a single
   * "pending body" slot per channel, so nothing may come between the two (spec §5.3). Both sends are queued in the
   * same tick, which guarantees that.
   */
  send(text: string, body: Buffer | undefined, onError: (error: Error) => void): void {
    if (!this.isOpen) {
      onError(new Error('the control channel is not open'));
      return;
    }
    let reported = false;
    const callback = (error?: Error | null): void => {
      if (error && !reported) {
        reported = true;
        onError(error);
      }
    };
    this.socket.send(text, { binary: false }, callback);
    if (body !== undefined) this.socket.send(body, { binary: true }, callback);
  }

  close(code: number, reason: string): void {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) {
      this.socket.close(code, closeReason(reason));
    }
  }

  terminate(): void {
    this.socket.terminate();
  }

  /**
   * Forgets the channel without telling the listener, like the idle drop of azure-relay #33: the TCP connection stays
   * up but nothing is read from or sent to it any more, so the listener believes it is still listening (spec §11 P5).
   */
  silence(): void {
    if (this.closed || this.silenced) return;
    this.silenced = true;
    clearTimeout(this.pingTimer);
    this.expiryTimer?.cancel();
    this.socket.pause();
    this.log('info', 'listener.silenced', 'control channel silenced (half-open): the listener is not told');
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.silenced) return;
    this.missedPongs = 0;
    const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (isBinary) {
      if (this.reader.onBinary(buffer) === 'unexpected') {
        this.violation(`an unexpected ${buffer.length}-byte binary message arrived when no body was awaited`);
      }
      return;
    }
    const parsed = parseListenerMessage(buffer.toString('utf8'));
    if (!parsed.ok) {
      this.violation(`a text message was ${parsed.error}`);
      return;
    }
    if (parsed.message.kind === 'response') {
      this.reader.onResponse(parsed.message.response);
      return;
    }
    const result = this.hooks.authorizeRenewal(parsed.message.token);
    if (!result.ok) {
      this.log('warn', 'listener.renewRejected', `renewToken rejected (${result.description}); closing with 1008`);
      this.close(1008, result.description);
      return;
    }
    this.tokenExpiresAtMs = result.expiresAtMs;
    this.tokenRenewals += 1;
    this.context.counters.tokenRenewals += 1;
    this.log('info', 'listener.tokenRenewed', `token renewed until ${isoTime(result.expiresAtMs)}`);
    this.scheduleExpiry();
  }

  private violation(what: string): void {
    this.context.counters.protocolViolations += 1;
    this.log('warn', 'listener.protocolViolation', `${what}; closing the control channel`);
    this.close(1008, 'Malformed or unexpected message');
  }

  private schedulePing(): void {
    const interval = this.context.options.pingIntervalInMs;
    if (interval === 0) return;
    this.pingTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.missedPongs >= 2) {
        this.context.counters.unresponsiveListeners += 1;
        this.log('warn', 'listener.unresponsive', 'two pings went unanswered; terminating the control channel');
        this.socket.terminate();
        return;
      }
      this.missedPongs += 1;
      try {
        this.socket.ping();
      } catch (error) {
        this.log('debug', 'listener.pingFailed', `ping failed: ${(error as Error).message}`);
      }
      this.schedulePing();
    }, interval);
    this.pingTimer.unref();
  }

  private scheduleExpiry(): void {
    this.expiryTimer?.cancel();
    const expiresAtMs = this.tokenExpiresAtMs;
    this.expiryTimer = scheduleAt(expiresAtMs + this.context.options.tokenExpiryGraceInMs, this.context.options.now, () => {
      if (this.closed || this.tokenExpiresAtMs !== expiresAtMs) return;
      this.context.counters.expiredListeners += 1;
      this.log('warn', 'listener.tokenExpired', `token expired at ${isoTime(expiresAtMs)}; closing with 1008`);
      this.close(1008, `ExpiredToken: the listener token expired at ${isoTime(expiresAtMs)}`);
    });
  }

  private onClose(code: number): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.pingTimer);
    this.expiryTimer?.cancel();
    this.reader.onClose(this.oversized ? 1009 : code);
    this.hooks.closed(this, code);
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', event: string, message: string): void {
    this.context.log(level, event, message, { hybridConnection: this.hybridConnection.name, listenerId: this.id });
  }
}

/** A close reason a WebSocket frame can carry: printable ASCII (it may quote caller input), at most 123 bytes. */
export function closeReason(reason: string): string {
  return reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 123);
}
