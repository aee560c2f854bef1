/**
 * multiprocessing-ts: Python's multiprocessing for TypeScript on Node.js.
 * The facade: re-exports only (Python's multiprocessing/__init__.py binds the default context).
 */
export * from './errors.js';
export {
  Process, ParentProcess, currentProcess, parentProcess, activeChildren, cpuCount, processCpuCount,
  freezeSupport, isMain, type ProcessOptions,
} from './process.js';
export {
  getContext, getStartMethod, setStartMethod, getAllStartMethods, BaseContext, DefaultContext,
  ConcreteContext, type StartMethod,
} from './context.js';
export { setExecutable } from './backends/spawn.js';
export { setForkserverPreload } from './backends/forkserver.js';
export { task, serializable, type TaskOptions } from './tasks.js';
export { getLogger, logToStderr, Logger, type LogRecord, type Handler } from './logger.js';
export { reduceSymbol } from './reduction.js';
