/**
 * Python's multiprocessing logger: `getLogger()` and `logToStderr()`, lines formatted as
 * `[LEVEL/ProcessName] message`. The library logs process lifecycle events through it.
 */

const SUBDEBUG = 5;
const DEBUG = 10;
const INFO = 20;
const SUBWARNING = 25;
const WARNING = 30;
const ERROR = 40;
const CRITICAL = 50;

type LevelName = 'subdebug' | 'debug' | 'info' | 'subwarning' | 'warning' | 'error' | 'critical';
export type Level = number | LevelName | Uppercase<LevelName>;

const levelNumbers: Record<LevelName, number> = {
  subdebug: SUBDEBUG, debug: DEBUG, info: INFO, subwarning: SUBWARNING,
  warning: WARNING, error: ERROR, critical: CRITICAL,
};

function levelNumber(level: Level): number {
  if (typeof level === 'number') return level;
  const n = levelNumbers[level.toLowerCase() as LevelName];
  if (n === undefined) throw new TypeError(`Unknown logging level ${JSON.stringify(level)}`);
  return n;
}

function levelName(level: number): string {
  const entry = Object.entries(levelNumbers).find(([, n]) => n === level);
  return entry ? entry[0].toUpperCase() : `Level ${level}`;
}

export interface LogRecord {
  level: number;
  levelName: string;
  processName: string;
  message: string;
}

export type Handler = (record: LogRecord) => void;

let processNameOf: () => string = () => 'MainProcess';

/** Set by process.ts, so records carry the current process's name without an import cycle. */
export function setProcessNameSource(source: () => string): void {
  processNameOf = source;
}

function format(template: string, args: unknown[]): string {
  let i = 0;
  return template.replace(/%[sdrf%]/g, (m) => (m === '%%' ? '%' : i < args.length ? String(args[i++]) : m));
}

export class Logger {
  /** 0 = NOTSET, as Python: everything passes to the handlers. */
  level = 0;
  readonly handlers: Handler[] = [];
  constructor(readonly name: string) {}

  setLevel(level: Level): void {
    this.level = levelNumber(level);
  }
  getEffectiveLevel(): number {
    return this.level;
  }
  isEnabledFor(level: number): boolean {
    return this.handlers.length > 0 && level >= this.level;
  }
  addHandler(handler: Handler): void {
    if (!this.handlers.includes(handler)) this.handlers.push(handler);
  }
  removeHandler(handler: Handler): void {
    const i = this.handlers.indexOf(handler);
    if (i >= 0) this.handlers.splice(i, 1);
  }
  log(level: Level, message: string, ...args: unknown[]): void {
    const n = levelNumber(level);
    if (!this.isEnabledFor(n)) return;
    const record = { level: n, levelName: levelName(n), processName: processNameOf(), message: format(message, args) };
    for (const handler of this.handlers) handler(record);
  }
  subdebug(message: string, ...args: unknown[]): void { this.log(SUBDEBUG, message, ...args); }
  debug(message: string, ...args: unknown[]): void { this.log(DEBUG, message, ...args); }
  info(message: string, ...args: unknown[]): void { this.log(INFO, message, ...args); }
  subwarning(message: string, ...args: unknown[]): void { this.log(SUBWARNING, message, ...args); }
  warning(message: string, ...args: unknown[]): void { this.log(WARNING, message, ...args); }
  error(message: string, ...args: unknown[]): void { this.log(ERROR, message, ...args); }
  critical(message: string, ...args: unknown[]): void { this.log(CRITICAL, message, ...args); }
}

const logger = new Logger('multiprocessing');

/** Python's `multiprocessing.get_logger()`. */
export function getLogger(): Logger {
  return logger;
}

/** Python's `[%(levelname)s/%(processName)s] %(message)s` line on stderr. */
const stderrHandler: Handler = (r) => {
  process.stderr.write(`[${r.levelName}/${r.processName}] ${r.message}\n`);
};

/** Python's `multiprocessing.log_to_stderr(level)`: adds the stderr handler and returns the logger. */
export function logToStderr(level?: Level): Logger {
  logger.addHandler(stderrHandler);
  if (level !== undefined && level !== null) logger.setLevel(level);
  return logger;
}

/** What a child needs to log as its parent does. */
export function loggingConfig(): { level: number; toStderr: boolean } {
  return { level: logger.level, toStderr: logger.handlers.includes(stderrHandler) };
}

export function applyLoggingConfig(config: { level: number; toStderr: boolean }): void {
  logger.level = config.level;
  if (config.toStderr) logger.addHandler(stderrHandler);
}

// Library-internal shorthands, as Python's util.debug/info.
export const debug = (m: string, ...a: unknown[]) => logger.debug(m, ...a);
export const info = (m: string, ...a: unknown[]) => logger.info(m, ...a);
