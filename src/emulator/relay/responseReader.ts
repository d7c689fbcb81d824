/**
 * Reads listener responses from one socket (a control channel or a rendezvous socket). A `response` message with
 * `body: true` is followed by exactly one binary message; hyco-https also sends one empty binary message after a
 * `body: false` response (spec §6.2), which is ignored. Responses are correlated by `requestId` against the global
 * map, whatever socket they arrive on (spec §11 P11).
 */
import type { RelayContext } from './relayContext.js';
import type { RelayedRequest } from './relayedRequest.js';
import type { ResponseMessage } from './relayMessages.js';
import { RELAY_MESSAGES } from './relayErrors.js';

export type BinaryVerdict = 'accepted' | 'ignored' | 'unexpected';

export class ResponseReader {
  /** The request whose body is the next binary message; null when that body is to be discarded. */
  private awaiting: RelayedRequest | null | undefined;

  constructor(
    private readonly context: RelayContext,
    private readonly socketKind: 'control' | 'rendezvous',
  ) {}

  onResponse(response: ResponseMessage): void {
    if (this.awaiting !== undefined) {
      // The previous header promised a body that never came; hyco-https never does this, so it is a broken client.
      this.awaiting?.fail(502, RELAY_MESSAGES.invalidResponse, 'a response header arrived while a body was awaited');
      this.awaiting = undefined;
    }
    const request = this.context.requests.get(response.requestId);
    const hasBody = response.body === true;
    if (request === undefined) {
      this.context.counters.lateResponses += 1;
      this.context.log('debug', 'response.late', `ignored a response for unknown or finished request ${response.requestId}`, {
        requestId: response.requestId,
      });
      if (hasBody) this.awaiting = null;
      return;
    }
    if (this.socketKind === 'rendezvous') this.context.counters.rendezvousResponses += 1;
    const wantsBody = request.onResponseHeader(response);
    if (hasBody) this.awaiting = wantsBody ? request : null;
  }

  onBinary(data: Buffer): BinaryVerdict {
    const awaiting = this.awaiting;
    if (awaiting === undefined) return data.length === 0 ? 'ignored' : 'unexpected';
    this.awaiting = undefined;
    awaiting?.onResponseBody(data);
    return 'accepted';
  }

  /** The socket closed: a body that was still awaited will never come. 1009: it was over the message size limit. */
  onClose(code: number): void {
    if (code === 1009) {
      this.awaiting?.fail(502, RELAY_MESSAGES.responseTooLarge, 'the response body was over the message size limit');
    } else {
      this.awaiting?.fail(502, RELAY_MESSAGES.listenerDisconnected, 'the socket closed before the response body arrived');
    }
    this.awaiting = undefined;
  }
}
