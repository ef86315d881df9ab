// Structured JSON log lines on stderr, one object per line. Never pass tokens or keys here.
import type { LogLevel } from '../config/types.ts';

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  isEnabled(level: LogLevel): boolean;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogSink = (line: string) => void;

const stderrSink: LogSink = (line) => {
  process.stderr.write(line);
};

export function createLogger(level: LogLevel, sink: LogSink = stderrSink): Logger {
  const min = rank[level];
  const emit = (lvl: LogLevel, msg: string, fields: LogFields | undefined): void => {
    if (rank[lvl] < min) return;
    sink(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n');
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    isEnabled: (lvl) => rank[lvl] >= min,
  };
}

/** For tests and tools that must stay quiet. */
export const silentLogger: Logger = createLogger('error', () => {});
