// The part of hyco-https 1.4.5 storelink uses. The package ships no types.
declare module 'hyco-https' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /** The ws 6 client hyco-https keeps as its control channel. */
  export interface HycoControlChannel extends EventEmitter {
    readonly readyState: number;
    ping(data?: unknown, mask?: boolean, callback?: (error?: Error) => void): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
  }

  export interface HycoServer extends EventEmitter {
    /** The current control channel; replaced on every (re)connection. */
    controlChannel: HycoControlChannel | undefined;
    listen(): void;
    close(callback?: (error: Error | null) => void): void;
  }

  export interface HycoServerOptions {
    /** The listen URI: `wss://ns:443/$hc/<name>?sb-hc-action=listen`. */
    server: string;
    /** A token string, or a function called on every connection and hourly for renewal. */
    token: string | (() => string);
  }

  export function createRelayedServer(
    options: HycoServerOptions,
    requestListener: (request: IncomingMessage, response: ServerResponse) => void,
  ): HycoServer;
}
