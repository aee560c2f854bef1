/**
 * The one framed-message layer on `ByteRing`, used by queues, pool channels and the manager lane.
 * A value is serialised once, straight into its frame (`messageFrame`: `dumps` leaves headroom for
 * the frame's length and the user's own header), the frame is written into the ring whole
 * (`ByteRing.writeWhatFits`, or streamed when larger than the ring), and the reader decodes it
 * where it lies in the ring (`ByteRing.tryDecodeFrame` + `decodeMessage`). Between the sender's
 * serialiser and the receiver's deserialiser the ring's copy is the only one (plus one for v8's
 * encoding, whose decoded typed arrays could otherwise be views of ring memory).
 */
import { decodesByCopy, dumps, loads, loadsSync, needsRebuild, type ReduceContext, type ReduceOptions } from './reduction.js';
import { LENGTH_BYTES } from './ring.js';

/** Writes the length of `frame`'s body into its first LENGTH_BYTES (left free for it). */
export function sealFrame(frame: Buffer): Buffer {
  frame.writeUInt32LE(frame.length - LENGTH_BYTES, 0);
  return frame;
}

/** `value` serialised straight into a frame: the length, `head` bytes for the caller's own header
 * (`frame[LENGTH_BYTES .. LENGTH_BYTES + head)`, to fill in), then the value's bytes. */
export function messageFrame(value: unknown, head = 0, ctx?: ReduceContext, options?: ReduceOptions): Buffer {
  return sealFrame(dumps(value, ctx, options, LENGTH_BYTES + head));
}

/** A message that needs an asynchronous rebuild (`loads`: a task's module to import): its bytes,
 * copied out of the ring unless they were the reader's own. */
export class Later {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Decodes a message's bytes where they lie: its value, or `Later`; throws if they do not decode.
 * Unless `owned` (the bytes are the caller's to keep), they are ring memory that the writer reuses
 * once the decode returns, so only the encodings that copy everything out (JSON, bytes, numbers)
 * are decoded in place; v8's deserializer may return typed arrays that are views of its input.
 */
export function decodeMessage(bytes: Uint8Array, owned = false): unknown {
  if (needsRebuild(bytes)) return new Later(owned ? bytes : bytes.slice());
  return loadsSync(owned || decodesByCopy(bytes) ? bytes : bytes.slice());
}

/** A decoded message's value: at once, or, for `Later`, a Promise of it. */
function settleMessage(decoded: unknown): unknown {
  return decoded instanceof Later ? loads(decoded.bytes) : decoded;
}

/** The message's value as a Promise (decoded now): rejected if the bytes do not decode. */
export function decodeMessageAsync(bytes: Uint8Array, owned = false): Promise<unknown> {
  const value = decodeNow(bytes, owned);
  return new Promise((resolve) => resolve(value()));
}

/** Decodes now, for the bytes may be ring memory about to be reused; the function returned gives
 * the value (a Promise of it for `Later`), or throws the decoding error, when the caller asks. */
export function decodeNow(bytes: Uint8Array, owned: boolean): () => unknown {
  let decoded: unknown;
  try {
    decoded = decodeMessage(bytes, owned);
  } catch (error) {
    return () => {
      throw error;
    };
  }
  return () => settleMessage(decoded);
}
