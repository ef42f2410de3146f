/*
 * Runs `postino hosted` (the built CLI: listener + engine + HTTP) on free ports
 * in front of a given sink port, as a separate process that a test can stop
 * and start again on the same data folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { freePorts } from './ports.js';
import { suiteStorage } from './postgres.js';
import { startPostino, type Running } from './postino.js';

/** A hosted config on free ports delivering to 127.0.0.1:sinkPort; `extra` keys replace top-level sections. */
export async function hostedConfig(sinkPort: number, extra: Record<string, unknown> = {}): Promise<{ config: Record<string, unknown>; listenerPort: number }> {
  const [listenerPort, http] = await freePorts(2);
  return {
    listenerPort: listenerPort!,
    config: {
      log: { level: 'info' },
      listener: { port: listenerPort },
      http: { port: http },
      feedback: { port: null }, // no bounce intake: these tests are about the hop from the forwarder
      delivery: { relays: [`smtp://127.0.0.1:${sinkPort}`] },
      ...(await suiteStorage()),
      ...extra,
    },
  };
}

/** Starts `postino hosted --config <dataDir>/hosted.json`; resolves once the listener and HTTP listen. */
export function startHostedProcess(dataDir: string, config: Record<string, unknown>): Promise<Running> {
  const file = path.join(dataDir, 'hosted.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return startPostino(['hosted', '--config', file], dataDir, 2); // listener SMTP + hosted HTTP
}
