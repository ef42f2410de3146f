#!/usr/bin/env node
// Runs every test file through tsx with node's test runner (Node 20 needs the
// file list: `--test` alone finds no .ts files). TAP output; a leaked socket
// must not hang CI, hence --test-force-exit.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function find(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}
const only = process.argv.slice(2);
const files = only.length ? only : find('test').sort();
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-force-exit', '--test-timeout=300000', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
