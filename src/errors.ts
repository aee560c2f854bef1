/**
 * Every error class the library throws, in one module (as piscina's errors.ts).
 * Each class's `name` equals the class name, so an error re-thrown from another process keeps it.
 */

function named<T extends new (...args: any[]) => Error>(cls: T, name: string): T {
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true, configurable: true });
  return cls;
}

/** Python's `multiprocessing.ProcessError`: the base of the library's own process errors. */
export class ProcessError extends Error {}
named(ProcessError, 'ProcessError');

/** `Connection.recvBytesInto` with a buffer too small: `.data` holds the whole message. */
export class BufferTooShort extends ProcessError {
  constructor(readonly data: Uint8Array, message = 'buffer too short') {
    super(message);
  }
}
named(BufferTooShort, 'BufferTooShort');

/** The authkey challenge/response failed. */
export class AuthenticationError extends ProcessError {}
named(AuthenticationError, 'AuthenticationError');

/** Python's `multiprocessing.TimeoutError` (not the builtin one). */
export class TimeoutError extends ProcessError {}
named(TimeoutError, 'TimeoutError');

/** `queue.Empty`. */
export class Empty extends Error {}
named(Empty, 'Empty');

/** `queue.Full`. */
export class Full extends Error {}
named(Full, 'Full');

/** `threading.BrokenBarrierError`. */
export class BrokenBarrierError extends Error {}
named(BrokenBarrierError, 'BrokenBarrierError');

/** An error raised on a manager's server that is reported as text (Python's `RemoteError`). */
export class RemoteError extends Error {}
named(RemoteError, 'RemoteError');

/** A value cannot be serialised for another process; the message names its path and the fix. */
export class PicklingError extends Error {}
named(PicklingError, 'PicklingError');

/** Bytes received from another process could not be decoded. */
export class UnpicklingError extends Error {}
named(UnpicklingError, 'UnpicklingError');

/** A pool worker died while running a task (beyond Python, whose pool hangs here). */
export class WorkerLostError extends ProcessError {
  constructor(
    message: string,
    readonly exitcode: number | null = null,
    readonly signal: string | null = null,
  ) {
    super(message);
  }
}
named(WorkerLostError, 'WorkerLostError');

/** Python's `EOFError`: the other end of a connection closed. */
export class EOFError extends Error {}
named(EOFError, 'EOFError');

/** Python's `OSError` (e.g. "bad message length", a closed handle). */
export class OSError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}
named(OSError, 'OSError');

/** Python's `KeyError` (from a manager dict proxy, for instance). */
export class KeyError extends Error {}
named(KeyError, 'KeyError');

/** Python's `IndexError`. */
export class IndexError extends Error {}
named(IndexError, 'IndexError');

/** Python's `ValueError`, also used where Python raises `AssertionError` for misuse. */
export class ValueError extends Error {}
named(ValueError, 'ValueError');

/** A start method or feature that this platform cannot provide. */
export class NotAvailableError extends Error {}
named(NotAvailableError, 'NotAvailableError');

/** Error classes by name, so an error thrown in another process is re-created with its class. */
export const errorClasses: Record<string, new (message?: string) => Error> = {
  ProcessError, AuthenticationError, TimeoutError, Empty, Full, BrokenBarrierError,
  RemoteError, PicklingError, UnpicklingError, EOFError, KeyError, IndexError, ValueError,
  NotAvailableError, Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
  OSError: OSError as unknown as new (message?: string) => Error,
};
