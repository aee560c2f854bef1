/**
 * The resource tracker process (started by src/resourceTracker.ts):
 *   node [loader] resourceTrackerMain.(ts|js) <socket path>
 * fd 3: the starter's connection (one end of a socketpair); fd 4: the listening Unix socket at
 * <socket path>, already bound, where the rest of the tree connects.
 *
 * Each connection sends lines `REGISTER|UNREGISTER \t <type> \t <name>`. When the last connection
 * has closed, whatever is still registered is reported with Python's warning and unlinked, and the
 * tracker exits (status 1 if it had to clean up, as Python's).
 */
import { createServer, Socket } from 'node:net';
import { rmSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { tryLoadNative } from '../native.js';
import { pyRepr } from '../managers/pyvalues.js';

const address = process.argv[2]!;
const registered = new Map<string, Set<string>>([['shared_memory', new Set()], ['file', new Set()]]);
let connections = 0;
let closing = false;

// As Python's tracker: only SIGKILL stops it, so that it can always clean up after the tree.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});

function serve(sock: Socket): void {
  connections++;
  let pending = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const [cmd, rtype, name] = line.split('\t');
      const set = registered.get(rtype ?? '');
      if (!set || !name) {
        process.stderr.write(`resource_tracker: bad message ${JSON.stringify(line)}\n`);
      } else if (cmd === 'REGISTER') {
        set.add(name);
      } else if (cmd === 'UNREGISTER') {
        set.delete(name);
      } else {
        process.stderr.write(`resource_tracker: bad message ${JSON.stringify(line)}\n`);
      }
    }
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    connections--;
    // A connection from the accept backlog may still be on its way: look again a moment later.
    if (connections === 0) setTimeout(() => connections === 0 && shutdown(), 100);
  });
}

function cleanup(rtype: string, name: string): void {
  if (rtype === 'shared_memory') {
    const native = tryLoadNative();
    if (!native) throw new Error('the native addon is not available');
    native.shmUnlink(name);
  } else if (rtype === 'file') {
    unlinkSync(name);
  }
}

/** Python's str() of the OSError a failed unlink raises: `[Errno 2] No such file or directory: '/x'`. */
function osErrorText(err: unknown, name: string): string {
  const e = err as NodeJS.ErrnoException;
  if (e.message?.startsWith('[Errno')) return e.message; // the addon already speaks Python
  const what = /^[A-Z0-9]+: ([^,]+)/.exec(e.message ?? '')?.[1];
  if (typeof e.errno !== 'number' || !what) return String(e.message ?? err);
  return `[Errno ${Math.abs(e.errno)}] ${what[0]!.toUpperCase()}${what.slice(1)}: ${pyRepr(name)}`;
}

function shutdown(): void {
  if (closing) return;
  closing = true;
  server.close();
  // Python's exit status: 0 clean, 1 something had leaked, 2 a leak could not be cleaned up.
  let status = 0;
  for (const [rtype, names] of registered) {
    if (names.size === 0) continue;
    status = Math.max(status, 1);
    process.stderr.write(`resource_tracker: There appear to be ${names.size} leaked ${rtype} objects to clean up at shutdown\n`);
    for (const name of names) {
      try {
        cleanup(rtype, name);
      } catch (err) {
        // Including a resource that is already gone: someone unlinked it without unregistering.
        status = 2;
        process.stderr.write(`resource_tracker: ${pyRepr(name)}: ${osErrorText(err, name)}\n`);
      }
    }
  }
  try {
    rmSync(dirname(address), { recursive: true, force: true });
  } catch {}
  process.exitCode = status;
  // Let stderr drain; nothing else holds the loop open.
}

const server = createServer(serve);
server.on('error', (err) => process.stderr.write(`resource_tracker: ${err.message}\n`));
server.listen({ fd: 4 });
serve(new Socket({ fd: 3, readable: true, writable: false }));
