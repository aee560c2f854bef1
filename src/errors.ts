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

/** How long a get or put waited before it gave up, for the messages of Empty and Full. */
function waited(block: boolean | undefined, timeout: number | null | undefined): string {
  return block === false ? 'without waiting (block: false)' : `after waiting ${timeout} s (the timeout)`;
}

/** Python's `Empty` (whose message is empty), saying which queue and how long the get waited. */
export function emptyQueue(queue: string, block: boolean | undefined, timeout: number | null | undefined): Empty {
  return new Empty(`no item in ${queue} ${waited(block, timeout)}`);
}

/** Python's `Full`, saying which queue and how long the put waited. */
export function fullQueue(queue: string, block: boolean | undefined, timeout: number | null | undefined): Full {
  return new Full(`${queue} is full ${waited(block, timeout)}`);
}

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

/** Python's `FileNotFoundError` (an `OSError`, code `ENOENT`): a shared memory segment by a name
 * that does not exist. The addon's errors also carry `errno`, `syscall` and `filename`. */
export class FileNotFoundError extends OSError {
  declare errno?: number;
  declare syscall?: string;
  declare filename?: string;
}
named(FileNotFoundError, 'FileNotFoundError');

/** Python's `FileExistsError` (an `OSError`, code `EEXIST`). */
export class FileExistsError extends OSError {
  declare errno?: number;
  declare syscall?: string;
  declare filename?: string;
}
named(FileExistsError, 'FileExistsError');

/** Python's `PermissionError` (an `OSError`, code `EACCES`/`EPERM`). */
export class PermissionError extends OSError {
  declare errno?: number;
  declare syscall?: string;
  declare filename?: string;
}
named(PermissionError, 'PermissionError');

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

/** Python's `RuntimeError` (a manager's `threading` primitives, a dict changed while iterated). */
export class RuntimeError extends Error {}
named(RuntimeError, 'RuntimeError');

/** Python's `AttributeError` (a manager's Namespace, a method a proxy does not expose). */
export class AttributeError extends Error {}
named(AttributeError, 'AttributeError');

/** Python's `AssertionError` (a manager server's protocol checks). */
export class AssertionError extends Error {}
named(AssertionError, 'AssertionError');

/** The stack of an exception raised in another process or thread (Python's `RemoteTraceback`):
 * the `cause` of the error re-thrown here. */
export class RemoteTraceback extends Error {}
named(RemoteTraceback, 'RemoteTraceback');

type ErrorClass = new (message?: string) => Error;

/** Error classes by name, so an error thrown in another process is re-created with its class. */
export const errorClasses: Record<string, ErrorClass> = {
  ProcessError, AuthenticationError, TimeoutError, Empty, Full, BrokenBarrierError,
  RemoteError, PicklingError, UnpicklingError, EOFError, KeyError, IndexError, ValueError,
  NotAvailableError, RuntimeError, AttributeError, AssertionError, RemoteTraceback,
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
  OSError: OSError as unknown as ErrorClass,
  FileNotFoundError: FileNotFoundError as unknown as ErrorClass,
  FileExistsError: FileExistsError as unknown as ErrorClass,
  PermissionError: PermissionError as unknown as ErrorClass,
};

/**
 * Makes an exception that arrived from another process or thread ready to be thrown here, as
 * Python's `rebuild_exc` does: it keeps its class, name, message and properties; its stack becomes
 * this side's (where the caller awaits), and the remote stack goes in `cause` as a
 * `RemoteTraceback` (whose own `cause` is the remote error's cause, if it had one). The error must
 * be freshly rebuilt: it is changed in place.
 */
export function withRemoteTraceback(error: Error): Error {
  const remoteStack = error.stack ?? `${error.name}: ${error.message}`;
  const here: { stack?: string } = {};
  Error.captureStackTrace(here, withRemoteTraceback);
  const frames = (here.stack ?? '').split('\n').slice(1).join('\n');
  Object.defineProperty(error, 'stack', { value: `${error.name}: ${error.message}\n${frames}`, configurable: true, writable: true });
  const trace = new RemoteTraceback(remoteStack, error.cause === undefined ? undefined : { cause: error.cause });
  Object.defineProperty(error, 'cause', { value: trace, configurable: true, writable: true });
  return error;
}
