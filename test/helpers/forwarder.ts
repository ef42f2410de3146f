/*
 * Runs `postino forwarder` (the built CLI) on free ports with a test config,
 * and talks to its admin API and CLI as an operator would.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { SinkConfig } from '../../common/config.js';
import { createLogger } from '../../common/log.js';
import { startSink, type CaptureSink } from '../../sink/capture-sink.js';
import { CLI, startPostino, type Running } from './postino.js';
import { freePorts } from './ports.js';

export interface ForwarderPorts {
  smtp: number;
  admin: number;
}

export async function forwarderConfig(relayUrls: string[], extra: Record<string, unknown> = {}): Promise<{ config: Record<string, unknown>; ports: ForwarderPorts }> {
  const [smtp, admin] = await freePorts(2);
  const ports = { smtp: smtp!, admin: admin! };
  const fwd = (extra.forwarder ?? {}) as Record<string, Record<string, unknown>>;
  const config = {
    log: { level: 'info' },
    ...extra,
    forwarder: {
      hostname: 'forwarder.test',
      ...fwd,
      smtp: { port: ports.smtp, ...fwd.smtp },
      admin: { port: ports.admin, ...fwd.admin },
      relay: { urls: relayUrls, requireTls: false, ...fwd.relay },
    },
  };
  return { config, ports };
}

/** Starts `postino forwarder --config <dataDir>/forwarder.json`; resolves once SMTP and admin listen. */
export function startForwarderProcess(dataDir: string, config: Record<string, unknown>): Promise<Running> {
  const file = path.join(dataDir, 'forwarder.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return startPostino(['forwarder', '--config', file], dataDir, 2);
}

export function adminToken(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, 'secrets', 'admin-token'), 'utf8').trim();
}

export async function admin<T = Record<string, unknown>>(dataDir: string, port: number, method: string, route: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${port}${route}`, { method, headers: { authorization: `Bearer ${adminToken(dataDir)}` } });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* metrics are text */
  }
  return { status: res.status, body: body as T };
}

/** `postino forwarder <args> --admin …` as an operator types it. */
export function cli(dataDir: string, adminPort: number, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'forwarder', ...args, '--admin', `http://127.0.0.1:${adminPort}`], { env: { ...process.env, POSTINO_DATA: dataDir }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The same, without blocking this process (an in-process sink keeps running meanwhile). */
export function cliAsync(dataDir: string, adminPort: number, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'forwarder', ...args, '--admin', `http://127.0.0.1:${adminPort}`], { env: { ...process.env, POSTINO_DATA: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

export function sinkCount(dir: string): number {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).length : 0;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A capture sink in this process on a free port, storing into <dataDir>/sink (logs silent). */
export async function startTestSink(dataDir: string, rules: SinkConfig['rules'] = []): Promise<{ sink: CaptureSink; sinkDir: string }> {
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules }, sinkDir, createLogger('sink', 'silent'));
  return { sink, sinkDir };
}
