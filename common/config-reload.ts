/*
 * config-reload.ts — what a reload of the config file (SIGHUP, `postino hosted
 * reload`, `postino forwarder reload`) changed, split into what the running
 * process takes at once and what needs a restart (ports, the data folder's
 * layout, anything a component read once at start), and the answer the reload
 * routes return.
 *
 * Paths are the config's key paths (`listener.port`), with accounts named by
 * id instead of position (`accounts[shop].networks`), because positions move
 * when an account is added in the middle. Arrays compare whole.
 *
 * Side effects: none (the caller reads the file, through Runtime.reloadConfig).
 */
import { ConfigError, type Config, type ConfigProblem } from './config.js';

/** What the reload routes answer (and the CLI prints; exit 2 when `problems` is not empty). */
export interface ReloadAnswer {
  ok: boolean;
  /** Every problem of the new file with its key path; non-empty = nothing was changed. */
  problems: ConfigProblem[];
  /** Changed and now in effect. */
  applied: string[];
  /** Changed in the file but not in effect until the process restarts. */
  restartNeeded: string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Key paths whose values differ between two parsed configs (or parts of them). */
export function changedPaths(before: unknown, after: unknown, at = ''): string[] {
  if (isObject(before) && isObject(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    return [...keys].sort().flatMap((k) => changedPaths(before[k], after[k], at ? `${at}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [at || '(top level)'];
}

/** Changed paths of two account lists, by id: `accounts[shop]` for an added or removed account. */
export function accountPaths(before: readonly { id: string }[], after: readonly { id: string }[]): string[] {
  const a = new Map(before.map((x) => [x.id, x]));
  const b = new Map(after.map((x) => [x.id, x]));
  const ids = [...new Set([...a.keys(), ...b.keys()])].sort();
  return ids.flatMap((id) => {
    const x = a.get(id);
    const y = b.get(id);
    if (!x || !y) return [`accounts[${id}]`];
    return changedPaths(x, y, `accounts[${id}]`);
  });
}

/** Reads the config again; the problems (with key paths) instead of throwing. */
export function tryReload(read: () => Config): { config: Config } | { problems: ConfigProblem[] } {
  try {
    return { config: read() };
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems };
    return { problems: [{ path: '', message: (e as Error).message }] };
  }
}

export function refused(problems: ConfigProblem[]): ReloadAnswer {
  return { ok: false, problems, applied: [], restartNeeded: [] };
}

/** The answer for these changed paths, given which of them the process takes live. */
export function answerFor(paths: readonly string[], live: (path: string) => boolean): ReloadAnswer {
  return { ok: true, problems: [], applied: paths.filter(live), restartNeeded: paths.filter((p) => !live(p)) };
}
