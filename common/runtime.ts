/*
 * runtime.ts — what every component is started with: validated config, the
 * data folder, a logger and the environment (for secrets named in config).
 * Built once by the CLI; components never read process.env themselves.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';

export interface Runtime {
  config: Config;
  dataDir: string;
  log: Logger;
  env: NodeJS.ProcessEnv;
  /**
   * Reads and validates the config again (SIGHUP, the reload routes); throws ConfigError with
   * every problem. Absent when the process has no file to re-read (tests building a Runtime).
   */
  reloadConfig?: () => Config;
}

/** A started component: `close()` stops accepting, finishes in-flight work, closes storage. */
export interface Component {
  close(): Promise<void>;
}
