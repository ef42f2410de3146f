/*
 * api-client.ts — the one HTTP client of the CLI: calls the forwarder's admin
 * API (8025) or the hosted node's API (8080) with a bearer token, and turns a
 * non-2xx answer into an error that names the URL and the status.
 *
 * The token comes from the environment variable the caller names
 * ($POSTINO_ADMIN_TOKEN, $POSTINO_API_KEY) or from <data>/secrets, where
 * `postino up` wrote it.
 */
import { readSecret, secretsDir } from '../common/secrets.js';
import { dataDirOf, UsageError } from './cli-support.js';

export interface ApiTarget {
  base: string;
  token: string;
}

/** Which API, its default URL, and where its token lives. */
export interface ApiKind {
  defaultUrl: string;
  tokenEnv: string;
  secret: 'admin-token' | 'api-key';
  what: string;
}

export const FORWARDER_ADMIN: ApiKind = { defaultUrl: 'http://127.0.0.1:8025', tokenEnv: 'POSTINO_ADMIN_TOKEN', secret: 'admin-token', what: 'admin token' };
export const HOSTED_API: ApiKind = { defaultUrl: 'http://127.0.0.1:8080', tokenEnv: 'POSTINO_API_KEY', secret: 'api-key', what: 'API key' };

export function apiTarget(kind: ApiKind, url: string | undefined, env: NodeJS.ProcessEnv): ApiTarget {
  const dataDir = dataDirOf(env);
  const token = env[kind.tokenEnv] ?? readSecret(dataDir, kind.secret);
  if (!token) throw new UsageError(`no ${kind.what}: set ${kind.tokenEnv} or run from where ${secretsDir(dataDir)} exists`);
  return { base: url ?? kind.defaultUrl, token };
}

/** One call; the parsed JSON body on 2xx, an error naming the URL and status otherwise. */
export async function apiCall<T = Record<string, unknown>>(t: ApiTarget, method: 'GET' | 'POST', route: string | URL): Promise<T> {
  const url = route instanceof URL ? route : new URL(route, t.base);
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${t.token}` } });
  if (!res.ok) throw new Error(`${t.base}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
