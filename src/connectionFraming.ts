/**
 * CPython's `multiprocessing.connection` byte framing (Lib/multiprocessing/connection.py,
 * `Connection._send_bytes` / `_recv_bytes`), and the HMAC challenge/response of `deliver_challenge`
 * / `answer_challenge` (3.12+ `{digest}` form and the legacy raw HMAC-MD5 form).
 *
 * Frame: a 4-byte signed big-endian length (`struct '!i'`) and the payload. Payloads longer than
 * 0x7fffffff bytes use a pre-header of -1 followed by an 8-byte unsigned big-endian length.
 */
import { AuthenticationError, OSError } from './errors.js';
import { nodeCrypto } from './util.js';

/** Payloads up to this size go out as one write of header + payload, as CPython does. */
const SINGLE_WRITE_LIMIT = 16384;
const LARGE = 0x7fffffff;

/** The frame header for a payload of `n` bytes. */
function frameHeader(n: number): Buffer {
  if (n > LARGE) {
    const header = Buffer.allocUnsafe(12);
    header.writeInt32BE(-1, 0);
    header.writeBigUInt64BE(BigInt(n), 4);
    return header;
  }
  const header = Buffer.allocUnsafe(4);
  header.writeInt32BE(n, 0);
  return header;
}

/**
 * The chunks to write for one message: header + payload copied into one buffer when the payload
 * is at most 16384 bytes (CPython's single `sendall`), header and payload separately otherwise.
 */
export function frame(payload: Uint8Array): Uint8Array[] {
  const n = payload.byteLength;
  if (n <= SINGLE_WRITE_LIMIT) {
    const out = Buffer.allocUnsafe(4 + n);
    out.writeInt32BE(n, 0);
    out.set(payload, 4);
    return [out];
  }
  return [frameHeader(n), payload];
}

/** Bytes a serialiser leaves free in front of a payload for its frame header (`frameInPlace`). */
export const FRAME_HEADROOM = 4;

/**
 * The chunks to write for a payload serialised `FRAME_HEADROOM` bytes into `buf`: the header goes
 * into those bytes, so the message is one buffer whatever its size, and nothing is copied (`frame`
 * copies a small payload behind its header). Over 0x7fffffff bytes the header needs 12 bytes, so
 * it is a chunk of its own.
 */
export function frameInPlace(buf: Buffer): Uint8Array[] {
  const n = buf.byteLength - FRAME_HEADROOM;
  if (n > LARGE) return [frameHeader(n), buf.subarray(FRAME_HEADROOM)];
  buf.writeInt32BE(n, 0);
  return [buf];
}

/**
 * Incremental decoder: feed it socket chunks, it hands out whole messages. A message's payload is
 * allocated once when its header arrives (after checking it against `limit`) and filled in place,
 * so chunks are copied once per message, never re-concatenated per chunk. A payload that arrives
 * whole inside one chunk is handed out as a view of that chunk without copying.
 */
export class FrameDecoder {
  /** Frames announcing more bytes than this are refused before any allocation. */
  limit: number;
  private readonly header = Buffer.alloc(12);
  private headerHave = 0;
  private headerNeed = 4;
  private body: Buffer | null = null;
  private bodyHave = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** True when some bytes of a message (header or payload) have arrived but not all of it. */
  get midMessage(): boolean {
    return this.headerHave > 0 || this.body !== null;
  }

  /** Payload bytes still to come for the message being received (0 between messages). */
  get bodyWanted(): number {
    return this.body === null ? 0 : this.body.length - this.bodyHave;
  }

  /** Decodes `chunk`, calling `onMessage` for each complete message. Throws `OSError` on a bad frame. */
  push(chunk: Buffer, onMessage: (payload: Buffer) => void): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.body === null) {
        // Fast path: a whole 4-byte header and its whole payload inside this chunk.
        if (this.headerHave === 0 && len - pos >= 4) {
          const size = chunk.readInt32BE(pos);
          if (size >= 0 && len - pos - 4 >= size) {
            this.check(size);
            onMessage(chunk.subarray(pos + 4, pos + 4 + size));
            pos += 4 + size;
            continue;
          }
        }
        const take = Math.min(this.headerNeed - this.headerHave, len - pos);
        chunk.copy(this.header, this.headerHave, pos, pos + take);
        this.headerHave += take;
        pos += take;
        const size = this.headerDone();
        if (size === null) continue;
        if (size === 0) {
          onMessage(Buffer.alloc(0));
          continue;
        }
        if (len - pos >= size) {
          onMessage(chunk.subarray(pos, pos + size));
          pos += size;
          continue;
        }
        this.body = Buffer.allocUnsafe(size);
        this.bodyHave = 0;
      }
      const take = Math.min(this.body.length - this.bodyHave, len - pos);
      chunk.copy(this.body, this.bodyHave, pos, pos + take);
      this.bodyHave += take;
      pos += take;
      if (this.bodyHave === this.body.length) {
        const done = this.body;
        this.body = null;
        this.bodyHave = 0;
        onMessage(done);
      }
    }
  }

  /**
   * Where the next bytes go when the stream is read one message at a time (a socket shared with
   * another process must not be read past the end of the message): the rest of the header, then
   * the rest of the payload, read straight into the message's own buffer.
   */
  nextSpan(): Buffer {
    return this.body === null ? this.header.subarray(this.headerHave, this.headerNeed) : this.body.subarray(this.bodyHave);
  }

  /** `n` bytes were read into `nextSpan()`: hands out the message once it is complete. */
  commit(n: number, onMessage: (payload: Buffer) => void): void {
    if (this.body !== null) {
      this.bodyHave += n;
      if (this.bodyHave < this.body.length) return;
      const done = this.body;
      this.body = null;
      this.bodyHave = 0;
      onMessage(done);
      return;
    }
    this.headerHave += n;
    const size = this.headerDone();
    if (size === 0) onMessage(Buffer.alloc(0));
    else if (size !== null) {
      this.body = Buffer.allocUnsafe(size);
      this.bodyHave = 0;
    }
  }

  /** The payload size once the header is complete (checked against the limit); null while more
   * header is to come (a -1 pre-header announces 8 more bytes). */
  private headerDone(): number | null {
    if (this.headerHave < this.headerNeed) return null;
    let size: number;
    if (this.headerNeed === 4) {
      size = this.header.readInt32BE(0);
      if (size === -1) {
        this.headerNeed = 12;
        return null;
      }
      if (size < 0) throw new OSError('bad message length');
    } else {
      const big = this.header.readBigUInt64BE(4);
      if (big > BigInt(this.limit)) throw new OSError('bad message length');
      size = Number(big);
    }
    this.check(size);
    this.headerHave = 0;
    this.headerNeed = 4;
    return size;
  }

  private check(size: number): void {
    if (size > this.limit) throw new OSError('bad message length');
  }
}

// ---- the authkey challenge (CPython 3.12+, Lib/multiprocessing/connection.py) ----------------

const MESSAGE_LENGTH = 40;
const MD5ONLY_MESSAGE_LENGTH = 20;
const MD5_DIGEST_LEN = 16;
const LEGACY_LENGTHS = [MD5ONLY_MESSAGE_LENGTH, MD5_DIGEST_LEN];
export const CHALLENGE = Buffer.from('#CHALLENGE#');
export const WELCOME = Buffer.from('#WELCOME#');
export const FAILURE = Buffer.from('#FAILURE#');
/** Python's digest names and OpenSSL's names for them. */
const ALLOWED_DIGESTS: Record<string, string> = {
  md5: 'md5',
  sha256: 'sha256',
  sha384: 'sha384',
  sha3_256: 'sha3-256',
  sha3_384: 'sha3-384',
};
const MAX_DIGEST_LEN = Math.max(...Object.keys(ALLOWED_DIGESTS).map((d) => d.length));
/** Every handshake receive is `recv_bytes(256)`. */
export const HANDSHAKE_MAXLENGTH = 256;

export type DigestName = 'md5' | 'sha256' | 'sha384' | 'sha3_256' | 'sha3_384';

function repr(bytes: Uint8Array): string {
  let out = "b'";
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x27) out += "\\'";
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `${out}'`;
}

/** `_get_digest_name_and_payload`: '' means the legacy unprefixed HMAC-MD5 form. */
export function digestNameAndPayload(message: Buffer): [string, Buffer] {
  if (LEGACY_LENGTHS.includes(message.length)) return ['', message];
  if (message.length > 0 && message[0] === 0x7b /* { */) {
    const curly = message.subarray(0, MAX_DIGEST_LEN + 2).indexOf(0x7d /* } */, 1);
    if (curly > 0) {
      const digest = message.subarray(1, curly).toString('latin1');
      if (Object.hasOwn(ALLOWED_DIGESTS, digest)) return [digest, message.subarray(curly + 1)];
    }
  }
  throw new AuthenticationError(
    `unsupported message length, missing digest prefix, or unsupported digest: message=${repr(message)}`,
  );
}

function hmac(key: Uint8Array, message: Uint8Array, digest: string): Buffer {
  return nodeCrypto().createHmac(ALLOWED_DIGESTS[digest]!, key).update(message).digest();
}

/** `_create_response`: the reply to a challenge `message` (without the `#CHALLENGE#` prefix). */
export function createResponse(authkey: Uint8Array, message: Buffer): Buffer {
  const [digest] = digestNameAndPayload(message);
  if (digest === '') return hmac(authkey, message, 'md5');
  return Buffer.concat([Buffer.from(`{${digest}}`, 'ascii'), hmac(authkey, message, digest)]);
}

/** `_verify_challenge`: throws `AuthenticationError` unless `response` answers `message`. */
export function verifyChallenge(authkey: Uint8Array, message: Buffer, response: Buffer): void {
  const [name, mac] = digestNameAndPayload(response);
  const digest = name || 'md5';
  const expected = hmac(authkey, message, digest);
  if (expected.length !== mac.length) {
    throw new AuthenticationError(`expected '${digest}' of length ${expected.length} got ${mac.length}`);
  }
  if (!nodeCrypto().timingSafeEqual(expected, mac)) throw new AuthenticationError('digest received was wrong');
}

/** The server's challenge: `{digest}` + 40 random bytes (the MAC covers the prefix too). */
export function newChallenge(digest: DigestName = 'sha256'): Buffer {
  if (!Object.hasOwn(ALLOWED_DIGESTS, digest)) throw new AuthenticationError(`digest_name=${digest} unsupported`);
  return Buffer.concat([Buffer.from(`{${digest}}`, 'ascii'), nodeCrypto().randomBytes(MESSAGE_LENGTH)]);
}

/** Checks a received `#CHALLENGE#...` message and returns the challenge itself. */
export function parseChallenge(received: Buffer): Buffer {
  if (!received.subarray(0, CHALLENGE.length).equals(CHALLENGE)) {
    throw new AuthenticationError(`Protocol error, expected challenge: message=${repr(received)}`);
  }
  const message = received.subarray(CHALLENGE.length);
  if (message.length < MD5ONLY_MESSAGE_LENGTH) {
    throw new AuthenticationError(`challenge too short: ${message.length} bytes`);
  }
  return message;
}
