/*
 * cli-support.ts — what every `postino` command shares: the usage error (exit
 * 2), the data folder ($POSTINO_DATA, read once here and passed down) and the
 * config loader that prints every problem with its key path and exits 2.
 */
import path from 'node:path';
import { ConfigError, loadConfig, type Config, type ConfigProblem } from '../common/config.js';

/** Bad usage: printed with the usage text, exit status 2. */
export class UsageError extends Error {}

export function dataDirOf(env: NodeJS.ProcessEnv): string {
  return path.resolve(env.POSTINO_DATA || './data');
}

/** Prints every problem with its key path and exits 2; returns when there is none. */
export function exitOnProblems(source: string, problems: ConfigProblem[]): void {
  if (problems.length === 0) return;
  process.stderr.write(new ConfigError(source, problems).report() + '\n');
  process.exit(2);
}

export function loadOrExit(file: string | undefined, overlay?: (raw: Record<string, unknown>) => Record<string, unknown>): Config {
  try {
    return loadConfig(file, overlay);
  } catch (e) {
    if (e instanceof ConfigError) exitOnProblems(e.source, e.problems);
    throw e;
  }
}
