/**
 * The console's calls to the cloud HTTP API: every request carries the API key in the Authorization header (never in
 * a URL), and the event stream is read with fetch for the same reason (EventSource cannot send headers).
 */

export interface ApiErrorBody {
  error: { code: string; message: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  name: string;
  scopes: string[];
}

export interface ActivityCounts {
  relay: number;
  queue: number;
  fallbacks: number;
  failures: number;
}

export interface StoreRow {
  storeId: string;
  bidirectional: boolean;
  state: string;
  tags: string[];
  reason: string | null;
  lastHeardFromAt: string | null;
  relayLatencyInMs: number | null;
  backlog: number;
  lastHour: ActivityCounts;
}

export interface ActivitySnapshot {
  at: string;
  stores: StoreRow[];
  lastHour: (ActivityCounts & { at: string })[];
}

export interface ChartStateView {
  id: string;
  key: string;
  type: string;
  initial?: string;
  tags: string[];
  transitions: { kind: string; event?: string; delay?: string | number; guard?: string; targets: string[] }[];
  states: ChartStateView[];
}

export interface StoreChart {
  storeId: string;
  chart: { id: string; initial?: string; states: ChartStateView[] };
  state: string;
  activeStates: string[];
  tags: string[];
}

export interface DeadLetterView {
  sequenceNumber: string;
  messageId: string | null;
  enqueuedAt: string | null;
  deliveryCount: number;
  reason: string | null;
  description: string | null;
  operation: { id: string; type: string; storeId: string; expiresAt: string } | null;
}

/** One operation as the console lists it: from `GET /stores/:storeId/operations`, or pieced together from the event stream. */
export interface OperationView {
  id: string;
  storeId: string;
  type: string;
  status: string;
  channel: string | null;
  fallback: string | null;
  outcome: { outcome: string; reply?: unknown; rejection?: { code: string; message: string }; failure?: { code: string; message: string } } | null;
  lateOutcomes: number;
  publishedAt: string;
  durationInMs: number | null;
}

export class Api {
  constructor(readonly key: string) {}

  async #call<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await fetch(path, { ...init, headers: { authorization: `Bearer ${this.key}`, accept: 'application/json' }, cache: 'no-store' });
    if (!response.ok) {
      let body: Partial<ApiErrorBody> = {};
      try {
        body = (await response.json()) as ApiErrorBody;
      } catch {
        // Not the API's error body: the status says enough.
      }
      throw new ApiError(response.status, body.error?.code ?? `HTTP_${response.status}`, body.error?.message ?? response.statusText);
    }
    return (await response.json()) as T;
  }

  session(): Promise<Session> {
    return this.#call('/session');
  }

  activity(): Promise<ActivitySnapshot> {
    return this.#call('/activity');
  }

  chart(storeId: string): Promise<StoreChart> {
    return this.#call(`/stores/${encodeURIComponent(storeId)}/chart`);
  }

  operations(storeId: string): Promise<{ operations: OperationView[] }> {
    return this.#call(`/stores/${encodeURIComponent(storeId)}/operations?limit=50`);
  }

  deadLetters(storeId: string): Promise<{ deadLetters: DeadLetterView[] }> {
    return this.#call(`/stores/${encodeURIComponent(storeId)}/dead-letters`);
  }

  resubmit(storeId: string, sequenceNumber: string): Promise<{ operationId: string | null; mayBeDroppedAsDuplicate: boolean }> {
    return this.#call(`/stores/${encodeURIComponent(storeId)}/dead-letters/${encodeURIComponent(sequenceNumber)}/resubmit`, { method: 'POST' });
  }

  /**
   * Follows `/events` until `signal` aborts: each event is handed to `onEvent`; the stream is reopened after a drop with
   * the last id seen (Last-Event-ID), waiting longer after each failure. A refused key (401, 403) stops it.
   */
  async follow(onEvent: (event: string, data: unknown) => void, onState: (open: boolean, refused?: ApiError) => void, signal: AbortSignal): Promise<void> {
    let lastEventId: string | undefined;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${this.key}`, accept: 'text/event-stream' };
        if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
        const response = await fetch('/events', { headers, signal, cache: 'no-store' });
        if (response.status === 401 || response.status === 403) {
          const body = (await response.json().catch(() => ({}))) as Partial<ApiErrorBody>;
          onState(false, new ApiError(response.status, body.error?.code ?? 'API_UNAUTHORIZED', body.error?.message ?? 'refused'));
          return;
        }
        if (!response.ok || response.body === null) throw new Error(`event stream answered ${response.status}`);
        onState(true);
        failures = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let boundary = buffer.indexOf('\n\n');
          while (boundary >= 0) {
            const block = buffer.slice(0, boundary);
            buffer = buffer.slice(boundary + 2);
            boundary = buffer.indexOf('\n\n');
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) lastEventId = line.slice(4);
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length > 0) onEvent(event, JSON.parse(data.join('\n')) as unknown);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        console.warn('storelink console: event stream failed', error);
      }
      onState(false);
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** Math.min(failures, 5))));
    }
  }
}
