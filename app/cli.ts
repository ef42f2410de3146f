/*
 * cli.ts — the `postino` command (package.json bin → bin/postino.js → here):
 * argument parsing and one small function per command.
 *
 *   postino up [--config F]                 forwarder + hosted + sink, one process each
 *   postino forwarder|hosted|sink --config F   one component
 *   postino forwarder status [--admin URL]  the forwarder's queue, readably
 *   postino forwarder pause [--intake] | resume [--admin URL]   the kill-switch
 *   postino hosted pause|resume|status [--account ID] [--api URL]
 *                                           the engine's kill-switch and delivery queue
 *   postino hosted failed list|retry <id>|delete <id> [--api URL]
 *                                           messages given up on after engine.maxAttempts
 *   postino hosted api-key new <account>    an account API key and its accounts[].apiKeys entry
 *   postino hosted allow|users|senders|quota|history|reload, postino forwarder reload
 *                                           accounts and reloads of a running node (accounts-command.ts)
 *   postino check-config F                  print every problem with its key path (also secrets
 *                                           named by *Env keys: unset, or under 32 bytes)
 *   postino dev-cert [--out DIR]            a development CA and localhost TLS pair
 *   postino hash-password                   scrypt hash of the password on stdin (accounts[].listener.users)
 *   postino dkim keygen <domain> [--selector S] [--out DIR]
 *                                           a DKIM key (default <data>/secrets/dkim) and its DNS TXT record
 *   postino keys rotate                     a new token-signing key; older links keep working
 *   postino suppress add|remove|list|import|export   the suppression list (suppress-command.ts)
 *   postino recipients get|set|delete|list|import|export   the recipient database (recipients-command.ts)
 *   postino db migrate [--config F]         the shared-state schema in storage.postgres (db-command.ts)
 *
 * The data folder is $POSTINO_DATA (default ./data); it is read here, once, and
 * passed down. Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad config.
 * Running components and signals: supervisor.ts. Status pages: printers.ts.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { newAccountKey } from '../common/api-keys.js';
import { hashPassword } from '../common/password-hash.js';
import { ensureDevTls, secretEnvProblems, secretsDir } from '../common/secrets.js';
import { rotateKeys, signingKeysPath } from '../common/signing-keys.js';
import { generateDkimKey } from '../engine/rewrap/dkim-keys.js';
import { apiCall, apiTarget, FORWARDER_ADMIN, HOSTED_API } from './api-client.js';
import { dataDirOf, exitOnProblems, loadOrExit, UsageError } from './cli-support.js';
import type { FailedEntry } from '../engine/failed-routes.js';
import { formatBrake, formatFailed, formatForwarderStatus, formatHostedStatus, type BrakeBody, type HostedQueueBody } from './printers.js';
import { suppressCommand } from './suppress-command.js';
import { accountsCommand, type AccountsArgs } from './accounts-command.js';
import { recipientsCommand } from './recipients-command.js';
import type { Role } from './supervisor.js';

const USAGE = `usage:
  postino up [--config F]
  postino forwarder [--config F]
  postino forwarder status [--admin URL]
  postino forwarder pause [--intake] [--admin URL]
  postino forwarder resume [--admin URL]
  postino hosted [--config F]
  postino hosted pause|resume [--account ID] [--api URL]
  postino hosted status [--api URL]
  postino hosted failed list|retry <id>|delete <id> [--api URL]
  postino hosted api-key new <account>
  postino hosted allow add|remove <account> <cidr> [--force] | list <account>
  postino hosted users add <account> <name> (password on stdin) | remove <account> <name> | list <account>
  postino hosted senders add|remove <account> <domain> | list <account>
  postino hosted quota get <account> | set <account> [--per-hour N] [--per-day N] [--unit messages|recipients]
  postino hosted history <account> [--limit N]
  postino hosted reload
  postino forwarder reload [--admin URL]
  postino sink [--config F]
  postino check-config F
  postino dev-cert [--out DIR]
  postino hash-password   (reads the password from stdin)
  postino dkim keygen <domain> [--selector S] [--out DIR]
  postino keys rotate
  postino suppress add|remove <address> --account A [--scope list:NAME] [--reason R]
  postino suppress list [--account A] [--limit N]
  postino suppress import <file.csv|-> --account A
  postino suppress export [--account A] [--out F]
  postino recipients get|delete <address> [--account A]
  postino recipients set <address> name=value… [--account A]   (name= removes a field)
  postino recipients list [--account A] [--limit N]
  postino recipients import <file|-> [--account A] [--format csv|ndjson]
  postino recipients export [--account A] [--format csv|ndjson] [--out F]
  postino db migrate [--config F]
environment: POSTINO_DATA (data folder, default ./data)`;

/** Loaded only to run components: it imports every stage, twice the start time of an API command such as `hosted allow`. */
async function runRole(role: Role, configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  return (await import('./supervisor.js')).runRole(role, configFile, env);
}

/** This file, as `up` starts it again for each child (see the end of the file). */
const CLI_PATH = fileURLToPath(import.meta.url);

async function forwarderCommand(sub: 'status' | 'pause' | 'resume', adminUrl: string | undefined, intake: boolean, env: NodeJS.ProcessEnv): Promise<void> {
  const t = apiTarget(FORWARDER_ADMIN, adminUrl, env);
  switch (sub) {
    case 'status':
      process.stdout.write(formatForwarderStatus(await apiCall(t, 'GET', '/status')));
      return;
    case 'pause':
      await apiCall(t, 'POST', intake ? '/pause?intake=1' : '/pause');
      process.stdout.write(intake ? 'paused: relaying stopped and new mail refused with 421\n' : 'paused: relaying stopped; intake keeps accepting and spooling\n');
      return;
    case 'resume':
      await apiCall(t, 'POST', '/resume');
      process.stdout.write('resumed: relaying (and intake) running\n');
      return;
  }
}

async function hostedCommand(sub: 'pause' | 'resume' | 'status', apiUrl: string | undefined, account: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const t = apiTarget(HOSTED_API, apiUrl, env);
  if (sub === 'status') {
    process.stdout.write(formatHostedStatus(await apiCall<HostedQueueBody>(t, 'GET', '/api/queue')));
    process.stdout.write(formatBrake(await apiCall<BrakeBody>(t, 'GET', '/api/brake')));
    return;
  }
  const url = new URL(`/api/${sub}`, t.base);
  if (account) url.searchParams.set('account', account);
  const { paused } = await apiCall<{ paused: { global: boolean; accounts: string[] } }>(t, 'POST', url);
  process.stdout.write(`delivery ${sub === 'pause' ? 'paused' : 'resumed'}${account ? ` for account ${account}` : ''}; paused now: global ${paused.global ? 'yes' : 'no'}, accounts [${paused.accounts.join(', ')}]\n`);
}

async function failedCommand(verb: string | undefined, id: string | undefined, apiUrl: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const t = apiTarget(HOSTED_API, apiUrl, env);
  switch (verb) {
    case 'list':
      process.stdout.write(formatFailed((await apiCall<{ failed: FailedEntry[] }>(t, 'GET', '/api/failed')).failed));
      return;
    case 'retry':
    case 'delete': {
      if (!id) throw new UsageError(`usage: postino hosted failed ${verb} <id>`);
      const route = `/api/failed/${encodeURIComponent(id)}`;
      const r = verb === 'retry' ? await apiCall<{ queue: string }>(t, 'POST', `${route}/retry`) : await apiCall<{ queue: string }>(t, 'DELETE', route);
      process.stdout.write(verb === 'retry' ? `${id}: back in the ${r.queue} queue, due now\n` : `${id}: deleted from the failed ${r.queue} messages\n`);
      return;
    }
    default:
      throw new UsageError('usage: postino hosted failed list|retry <id>|delete <id>');
  }
}

/** Made offline: the key is shown once, only its hash goes into the config. */
async function apiKeyCommand(verb: string | undefined, account: string | undefined): Promise<void> {
  if (verb !== 'new' || !account) throw new UsageError('usage: postino hosted api-key new <account>');
  const { token, entry } = await newAccountKey();
  process.stdout.write(
    `API key for account "${account}" (shown once; store it in the application's secrets):
${token}

` +
      `add to accounts[id="${account}"].apiKeys, then restart or reload the hosted node:
${JSON.stringify(entry)}
`,
  );
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      admin: { type: 'string' },
      intake: { type: 'boolean' },
      api: { type: 'string' },
      account: { type: 'string' },
      out: { type: 'string' },
      selector: { type: 'string' },
      scope: { type: 'string' },
      reason: { type: 'string' },
      limit: { type: 'string' },
      force: { type: 'boolean' },
      'per-hour': { type: 'string' },
      'per-day': { type: 'string' },
      unit: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, arg, arg2, arg3] = positionals;
  const accountsArgs = (what: string): AccountsArgs => ({ what, verb: arg, account: arg2, item: arg3, force: values.force ?? false, perHour: values['per-hour'], perDay: values['per-day'], unit: values.unit, limit: values.limit, api: values.api, admin: values.admin });
  if (values.help || !cmd) {
    process.stdout.write(USAGE + '\n');
    if (!cmd && !values.help) process.exitCode = 2;
    return;
  }
  switch (cmd) {
    case 'up':
      return (await import('./supervisor.js')).up(CLI_PATH, values.config, env);
    case 'forwarder':
      if (sub === 'status' || sub === 'pause' || sub === 'resume') return forwarderCommand(sub, values.admin, values.intake ?? false, env);
      if (sub === 'reload') return accountsCommand(accountsArgs('forwarder-reload'), env);
      if (sub !== undefined) throw new UsageError(`unknown forwarder command "${sub}"`);
      return runRole('forwarder', values.config, env);
    case 'hosted':
      if (sub === 'pause' || sub === 'resume' || sub === 'status') return hostedCommand(sub, values.api, values.account, env);
      if (sub === 'failed') return failedCommand(arg, arg2, values.api, env);
      if (sub === 'api-key') return apiKeyCommand(arg, arg2);
      if (sub === 'allow' || sub === 'users' || sub === 'senders' || sub === 'quota' || sub === 'history' || sub === 'reload') return accountsCommand(accountsArgs(sub), env);
      if (sub !== undefined) throw new UsageError(`unknown hosted command "${sub}"`);
      return runRole(cmd, values.config, env);
    case 'sink':
      if (sub !== undefined) throw new UsageError(`unknown ${cmd} command "${sub}"`);
      return runRole(cmd, values.config, env);
    case 'check-config': {
      const file = sub ?? values.config;
      if (!file) throw new UsageError('check-config needs a file');
      // Secrets named by environment variables are checked here too, not first at start-up.
      exitOnProblems(file, secretEnvProblems(loadOrExit(file), env));
      process.stdout.write(`${file}: ok\n`);
      return;
    }
    case 'dev-cert': {
      const p = await ensureDevTls(values.out ?? secretsDir(dataDirOf(env)));
      process.stdout.write(`CA:   ${p.caFile}\ncert: ${p.certFile}\nkey:  ${p.keyFile}\n`);
      return;
    }
    case 'hash-password': {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      if (!password) throw new UsageError('hash-password reads the password from stdin');
      process.stdout.write((await hashPassword(password)) + '\n');
      return;
    }
    case 'suppress':
      return suppressCommand({ sub, arg, account: values.account, scope: values.scope, reason: values.reason, limit: values.limit, out: values.out, api: values.api }, env);
    case 'recipients':
      return recipientsCommand({ sub, arg, rest: positionals.slice(3), account: values.account, limit: values.limit, out: values.out, format: values.format, api: values.api }, env);
    case 'db':
      // Imported here: the PostgreSQL driver is loaded only by the command that needs it.
      return (await import('./db-command.js')).dbCommand(sub, values.config);
    case 'keys': {
      if (sub !== 'rotate') throw new UsageError('usage: postino keys rotate');
      const dataDir = dataDirOf(env);
      const r = rotateKeys(dataDir);
      process.stdout.write(
        `new signing key ${r.id} in ${signingKeysPath(dataDir)} (${r.keys} keys; all keep verifying)\n` +
          `running nodes sign with it within 10 s; copy the file to every hosted node of a multi-node setup\n`,
      );
      return;
    }
    case 'dkim': {
      if (sub !== 'keygen' || !arg) throw new UsageError('usage: postino dkim keygen <domain> [--selector S] [--out DIR]');
      if (!/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(arg)) throw new UsageError(`"${arg}" is not a domain name`);
      const selector = values.selector ?? 'postino';
      let k: ReturnType<typeof generateDkimKey>;
      try {
        k = generateDkimKey(values.out ?? path.join(secretsDir(dataDirOf(env)), 'dkim'), arg.toLowerCase(), selector);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        process.stderr.write(`postino: a key for ${arg.toLowerCase()} with selector ${selector} exists already; never overwritten (use another --selector to rotate)\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        `private key: ${k.keyFile}\n` +
          `config:      accounts[].engine.dkim = ${JSON.stringify({ domain: arg.toLowerCase(), selector, keyFile: k.keyFile })}\n` +
          `DNS record:\n${k.record}\n`,
      );
      return;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

export function run(): void {
  main(process.argv.slice(2), process.env).catch((e: unknown) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`postino: ${(e as Error).message}\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`postino: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}

// Started directly (as `up` does for its children) rather than through bin/postino.js.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) run();
