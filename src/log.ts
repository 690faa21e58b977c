/**
 * Structured logs: one JSON object per line on stderr, every message and
 * field redacted. Installed as the Temporal runtime's logger too, so SDK and
 * workflow logs share the format.
 */
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { redact } from './secrets.ts';

const LEVELS: LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

export function logLevel(): LogLevel {
  const wanted = (process.env.OPSFLOW_LOG_LEVEL ?? 'INFO').toUpperCase() as LogLevel;
  return LEVELS.includes(wanted) ? wanted : 'INFO';
}

export function writeLog(level: string, message: string, meta?: Record<string, unknown>): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level: level.toLowerCase(), msg: message, ...meta }, (_k, v) =>
    typeof v === 'bigint' ? v.toString() : v,
  );
  process.stderr.write(`${redact(line)}\n`);
}

let installed = false;
/** Installs the JSON logger into the Temporal runtime (once per process). */
export function installRuntimeLogger(): void {
  if (installed) return;
  installed = true;
  Runtime.install({
    logger: new DefaultLogger(logLevel(), (entry) => writeLog(entry.level, entry.message, entry.meta)),
  });
}

export const log = {
  info: (message: string, meta?: Record<string, unknown>) => writeLog('INFO', message, meta),
  error: (message: string, meta?: Record<string, unknown>) => writeLog('ERROR', message, meta),
};
