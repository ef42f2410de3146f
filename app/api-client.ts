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

export type ApiMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One call, the response as it comes (for streamed bodies); an error naming the URL and status unless 2xx. */
export async function apiFetch(t: ApiTarget, method: ApiMethod, route: string | URL, init: { body?: BodyInit; contentType?: string } = {}): Promise<Response> {
  const url = route instanceof URL ? route : new URL(route, t.base);
  const headers: Record<string, string> = { authorization: `Bearer ${t.token}` };
  if (init.contentType) headers['content-type'] = init.contentType;
  // duplex: a streamed request body (an import file) needs it in Node's fetch.
  const res = await fetch(url, { method, headers, body: init.body ?? null, ...(init.body ? { duplex: 'half' } : {}) } as RequestInit);
  if (!res.ok) throw new Error(`${t.base}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

/** `route` on the target with the defined query parameters set. */
export function apiUrl(t: ApiTarget, route: string, q: Record<string, string | undefined> = {}): URL {
  const u = new URL(route, t.base);
  for (const [k, v] of Object.entries(q)) if (v !== undefined) u.searchParams.set(k, v);
  return u;
}

/** Every item of a cursor-paged list route (`{<key>: [...], next}`, paged with after=<next>), at most `max`. */
export async function* pagedList<T>(t: ApiTarget, route: string, key: string, q: Record<string, string | undefined>, max = Infinity): AsyncGenerator<T> {
  let after: string | undefined;
  let shown = 0;
  do {
    const page = await apiCall<Record<string, unknown> & { next: string | null }>(t, 'GET', apiUrl(t, route, { ...q, after, limit: '1000' }));
    for (const item of page[key] as T[]) {
      if (shown++ >= max) return;
      yield item;
    }
    after = page.next ?? undefined;
  } while (after);
}

/** One call; the parsed JSON body on 2xx, an error naming the URL and status otherwise. */
export async function apiCall<T = Record<string, unknown>>(t: ApiTarget, method: ApiMethod, route: string | URL, json?: unknown): Promise<T> {
  const res = await apiFetch(t, method, route, json === undefined ? {} : { body: JSON.stringify(json), contentType: 'application/json' });
  return (await res.json()) as T;
}
