/*
 * deploy/Containerfile without a container runtime (none on the CI machine):
 * its shape (two stages, an unprivileged USER, a HEALTHCHECK, every COPY source
 * present), then its run stage assembled the way the image holds it — the
 * files its COPY lines name, with only the production dependencies
 * (`npm ls --omit=dev`), copied, not linked, so code in dist/ that imports a
 * dev-only package fails here as it would in the image — and started with the
 * image's ENV, ENTRYPOINT and CMD (the config path swapped for a loopback one),
 * as the `nobody` user when the test runs as root. The image's own HEALTHCHECK
 * command must then pass, and fail once the node is stopped.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { sleep } from '../helpers/forwarder.js';
import { freePorts } from '../helpers/ports.js';
import { ROOT } from '../helpers/postino.js';
import { ALLOCATOR_ENV } from '../../app/allocator-env.js';
import { V8_HEAP_FLAGS } from '../../app/heap-flags.js';

const FILE = path.join(ROOT, 'deploy', 'Containerfile');
const NOBODY = 65534;

interface Stage {
  from: string;
  lines: string[];
}

/** The Containerfile's instructions (continuations joined, comments dropped), split into stages. */
function stages(text: string): Stage[] {
  const out: Stage[] = [];
  for (const line of text.replace(/\\\n\s*/g, '').split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    if (/^FROM\s/i.test(line)) out.push({ from: line, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

const arg = (stage: Stage, word: string): string[] => stage.lines.filter((l) => l.startsWith(`${word} `)).map((l) => l.slice(word.length + 1).trim());

test('deploy/Containerfile: multi-stage, unprivileged, health-checked; its run stage starts a hosted node that passes its own HEALTHCHECK', { timeout: 120_000 }, async () => {
  const [build, run, ...more] = stages(fs.readFileSync(FILE, 'utf8'));
  assert.ok(build && run && more.length === 0, 'two stages: build, run');
  assert.match(build.from, / AS build$/i);
  for (const copy of arg(build, 'COPY').concat(arg(run, 'COPY').filter((c) => !c.startsWith('--from')))) {
    for (const src of copy.split(/\s+/).slice(0, -1)) assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY source ${src} exists`);
  }
  const user = arg(run, 'USER');
  assert.equal(user.length, 1);
  assert.doesNotMatch(user[0]!, /^(root|0)(:|$)/, 'the node does not run as root');
  const health = arg(run, 'HEALTHCHECK')[0] ?? '';
  const healthCmd = JSON.parse(health.slice(health.indexOf('CMD ') + 4)) as string[];
  const entrypoint = JSON.parse(arg(run, 'ENTRYPOINT')[0]!) as string[];
  const cmd = JSON.parse(arg(run, 'CMD')[0]!) as string[];
  assert.deepEqual(cmd.slice(0, 2), ['hosted', '--config']);
  const env = Object.fromEntries(arg(run, 'ENV').join(' ').split(/\s+/).map((kv) => kv.split('=') as [string, string]));
  for (const [k, v] of Object.entries(ALLOCATOR_ENV)) assert.equal(env[k], v, `ENV ${k} as postino up sets it (app/allocator-env.ts)`);
  assert.deepEqual(entrypoint.slice(0, -1), ['node', ...V8_HEAP_FLAGS], "node and its heap flags as postino up passes them (app/heap-flags.ts)");
  const script = entrypoint.at(-1)!;

  // The image's WORKDIR, filled by the run stage's COPY lines: from the build stage (its WORKDIR is the
  // repository here; npm test built dist/) and from the context; node_modules with production packages only.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-image-'));
  fs.chmodSync(root, 0o755);
  const workdir = arg(run, 'WORKDIR')[0]!;
  const buildDir = arg(build, 'WORKDIR')[0]!;
  const app = path.join(root, workdir);
  const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8' });
  const top = new Set(ls.stdout.split('\n').map((p) => path.relative(path.join(ROOT, 'node_modules'), p)).filter((p) => p && !p.startsWith('..') && !p.includes(`${path.sep}node_modules${path.sep}`)));
  assert.ok(top.has('fastify') && !top.has('typescript'), 'production dependencies only');
  for (const copy of arg(run, 'COPY')) {
    const words = copy.split(/\s+/);
    const fromBuild = words[0] === '--from=build';
    const srcs = words.slice(fromBuild ? 1 : 0, -1).map((s) => (fromBuild ? path.relative(buildDir, s) : s));
    const dest = path.resolve(app, words.at(-1)!);
    for (const src of srcs) {
      const to = words.at(-1)!.endsWith('/') ? path.join(dest, path.basename(src)) : dest;
      if (src === 'node_modules') for (const p of top) fs.cpSync(path.join(ROOT, 'node_modules', p), path.join(to, p), { recursive: true, verbatimSymlinks: true });
      else fs.cpSync(path.join(ROOT, src), to, { recursive: true });
    }
  }
  const entry = path.join(app, path.relative('/opt/postino', script));
  assert.ok(fs.existsSync(entry), `ENTRYPOINT ${script} is in the image`);

  const data = path.join(root, 'var', 'lib', 'postino');
  fs.mkdirSync(data, { recursive: true });
  const [listener, http, relay] = await freePorts(3);
  const config = path.join(root, 'hosted.json');
  fs.writeFileSync(config, JSON.stringify({ listener: { port: listener }, http: { port: http }, feedback: { port: null }, delivery: { relays: [`smtp://127.0.0.1:${relay}`] } }));
  const asNobody = process.getuid?.() === 0;
  if (asNobody) fs.chownSync(data, NOBODY, NOBODY);
  const imageEnv = { PATH: process.env.PATH, ...env, POSTINO_DATA: data, POSTINO_HEALTH_PORT: String(http) };
  const node = spawn(process.execPath, [...entrypoint.slice(1, -1), entry, ...cmd.slice(0, 2), config], { cwd: app, env: imageEnv, stdio: ['ignore', 'pipe', 'pipe'], ...(asNobody ? { uid: NOBODY, gid: NOBODY } : {}) });
  let output = '';
  node.stdout.on('data', (b: Buffer) => (output += b.toString()));
  node.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const healthy = (): number | null => spawnSync(process.execPath, healthCmd.slice(1), { env: imageEnv, timeout: 10_000 }).status;
  try {
    assert.equal(healthCmd[0], 'node');
    const deadline = Date.now() + 60_000;
    while (healthy() !== 0) {
      if (node.exitCode !== null || Date.now() > deadline) assert.fail(`no passing HEALTHCHECK; exit ${node.exitCode}; output:\n${output.slice(-2000)}`);
      await sleep(500);
    }
  } finally {
    node.kill('SIGTERM');
    await new Promise((resolve) => (node.exitCode === null ? node.once('exit', resolve) : resolve(undefined)));
  }
  assert.equal(node.exitCode, 0, `a graceful stop on SIGTERM (the image's STOPSIGNAL): ${output.slice(-1000)}`);
  assert.notEqual(healthy(), 0, 'the HEALTHCHECK fails with the node stopped');
  fs.rmSync(root, { recursive: true, force: true });
});
