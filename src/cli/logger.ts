import { destination, pino } from 'pino';
import type { Logger } from '../core/logger.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** JSON log lines on stderr (stdout stays for results), with keys and tokens redacted. */
export function createCliLogger(level: LogLevel, name: string): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: ['connectionString', '*.connectionString', 'token', '*.token', 'key', '*.key', 'headers.ServiceBusAuthorization'],
        censor: '***',
      },
    },
    destination(2),
  );
}
