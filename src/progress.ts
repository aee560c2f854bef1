/**
 * The pools' `{ progress }` option: a bar on stderr drawn as tqdm draws it, or the caller's callback.
 *
 *    45%|█████████▍           | 135/300 [00:01<00:02, 98.20it/s]     (the total is known)
 *   135it [00:01, 98.20it/s]                                         (imap over a generator)
 *
 * The bar counts items (not chunks), redraws at most every `MIN_INTERVAL_MS` however fast items
 * finish, draws its last state and a newline when the call ends (done, failed or aborted), and draws
 * nothing at all when stderr is not a terminal. A callback is called after every finished chunk,
 * terminal or not.
 */

/** `(done, total)`: items finished so far, and how many there are (null: not known in advance). */
export type ProgressCallback = (done: number, total: number | null) => void;
export type ProgressOption = boolean | ProgressCallback | undefined;

/** What a pool call reports its finished items to. */
export interface ProgressMeter {
  /** `items` more items finished. */
  update(items: number): void;
  /** The call is over: the last state stays on screen, followed by a newline. Idempotent. */
  close(): void;
}

const MIN_INTERVAL_MS = 100;
const BLOCKS = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];

/** `mm:ss`, or `h:mm:ss` from an hour on (tqdm's format_interval). */
export function formatInterval(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function formatRate(done: number, seconds: number): string {
  if (seconds <= 0 || done === 0) return '?it/s';
  const rate = done / seconds;
  // Slow work reads better as seconds per item, as tqdm shows it.
  return rate >= 1 ? `${rate.toFixed(2)}it/s` : `${(1 / rate).toFixed(2)}s/it`;
}

/** One line of the bar, at most `columns - 1` characters wide (the last column would wrap). */
export function formatProgress(done: number, total: number | null, seconds: number, columns = 80): string {
  const rate = formatRate(done, seconds);
  if (total === null || total <= 0) return `${done}it [${formatInterval(seconds)}, ${rate}]`;
  const fraction = Math.min(1, done / total);
  const remaining = done > 0 ? ((total - done) * seconds) / done : NaN;
  const eta = Number.isFinite(remaining) ? formatInterval(remaining) : '?';
  const left = `${String(Math.floor(fraction * 100)).padStart(3)}%|`;
  const right = `| ${done}/${total} [${formatInterval(seconds)}<${eta}, ${rate}]`;
  const width = Math.max(1, Math.min(60, columns - 1 - left.length - right.length));
  const eighths = Math.floor(fraction * width * 8);
  const full = Math.floor(eighths / 8);
  const partial = full < width ? BLOCKS[eighths % 8]! : '';
  return `${left}${'█'.repeat(full)}${partial}${' '.repeat(width - full - partial.length)}${right}`;
}

/** A bar on a terminal stream. */
class TerminalBar implements ProgressMeter {
  private done = 0;
  private readonly started = performance.now();
  private lastDraw = -Infinity;
  private closed = false;

  constructor(
    private readonly total: number | null,
    private readonly stream: NodeJS.WriteStream,
  ) {
    this.draw(this.started);
  }

  update(items: number): void {
    if (this.closed) return;
    this.done += items;
    const now = performance.now();
    if (now - this.lastDraw >= MIN_INTERVAL_MS) this.draw(now);
  }

  /** Draws the final state (whatever the time since the last draw) and ends the line. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.draw(performance.now());
    this.stream.write('\n');
  }

  private draw(now: number): void {
    const line = formatProgress(this.done, this.total, (now - this.started) / 1000, this.stream.columns || 80);
    // Back to the line's start, the new state, and erase what a longer earlier state left.
    this.stream.write(`\r${line}\x1b[K`);
    // The interval runs from when this line reached the terminal, not from when it was asked for:
    // a draw delayed on a busy machine must not bring the next one closer than MIN_INTERVAL_MS.
    this.lastDraw = performance.now();
  }
}

/** The meter for a call's `progress` option, or null when it reports nothing. */
export function progressMeter(option: ProgressOption, total: number | null, stream: NodeJS.WriteStream = process.stderr): ProgressMeter | null {
  if (typeof option === 'function') {
    let done = 0;
    return {
      update: (items) => option((done += items), total),
      close: () => {},
    };
  }
  if (option !== true || !stream.isTTY) return null;
  return new TerminalBar(total, stream);
}

/** How many items an input holds when that is known without reading it (tqdm's `len()`). */
export function knownLength(input: unknown): number | null {
  if (Array.isArray(input)) return input.length;
  if (ArrayBuffer.isView(input) && 'length' in input) return (input as unknown as { length: number }).length;
  if (input instanceof Set || input instanceof Map) return input.size;
  return null;
}
