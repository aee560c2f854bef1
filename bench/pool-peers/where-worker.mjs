// bench/idle.mjs: piscina's worker reports the thread it runs on ("pid/tid"), so that its CPU time can be read.
import { readlinkSync } from 'node:fs';

export function where() {
  return readlinkSync('/proc/thread-self').replace('/task/', '/');
}
