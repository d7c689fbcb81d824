/**
 * Reads the frame headers of one connection's byte stream before rhea sees it, so a peer cannot make the emulator
 * buffer more than it allows: rhea waits for a whole frame of whatever size the header declares (4 GiB if told).
 * Protocol headers (`AMQP` + 4 bytes, before SASL and after it) and frame sizes are tracked across chunks; a frame
 * larger than the current limit, or shorter than a frame header, is a violation. Until the connection authenticates
 * the limit is small, and so is the total a peer may send.
 */

const AMQP = 0x414d5150;
const PROTOCOL_HEADER_BYTES = 8;
const FRAME_HEADER_BYTES = 8;

export interface FrameLimits {
  /** The largest frame once authenticated: the max-frame-size the emulator advertises in its `open`. */
  maxFrameSizeInBytes: number;
  /** The largest frame before a CBS token has been accepted. */
  unauthenticatedMaxFrameSizeInBytes: number;
  /** All the bytes a peer may send before it authenticates. */
  unauthenticatedMaxBytes: number;
}

export class FrameGuard {
  #authenticated = false;
  #violated = false;
  /** Bytes of a protocol or frame header read so far at a frame boundary (at most 8). */
  readonly #head = Buffer.alloc(PROTOCOL_HEADER_BYTES);
  #headLength = 0;
  /** Bytes of the current frame still to come after its size field. */
  #remaining = 0;
  #received = 0;

  constructor(
    private readonly limits: FrameLimits,
    private readonly onViolation: (reason: string) => void,
  ) {}

  get authenticated(): boolean {
    return this.#authenticated;
  }

  authenticate(): void {
    this.#authenticated = true;
  }

  /** Whether `chunk` may go on to the AMQP parser; after the first violation, never again. */
  admit(chunk: Buffer): boolean {
    if (this.#violated) return false;
    this.#received += chunk.length;
    if (!this.#authenticated && this.#received > this.limits.unauthenticatedMaxBytes) {
      return this.#violation(`more than ${this.limits.unauthenticatedMaxBytes} bytes before authenticating`);
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#remaining > 0) {
        const taken = Math.min(this.#remaining, chunk.length - offset);
        this.#remaining -= taken;
        offset += taken;
        continue;
      }
      // At a boundary: gather the size field (4 bytes), or the whole protocol header when it spells AMQP.
      const wanted = this.#headLength >= 4 && this.#head.readUInt32BE(0) === AMQP ? PROTOCOL_HEADER_BYTES : 4;
      const taken = Math.min(wanted - this.#headLength, chunk.length - offset);
      chunk.copy(this.#head, this.#headLength, offset, offset + taken);
      this.#headLength += taken;
      offset += taken;
      if (this.#headLength < wanted) continue;
      const size = this.#head.readUInt32BE(0);
      if (size === AMQP) {
        if (wanted === PROTOCOL_HEADER_BYTES) this.#headLength = 0;
        continue;
      }
      this.#headLength = 0;
      const limit = this.#authenticated ? this.limits.maxFrameSizeInBytes : this.limits.unauthenticatedMaxFrameSizeInBytes;
      if (size < FRAME_HEADER_BYTES) return this.#violation(`a frame of ${size} bytes is shorter than a frame header`);
      if (size > limit) {
        return this.#violation(`a frame of ${size} bytes exceeds the max-frame-size of ${limit}${this.#authenticated ? '' : ' before authentication'}`);
      }
      this.#remaining = size - 4;
    }
    return true;
  }

  #violation(reason: string): false {
    this.#violated = true;
    this.onViolation(reason);
    return false;
  }
}
