// The pools' `{ progress }` option: the bar's format, a real program drawing it in a real terminal
// (tmux: the screen is captured), and nothing drawn when stderr is not a terminal.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatInterval, formatProgress, knownLength, progressMeter } from '../src/progress.ts';
import { runProgram } from './helpers.ts';

const program = fileURLToPath(new URL('./fixtures/progress/program.ts', import.meta.url));

interface Report {
  isTTY: boolean;
  writes: { at: number; text: string }[];
  mapMs: number;
  calls: [number, number | null][];
  mapped: number;
  seen: number;
}

const FINAL_MAP = /^100%\|█+\| 300\/300 \[\d\d:\d\d<00:00, \d+\.\d\dit\/s\]$/;
const FINAL_IMAP = /^50it \[\d\d:\d\d, \d+\.\d\dit\/s\]$/;

function checkCallbacks(report: Report): void {
  // 40 items in chunks of 4: called after every chunk, with items (not chunks) and the total.
  assert.deepEqual(report.calls, Array.from({ length: 10 }, (_, i) => [4 * (i + 1), 40]));
  assert.equal(report.mapped, 300);
  assert.equal(report.seen, 50);
}

describe('progress: the line', () => {
  it('shows percentage, bar, items done of total, elapsed, remaining and rate, as tqdm does', () => {
    const line = formatProgress(135, 300, 1.5, 80);
    assert.match(line, /^ 45%\|█+[▏▎▍▌▋▊▉ ]? *\| 135\/300 \[00:01<00:01, 90\.00it\/s\]$/);
    assert.equal(line.length, 79, 'fills the terminal but its last column');
    assert.match(formatProgress(0, 300, 0, 80), /^  0%\| +\| 0\/300 \[00:00<\?, \?it\/s\]$/);
    assert.match(formatProgress(300, 300, 2, 80), /^100%\|█+\| 300\/300 \[00:02<00:00, 150\.00it\/s\]$/);
  });

  it('shows a count, elapsed time and rate when the total is not known', () => {
    assert.equal(formatProgress(42, null, 4, 80), '42it [00:04, 10.50it/s]');
  });

  it('shows seconds per item for slow work, and hours when it takes them', () => {
    assert.match(formatProgress(2, 10, 8, 80), /4\.00s\/it\]$/);
    assert.equal(formatInterval(3725), '1:02:05');
    assert.equal(formatInterval(59.9), '00:59');
  });

  it('stays within a narrow terminal', () => {
    assert.ok(formatProgress(5, 1000, 1, 40).length <= 39);
  });

  it('redraws at most every 100 ms as the terminal sees it, however long a draw takes', () => {
    // A terminal stream whose every other draw is slow to reach the screen (a loaded machine).
    const writes: number[] = [];
    let asked = 0;
    const stream = {
      isTTY: true,
      get columns() {
        if (asked++ % 2 === 0) for (const until = performance.now() + 10; performance.now() < until; );
        return 80;
      },
      write(text: string) {
        if (text !== '\n') writes.push(performance.now());
        return true;
      },
    } as unknown as NodeJS.WriteStream;
    const meter = progressMeter(true, 1_000_000, stream)!;
    for (const until = performance.now() + 450; performance.now() < until; ) meter.update(1);
    meter.close();
    const gaps = writes.slice(1, -1).map((at, i) => at - writes[i]!);
    assert.ok(gaps.length >= 2, `${writes.length} draws`);
    for (const gap of gaps) assert.ok(gap >= 100, `two draws ${gap.toFixed(1)} ms apart: ${gaps.map((g) => g.toFixed(1)).join(', ')}`);
  });

  it('knows the length of arrays, typed arrays, sets and maps, not of generators', () => {
    assert.equal(knownLength([1, 2, 3]), 3);
    assert.equal(knownLength(new Float64Array(4)), 4);
    assert.equal(knownLength(new Set([1])), 1);
    assert.equal(knownLength((function* () {})()), null);
  });
});

describe('progress: a program in a real terminal (tmux)', () => {
  const hasTmux = spawnSync('tmux', ['-V']).status === 0;

  it('draws the bar at most ~10 times a second and leaves each call\'s final line on screen', { skip: !hasTmux && !process.env.CI && 'tmux is not installed (.ci/run installs it)' }, (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'mp-progress-'));
    const report = join(dir, 'report.json');
    const socket = `mp-progress-${process.pid}`;
    const tmux = (...args: string[]) => spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8', timeout: 120_000 });
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    // The program runs in a 100x12 terminal; then the pane's shell tells us it is done and waits, so
    // the screen stays to be captured until we kill the server.
    const command = [process.execPath, ...process.execArgv, program, report].map(quote).join(' ');
    const shell = `${command}; tmux -L ${socket} wait-for -S done; tmux -L ${socket} wait-for release`;
    try {
      assert.equal(tmux('-f', '/dev/null', 'new-session', '-d', '-x', '100', '-y', '12', shell).status, 0);
      const waited = tmux('wait-for', 'done');
      assert.equal(waited.status, 0, `the program did not finish: ${waited.error ?? waited.stderr}`);
      const screen = tmux('capture-pane', '-p').stdout.split('\n').map((l) => l.trimEnd()).filter(Boolean);
      const got: Report = JSON.parse(readFileSync(report, 'utf8'));
      t.diagnostic(`the screen:\n${screen.join('\n')}`);

      assert.equal(got.isTTY, true);
      assert.match(screen[0]!, FINAL_MAP, `screen:\n${screen.join('\n')}`);
      assert.match(screen[1]!, FINAL_IMAP, `screen:\n${screen.join('\n')}`);
      const stopped = /^(\d+)it \[\d\d:\d\d, [\d.]+it\/s\]$/.exec(screen[2] ?? '');
      assert.ok(stopped && Number(stopped[1]) >= 21, `the imap left after 21 results has its own last line:\n${screen.join('\n')}`);
      assert.equal(screen[3], 'left the loop', `the bar of the imap left early was ended when the loop was left:\n${screen.join('\n')}`);
      assert.equal(screen.length, 4, `nothing else on screen:\n${screen.join('\n')}`);

      // The first bar's draws: until its closing newline.
      const end = got.writes.findIndex((w) => w.text === '\n');
      const draws = got.writes.slice(0, end);
      const seconds = got.mapMs / 1000;
      assert.ok(draws.length <= 2 + Math.ceil(seconds * 10), `${draws.length} draws in ${seconds.toFixed(2)} s for 300 updates`);
      for (let i = 1; i < draws.length - 1; i++) {
        // Every draw but the last (the call's end) comes 100 ms or more after the one before.
        assert.ok(draws[i]!.at - draws[i - 1]!.at >= 99, `redrawn within 100 ms: ${draws[i]!.at - draws[i - 1]!.at} ms`);
      }
      const middle = draws.map((w) => w.text).filter((t) => /^\r +\d+%\|.*\| (\d+)\/300 \[\d\d:\d\d<\d\d:\d\d, [\d.]+it\/s\]\x1b\[K$/.test(t) && !t.includes('300/300') && !t.includes(' 0/300'));
      if (seconds > 0.3) assert.ok(middle.length > 0, `a state between the first and the last was drawn: ${JSON.stringify(draws.map((d) => d.text))}`);
      checkCallbacks(got);
    } finally {
      tmux('kill-server');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('draws nothing when stderr is not a terminal, and still calls a progress callback', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mp-progress-'));
    const report = join(dir, 'report.json');
    try {
      const r = await runProgram(program, [report], 120_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      const got: Report = JSON.parse(readFileSync(report, 'utf8'));
      assert.equal(got.isTTY, false);
      assert.deepEqual(got.writes, []);
      checkCallbacks(got);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
